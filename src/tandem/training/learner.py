"""A model with its optimizer and schedule: one `step` that every trainer and mixer shares.

The trainer calls it with one resampled batch; the TANDEM reference calls it with a
train batch and a validation batch, each with its own per-domain coefficients; the
gradients of all parts accumulate into one optimizer step.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from tandem.data.sampler import Batch
from tandem.training import distributed
from tandem.training.loss import DomainLossMeter, domain_sums, token_losses


@dataclass
class OptimConfig:
    """What a Learner needs to know about optimization (built from TrainConfig or MixerConfig)."""

    lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    micro_batch_size: int | None = None


def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to `min_ratio * peak` at `total`."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present; under torchrun a bare `cuda` means this process's own GPU (LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if device.index is None and distributed.active():
            device = torch.device("cuda", distributed.local_rank())
        # TF32 for the float32 matmuls that stay outside bf16 autocast (losses, optimizer): same speed class, no
        # visible change in loss at these scales.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def autocast_for(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def make_optimizer(model: nn.Module, oc: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    # Decay matrices only: decaying norms' gains and biases hurts small models.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": oc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Fused AdamW is one kernel per step on CUDA; foreach is the fast path on the CPU.
    kw = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=oc.lr, betas=(oc.beta1, oc.beta2), **kw)


def _full(t: torch.Tensor) -> torch.Tensor:
    """A norm computed over sharded (DTensor) tensors, as a plain tensor."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


# Compute spent by every Learner of this process, in floating-point operations: 6 N per token trained (forward and
# backward), 2 N per token only scored (forward), N the model's parameters, tokens the input positions of the rows
# (this rank's). `tandem compare` reads it around each stage, so every method's stage one is counted the same way,
# probes, references, scratch copies, held-set scoring and a search's evaluations (count_flops) included.
_FLOPS = [0.0]


def flops_used() -> float:
    """Floating-point operations the Learners of this process have spent so far."""
    return _FLOPS[0]


def count_flops(flops: float) -> None:
    """Add work done outside a Learner's own methods to the meter (a search's evaluation of its models)."""
    _FLOPS[0] += flops


class Learner:
    """A model and its optimizer. Under torchrun every rank holds the same global batches and runs its own rows
    of them; gradients (through DistributedDataParallel, or FSDP) and per-domain sums are summed across ranks, so
    every method sees one big batch.

    fsdp: shard parameters, gradients and optimizer state across ranks (FSDP2) for models too large for one
    device; `compile`: torch.compile the model's forward.
    """

    def __init__(self, model: nn.Module, oc: OptimConfig, num_domains: int, device: torch.device, precision: str = "auto",
                 compile: bool = False, fsdp: bool = False):
        self.fsdp = fsdp and distributed.active()
        self.num_params = sum(p.numel() for p in model.parameters())  # before sharding: the whole model's
        self._skeleton = None
        if self.fsdp:
            distributed.broadcast_params(model)  # initialisation is seeded; this is the guard
            self._skeleton = distributed.skeleton(model)  # the model's layout, filled only for the final export
            distributed.shard_model(model)  # sharded before it reaches the device: only shards are moved there
        else:
            model = model.to(device)
        self.module = model  # the uncompiled module: parameters, state dicts and saving go through it
        self.model = torch.compile(model) if compile else model  # evaluation's forward (no gradient all-reduce)
        self._ddp: nn.Module | None = None  # training's forward under torchrun without FSDP (see _train_model)
        self.oc = oc
        self.num_domains = num_domains
        self.device = device
        self.autocast = autocast_for(device, precision)
        self.optimizer = make_optimizer(model, oc, device)
        self.step_count = 0
        self.valid_norm: float | None = None  # norm of the last validation gradient stepped along
        # What to call the model in the error raised for a NaN or infinite gradient; None: no check.
        self.refuse_nonfinite: str | None = None

    def lr(self) -> float:
        return lr_at(self.step_count, self.oc.lr, self.oc.warmup_steps, self.oc.total_steps, self.oc.min_lr_ratio)

    def step(self, parts: list[tuple[Batch, torch.Tensor]], valid: list[tuple[Batch, torch.Tensor]] | None = None,
             valid_scale: float = 1.0, valid_clip: float | None = None) -> DomainLossMeter:
        """One optimizer step on sum over parts of sum_t coef[domain(t)] * loss_t.

        `valid` (the TANDEM reference, DoGE's probe): parts whose gradient g_val moves the model by a second,
        separate step along -g_val after the AdamW step on `parts`. Its length is valid_scale times the length of
        that AdamW step (so the validation data move the reference as far as one step of training data would,
        whatever the learning rate, schedule or loss scale); with no `parts` it is a plain gradient step of
        lr * valid_scale. The train component is then exactly the step a twin stepping on `parts` alone takes
        from the same state: AdamW's normalisation and clipping of a summed gradient would otherwise shrink it,
        and the gap between the twins would partly measure that instead of the validation data. The validation
        step is Euclidean, not AdamW-preconditioned: early in training AdamW's second moments hold a few train
        gradients, and dividing an unrelated gradient by them blows up the coordinates where those were small.
        To first order the gap on domain i is then -c <g_i, g_val> with c > 0 common to all domains: DoGE's
        signal.

        `valid_clip`: the norm g_val is clipped at (default: the optimizer's grad_clip; DoGE clips at its own 5.0).

        Returns the per-domain losses of the first part, measured during the step (before the update).
        """
        self._train_model.train()
        lr = self.lr()
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        params = [p for p in self.module.parameters() if p.requires_grad]
        g_val = None
        if valid:
            self.optimizer.zero_grad(set_to_none=True)
            self._backward(valid, None)
            self._clip_and_check(params, what="validation gradient", max_norm=valid_clip)
            g_val = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
        self.optimizer.zero_grad(set_to_none=True)
        meter = DomainLossMeter(self.num_domains)
        length = lr * valid_scale
        if parts:
            before = [p.detach().clone() for p in params] if g_val is not None else None
            self._backward(parts, meter)
            self._clip_and_check(params, what="gradient")
            self.optimizer.step()
            if before is not None:
                moved = torch.nn.utils.get_total_norm([p.detach() - b for p, b in zip(params, before)])
                length = valid_scale * float(_full(moved))
        else:
            distributed.all_reduce_meter(meter)
        if g_val is not None:
            norm = float(_full(torch.nn.utils.get_total_norm(g_val)))
            self.valid_norm = norm  # DoGE normalises its score by it
            scale = (length / norm) if parts else lr * valid_scale
            if norm > 0 and scale > 0:
                if not math.isfinite(scale) or scale * norm >= torch.finfo(torch.float32).max:
                    raise FloatingPointError(f"non-finite validation step in the {self.refuse_nonfinite or 'model'} "
                                             f"at step {self.step_count + 1}")
                with torch.no_grad():
                    for p, g in zip(params, g_val):
                        p.add_(g, alpha=-scale)
            self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        return meter

    def _backward(self, parts: list[tuple[Batch, torch.Tensor]], meter: DomainLossMeter | None) -> None:
        """Accumulate the gradients of all parts, summed over ranks; the first part's per-domain losses go to
        `meter`."""
        # Coefficients come from the global batch, so summing the ranks' gradients gives the global objective.
        coefs = [coef.to(self.device, torch.float32) for _, coef in parts]
        # Every rank runs as many backward passes (DDP and FSDP reduce in each synchronised one).
        work = [(j, mb) for j, (batch, _) in enumerate(parts)
                for mb in self._micro_batches(batch, equal_count=distributed.active())]
        for k, (j, mb) in enumerate(work):
            coef, mb = coefs[j], mb.to(self.device)
            with self._sync(last=k == len(work) - 1):
                with self.autocast():
                    logits = self._train_model(mb.x)
                loss, mask = token_losses(logits, mb.y)
                weighted = (loss * mask * coef[mb.domain][:, None]).sum()
                weighted.backward()
            _FLOPS[0] += 6.0 * self.num_params * mb.x.numel()
            if j == 0 and meter is not None:
                meter.add(*domain_sums(loss.detach(), mask, mb.domain, self.num_domains))
        if meter is not None:
            distributed.all_reduce_meter(meter)

    @property
    def _train_model(self) -> nn.Module:
        """The forward of training steps. Under torchrun without FSDP, DistributedDataParallel over the model, whose
        backward pass all-reduces gradient buckets as they are ready. Built at the first step: a learner that only
        measures losses (the Trainer callback's proxy, whose model the Trainer trains) gets no gradient hooks."""
        if not distributed.active() or self.fsdp:
            return self.model
        if self._ddp is None:
            self._ddp = distributed.data_parallel(self.model, self.device)
        return self._ddp

    def _sync(self, last: bool):
        """DDP all-reduces during the last backward pass of a step only; earlier micro-batches accumulate locally."""
        if last or not hasattr(self._train_model, "no_sync"):
            return contextlib.nullcontext()
        return self._train_model.no_sync()

    def _clip_and_check(self, params: list[nn.Parameter], what: str, max_norm: float | None = None) -> None:
        """Clip the gradients (already summed over ranks by DDP or FSDP) at max_norm (default: the optimizer's
        grad_clip) and refuse non-finite ones before anything moves."""
        norm = None
        clip = self.oc.grad_clip if max_norm is None else max_norm
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if self.refuse_nonfinite is not None:
            # The model and optimizer state stay at the last good step. The clipping norm, when there is one, is
            # the same number, so the gradients are reduced once.
            if norm is None:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            finite = bool(torch.isfinite(distributed.local_tensor(norm)))
            if self.fsdp:  # each rank holds a shard of the gradient: a NaN in any shard refuses the step on all
                finite = distributed.all_agree(finite)
            if not finite:
                raise FloatingPointError(f"non-finite {what} in the {self.refuse_nonfinite} at step {self.step_count + 1}")

    def _micro_batches(self, batch: Batch, equal_count: bool) -> list[Batch]:
        return distributed.micro_batches(distributed.local_rows(batch), len(batch), self.oc.micro_batch_size,
                                         equal_count=equal_count)

    @torch.no_grad()
    def _domain_means(self, batches: list[Batch], per_token) -> np.ndarray:
        """Exact per-domain token means of per_token(micro_batch) -> (values [B, T], mask) over the batches."""
        self.model.eval()
        meter = DomainLossMeter(self.num_domains)
        for batch in batches:
            for mb in self._micro_batches(batch, equal_count=self.fsdp):
                mb = mb.to(self.device)
                with self.autocast():
                    values, mask = per_token(mb)
                _FLOPS[0] += 2.0 * self.num_params * mb.x.numel()
                meter.add(*domain_sums(values.float(), mask, mb.domain, self.num_domains))
        distributed.all_reduce_meter(meter)
        return meter.losses()

    def domain_grad_norms(self, batches: list[Batch], max_norm: float | None = None) -> np.ndarray:
        """The norm of the gradient of each domain's token-mean loss over `batches` (DoGE's ||g_k||), each clipped at
        max_norm as DoGE clips every domain's gradient; nan for a domain without tokens there. The model does not
        move and the gradients are cleared afterwards."""
        from tandem.training.loss import domain_token_counts

        counts = sum(domain_token_counts(b.y, b.domain, self.num_domains) for b in batches)
        params = [p for p in self.module.parameters() if p.requires_grad]
        out = np.full(self.num_domains, np.nan)
        self._train_model.train()
        for i in range(self.num_domains):
            if float(counts[i]) == 0:
                continue
            coef = torch.zeros(self.num_domains, dtype=torch.float64)
            coef[i] = 1.0 / float(counts[i])
            # Only domain i's rows: the others' coefficient is 0, so their backward passes would add nothing but cost.
            own = [Batch(b.x[k], b.y[k], b.domain[k]) for b in batches if (k := b.domain == i).any()]
            self.optimizer.zero_grad(set_to_none=True)
            self._backward([(b, coef) for b in own], None)
            grads = [p.grad for p in params if p.grad is not None]
            norm = float(_full(torch.nn.utils.get_total_norm(grads))) if grads else 0.0
            out[i] = min(norm, max_norm) if max_norm is not None else norm
        self.optimizer.zero_grad(set_to_none=True)
        return out

    def domain_losses(self, batches: list[Batch]) -> np.ndarray:
        """Exact per-domain token-mean loss over the given batches (no update)."""
        return self._domain_means(batches, lambda mb: token_losses(self.model(mb.x), mb.y))

    def excess_over(self, other: "Learner", batches: list[Batch]) -> np.ndarray:
        """Per-domain mean over tokens of max(loss_self(t) - loss_other(t), 0) on the same tokens: DoReMi's excess
        loss, clipped per token (clipping a domain's mean instead makes it 0 once the mean gap closes, although
        many tokens still have excess)."""
        other.model.eval()

        def excess(mb):
            mine, mask = token_losses(self.model(mb.x), mb.y)
            theirs, _ = token_losses(other.model(mb.x), mb.y)
            _FLOPS[0] += 2.0 * other.num_params * mb.x.numel()  # the other model's forward (self's: _domain_means)
            return (mine - theirs).clamp_min(0.0), mask

        return self._domain_means(batches, excess)

    def copy_from(self, other: "Learner") -> None:
        """Become a copy of `other`: parameters, optimizer moments and step count (shard by shard under FSDP)."""
        if self.fsdp:
            distributed.reshard(self.module)
            distributed.reshard(other.module)
        with torch.no_grad():
            for p, q in zip(self.module.parameters(), other.module.parameters()):
                p.copy_(q)
        self.optimizer.load_state_dict(copy.deepcopy(other.optimizer.state_dict()))
        self.step_count = other.step_count

    @torch.no_grad()
    def distance(self, other: "Learner") -> float:
        """Euclidean distance between the two models' parameters."""
        if self.fsdp:
            distributed.reshard(self.module)
            distributed.reshard(other.module)
        pairs = zip(self.module.parameters(), other.module.parameters())
        sq = sum(((distributed.local_tensor(p).double() - distributed.local_tensor(q).double()) ** 2).sum()
                 for p, q in pairs)
        if self.fsdp:
            sq = distributed.all_reduce_sum(torch.as_tensor(sq, dtype=torch.float64).cpu())
        return float(torch.sqrt(sq))

    def full_module(self) -> nn.Module:
        """The model with all of its parameters, uncompiled, for the final export (under FSDP a collective that
        gathers the shards into a plain model on every rank: once, at the end; checkpoints and evaluation work on
        the shards)."""
        if not self.fsdp:
            return self.module
        return distributed.materialise(self._skeleton, distributed.full_state_dict(self.module))
