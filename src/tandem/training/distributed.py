"""Data-parallel training under `torchrun`: one process per device, the same global batch on every rank.

Every rank draws the same global batch (same seeds) and computes the per-domain objective
coefficients from it, so they are global; each rank then runs only its own rows
(`local_rows`), gradients are summed across ranks, and per-domain token-loss sums and
counts are summed before losses are formed. The result equals one process with the same
global batch up to float reduction order. Without torchrun's environment (WORLD_SIZE
unset or 1) every function here is a no-op that imports nothing beyond torch itself (the CLI and
tandem.io ask `is_main()` on every write).

Only rank 0 writes outputs: tandem.io's writers are silent on other ranks.

Replicated models are wrapped in PyTorch's `DistributedDataParallel` (`data_parallel`), whose
gradient all-reduce overlaps the backward pass; a communication hook makes it sum instead of average.
With FSDP (`shard_model`, FSDP2's `fully_shard`) parameters, gradients and optimizer state are
sharded instead of replicated, and gradients are reduce-scattered as sums.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


def launched_world_size() -> int:
    """Processes torchrun started (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    """A process group of more than one rank is running."""
    if launched_world_size() <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    if not active():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def world_size() -> int:
    if not active():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    """True on the process that writes outputs, logs and progress bars (rank 0, or the only process)."""
    return rank() == 0


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment; returns whether one is active.

    gloo carries CPU tensors and, when CUDA is present, NCCL carries CUDA tensors (one group for both, so
    per-domain sums on the CPU and gradients on the GPU reduce through the same calls).
    """
    if launched_world_size() <= 1:
        return False
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if dist.is_initialized():
        return active()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend)
    return active()


def teardown() -> None:
    if active():
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. writes the token cache); the others run it after, reading what it wrote.

    Rank 0 reaches the barrier even when the block raises, so the others are never left waiting; they then
    meet the same error themselves.
    """
    if not is_main():
        barrier()
        yield
        return
    try:
        yield
    finally:
        barrier()


def local_rows(batch):
    """This rank's rows of a global batch: rows rank, rank + W, rank + 2W, ... (domains stay balanced across
    ranks, since a batch's rows are grouped by domain)."""
    w = world_size()
    if w == 1:
        return batch
    return _rows(batch, slice(rank(), None, w))


def _rows(batch, index):
    """The same rows of every per-row tensor of a batch (whatever fields the batch carries)."""
    import dataclasses

    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name)[index] for f in dataclasses.fields(batch)
                                         if hasattr(getattr(batch, f.name), "shape")})


def share(items: list, equal_count: bool) -> list:
    """This rank's share of a list of work items (items rank, rank + W, ...). With `equal_count` the shares are
    padded with None to the same length on every rank, as sharded models need (each forward is a collective)."""
    w = world_size()
    if w == 1:
        return items
    mine = items[rank()::w]
    return mine + [None] * (-(-len(items) // w) - len(mine)) if equal_count else mine


def micro_batches(batch, global_rows: int, micro: int | None, equal_count: bool) -> list:
    """Split this rank's rows into micro-batches of at most `micro` rows.

    With `equal_count` every rank returns the same number of micro-batches (padding with empty ones), as
    sharded models need: each forward pass is a collective all ranks must enter.
    """
    most = -(-global_rows // world_size())  # the largest local share (the whole batch in one process)
    micro = micro or max(most, 1)
    parts = batch.split(micro) if len(batch) else []
    if equal_count and active():
        parts = list(parts) + [_rows(batch, slice(0, 0))] * (-(-most // micro) - len(parts))
    return parts


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (returned for chaining)."""
    if active():
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_meter(meter) -> None:
    """Sum a DomainLossMeter's per-domain loss sums and token counts over ranks (float64, on the CPU)."""
    if not active():
        return
    import numpy as np
    import torch
    import torch.distributed as dist

    both = torch.from_numpy(np.concatenate([meter.sums, meter.counts]))
    dist.all_reduce(both, op=dist.ReduceOp.SUM)
    n = len(meter.sums)
    meter.sums = both[:n].numpy().copy()
    meter.counts = both[n:].numpy().copy()


def all_agree(flag: bool) -> bool:
    """True on every rank when `flag` is true on every rank (one all-reduce of a 0/1 flag), so that all ranks take
    the same branch after a test of their own shard."""
    if not active():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _sum_hook(_state, bucket):
    """DDP communication hook: sum a gradient bucket over ranks (DDP's own hook averages; the objective's
    coefficients already normalise over the global batch, so a sum equals one process)."""
    import torch.distributed as dist

    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """`DistributedDataParallel` over `model`, summing gradients during the backward pass. It copies rank 0's
    parameters to every rank. Buffers are not broadcast at each forward: evaluation forwards the model unwrapped,
    a different number of times on each rank."""
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                  broadcast_buffers=False)
    ddp.register_comm_hook(None, _sum_hook)
    return ddp


def broadcast_params(model: nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers (initialisation is seeded, this is the guard)."""
    if not active():
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def shard_model(model: nn.Module) -> nn.Module:
    """FSDP2: shard every block of every nn.ModuleList (transformer layers), then the rest at the root.

    The model comes in whole on the CPU (built there from the seed, the same on every rank): sharding moves one
    block at a time to the device and keeps only this rank's shard of it, so the whole model never sits on a
    device. Gradients are reduce-scattered as sums, not means: the objective's coefficients already normalise
    over the global batch.
    """
    import torch.nn as nn
    from torch.distributed.fsdp import fully_shard

    for m in list(model.modules()):
        if isinstance(m, nn.ModuleList):
            for block in m:
                fully_shard(block)
    fully_shard(model)
    for m in model.modules():
        if hasattr(m, "set_gradient_divide_factor"):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no pre-multiplied sum
    return model


def reshard(model: nn.Module) -> None:
    """Return a sharded model's parameters to their shards (the root keeps them gathered after a forward pass)."""
    for m in model.modules():
        if hasattr(m, "reshard") and hasattr(m, "unshard"):
            m.reshard()


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a sharded (DTensor) parameter, or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


def is_sharded(model: nn.Module) -> bool:
    """The model's forward is an FSDP collective: every rank must run it the same number of times."""
    return any(hasattr(m, "unshard") and hasattr(m, "reshard") for m in model.modules())


def skeleton(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters live on the meta device (no memory), tied weights still tied; buffers
    are copied. `materialise` fills it later."""
    import copy

    import torch
    import torch.nn as nn

    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}
    return copy.deepcopy(model, memo)


def materialise(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Give a `skeleton` real parameters from a whole state dict: one tensor per parameter, set in every module
    that shares it (Module.to_empty would untie tied weights)."""
    import torch.nn as nn

    real: dict[int, nn.Parameter] = {}
    for prefix, m in model.named_modules():
        for key, p in list(m.named_parameters(recurse=False)):
            if id(p) not in real:
                real[id(p)] = nn.Parameter(state[f"{prefix}.{key}" if prefix else key].detach().clone(),
                                           requires_grad=p.requires_grad)
            setattr(m, key, real[id(p)])
    for name, b in model.named_buffers():
        if name in state:
            b.copy_(state[name])
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded parameters and buffers of a sharded model (collective: every rank calls it and receives
    them all)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
