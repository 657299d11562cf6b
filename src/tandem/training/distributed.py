"""Data-parallel training under `torchrun`: one process per device, the same global batch on every rank.

Every rank draws the same global batch (same seeds) and computes the per-domain objective
coefficients from it, so they are global; each rank then runs only its own rows
(`local_rows`), gradients are summed across ranks, and per-domain token-loss sums and
counts are summed before losses are formed. The result equals one process with the same
global batch up to float reduction order. Without torchrun's environment (WORLD_SIZE
unset or 1) every function here is a no-op that does not even import torch (the CLI and
tandem.io ask `is_main()` on every write).

Only rank 0 writes outputs: tandem.io's writers are silent on other ranks.

With FSDP (`shard_model`, FSDP2's `fully_shard`) the same holds, with parameters, gradients and
optimizer state sharded instead of replicated: gradients are reduce-scattered as sums.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

# Largest gradient bucket (elements) flattened for one all-reduce: bounds the extra memory on big models.
_BUCKET_ELEMENTS = 1 << 25


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


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Sum gradients over ranks in a few flat buckets (a rank whose rows were all empty contributes zeros)."""
    if not active():
        return
    import torch
    import torch.distributed as dist

    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    buckets: dict[tuple, list[list]] = {}
    for p in params:
        key = (p.grad.dtype, p.grad.device)
        groups = buckets.setdefault(key, [[]])
        if groups[-1] and sum(q.numel() for q in groups[-1]) + p.numel() > _BUCKET_ELEMENTS:
            groups.append([])
        groups[-1].append(p)
    for groups in buckets.values():
        for group in groups:
            flat = torch.cat([p.grad.reshape(-1) for p in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for p in group:
                n = p.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n


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

    Gradients are reduce-scattered as sums, not means: the objective's coefficients already normalise
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


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded parameters and buffers of a sharded model (collective: every rank calls it and receives
    them all)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
