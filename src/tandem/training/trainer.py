"""Train a model on a fixed mixture of domains: the stage-two trainer behind `tandem train` and `tandem run`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from tandem.config import Config, ModelConfig, TrainConfig
from tandem.data.cache import PreparedData
from tandem.data.sampler import MixtureSampler
from tandem.errors import InputError
from tandem.io import read_jsonl
from tandem.tracking import append_metrics
from tandem.models import build_model
from tandem.training.checkpoint import load_learners, restoring, save_learners
from tandem.training.distributed import is_main
from tandem.training.learner import Learner, OptimConfig, resolve_device
from tandem.training.loss import domain_token_counts, objective_coefficients


@dataclass
class TrainOutcome:
    model: nn.Module
    learner: Learner
    sampler: MixtureSampler
    wall_time: float

    def tokens_seen(self, names: list[str]) -> dict[str, int]:
        return {d: int(t) for d, t in zip(names, self.sampler.tokens_seen())}

    def epochs(self, names: list[str]) -> dict[str, float]:
        return {d: float(e) for d, e in zip(names, self.sampler.epochs())}


def optim_config(tc: TrainConfig) -> OptimConfig:
    return OptimConfig(
        lr=tc.lr, total_steps=tc.steps, warmup_steps=min(tc.warmup_steps, tc.steps), min_lr_ratio=tc.min_lr_ratio,
        weight_decay=tc.weight_decay, beta1=tc.beta1, beta2=tc.beta2, grad_clip=tc.grad_clip,
        micro_batch_size=tc.micro_batch_size,
    )


def setup_torch(tc: TrainConfig) -> torch.device:
    if tc.threads:
        torch.set_num_threads(tc.threads)
    return resolve_device(tc.device)


def refuse_nonfinite_updates(learner: Learner, what: str) -> None:
    """Make the learner's optimizer step raise FloatingPointError on a NaN or infinite gradient, before anything
    moves: the model and its optimizer state stay at the last good step, so a checkpoint taken then resumes."""
    learner.refuse_nonfinite = what


def read_metrics(path: Path) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (killed writer) is skipped."""
    return read_jsonl(path)


def truncate_metrics(path: Path, last: int, key: str = "step") -> None:
    """On resume, drop records written after the checkpoint (record[key] > last) so the log has no duplicates."""
    from tandem.io import write_text

    keep = [r for r in read_metrics(path) if r.get(key, 0) <= last]
    write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


def fixed_mixture_step(learner: Learner, sampler: MixtureSampler, weights, batch_size: int):
    """One optimizer step on a batch drawn from the fixed mixture `weights`, each domain's loss weighted by its
    share of the batch's supervised tokens (the mixture objective). The one such step for every caller: the
    target's trainer, DoReMi's reference, a search's or check's short training, fine-tuning."""
    batch = sampler.sample(weights, batch_size)
    return learner.step([(batch, objective_coefficients(domain_token_counts(batch.y, batch.domain,
                                                                               len(sampler.names))))]), batch


def train(
    cfg: Config,
    data: PreparedData,
    weights: np.ndarray,
    out_dir: Path,
    model_cfg: ModelConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    validate: Callable[[Learner], np.ndarray] | None = None,
) -> TrainOutcome:
    """Train `model_cfg` (default: the target, cfg.model) for cfg.train.steps on the mixture `weights`.

    (About 75 lines: the step loop and its two closures, checkpoint and stop, share the learner, sampler and
    paths; resuming and the log line are their own functions.)

    `validate(learner)`: per-domain validation losses of the learner's model, logged every train.eval_interval steps (the pipeline passes
    tandem.evaluation's; training itself does not evaluate)."""
    from tandem.progress import bar as progress_bar

    from tandem.data.cache import check_trainable

    tc = cfg.train
    check_trainable(weights, data)
    device = setup_torch(tc)
    names = data.domains
    model = build_model(model_cfg or cfg.model, data.vocab_size, tc.seq_len, cfg.seed, cfg.base_dir)
    learner = Learner(model, optim_config(tc), len(names), device, tc.precision, compile=tc.compile, fsdp=tc.fsdp)
    refuse_nonfinite_updates(learner, "model")
    sampler = MixtureSampler(data.split_arrays("train"), tc.seq_len, cfg.seed, names)
    weights = np.asarray(weights, dtype=np.float64)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir, metrics_path = out_dir / "checkpoint", out_dir / "metrics.jsonl"
    learners = {"model": (learner, "optimizer")}
    if resume:
        _resume(ckpt_dir, learners, sampler, weights, names, metrics_path, log)
    if learner.step_count == 0 and metrics_path.exists() and is_main():
        metrics_path.unlink()

    def checkpoint() -> None:  # under torchrun every rank writes its part
        save_learners(ckpt_dir, learners, torch.get_rng_state(),
                      {"step": learner.step_count, "sampler": sampler.state_dict(), "weights": weights.tolist()})

    def stop(problem: str) -> None:
        checkpoint()
        where = f"checkpoint of step {learner.step_count} saved in {ckpt_dir}" if is_main() else "no checkpoint"
        raise FloatingPointError(f"{problem}; stopped with a {where}: continue with --resume, or start over "
                                 f"with a lower train.lr (--force)")

    bar = progress_bar(total=tc.steps, initial=learner.step_count, desc="train", unit="step", progress=progress)
    t0 = time.perf_counter()
    log_window = [0, t0]  # tokens since the last log line, and its time
    while learner.step_count < tc.steps:
        # Sampler and RNG as they were before this step: a refused step is saved as not yet taken.
        before = (sampler.state_dict(), torch.get_rng_state())
        lr = learner.lr()  # the rate this step uses (learner.lr() afterwards is the next step's)
        try:
            meter, batch = fixed_mixture_step(learner, sampler, weights, tc.batch_size)
        except FloatingPointError as err:
            sampler.load_state_dict(before[0])
            torch.set_rng_state(before[1])
            stop(str(err))
        if not np.isfinite(meter.mean()):
            stop(f"non-finite training loss at step {learner.step_count}")
        log_window[0] += batch.x.numel()
        _log_step(tc, learner.step_count, meter, lr, sampler, names, metrics_path, log_window, bar)
        if validate is not None and tc.eval_interval and (learner.step_count % tc.eval_interval == 0
                                                          or learner.step_count == tc.steps):
            # Periodic validation: deterministic windows, no sampler or RNG touched, so a resumed run is unchanged.
            per = validate(learner)
            append_metrics(metrics_path, {"step": learner.step_count, "valid_loss": {
                d: (None if np.isnan(v) else float(v)) for d, v in zip(names, per)},
                "valid_average": float(np.nanmean(per))}, tc.report_to)
        bar.update(1)
        if tc.checkpoint_interval and learner.step_count % tc.checkpoint_interval == 0 and learner.step_count < tc.steps:
            checkpoint()
    bar.close()
    checkpoint()
    return TrainOutcome(model=learner.full_module(), learner=learner, sampler=sampler,
                        wall_time=time.perf_counter() - t0)


def _resume(ckpt_dir: Path, learners: dict, sampler: MixtureSampler, weights: np.ndarray, names: list[str],
            metrics_path: Path, log) -> None:
    """Continue from OUT/checkpoint, which must have been trained on the same weights."""
    learner = learners["model"][0]
    loaded = load_learners(ckpt_dir, learners, log=log)
    if loaded is None:
        return
    rng, state = loaded
    with restoring(ckpt_dir):
        saved = state.get("weights")
        if saved is not None and (len(saved) != len(weights) or not np.allclose(saved, weights, rtol=0, atol=1e-9)):
            raise InputError(
                f"{ckpt_dir}: the checkpoint was trained on weights {dict(zip(names, saved))}, not "
                f"{dict(zip(names, weights.tolist()))}; resume with the same weights or use another --out"
            )
        learner.step_count = int(state["step"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(rng)
        truncate_metrics(metrics_path, learner.step_count)
    log(f"resumed from step {learner.step_count}")


def _log_step(tc: TrainConfig, step: int, meter, lr: float, sampler: MixtureSampler, names: list[str],
              metrics_path: Path, window: list, bar) -> None:
    """Every train.log_interval steps (and the last): loss, per-domain losses, epochs and speed to metrics.jsonl."""
    if step % tc.log_interval and step != tc.steps:
        return
    now = time.perf_counter()
    tps = window[0] / max(now - window[1], 1e-9)
    window[:] = [0, now]
    loss = meter.mean()
    append_metrics(metrics_path, {
        "step": step, "loss": loss, "lr": lr, "tokens_per_s": tps,
        "domain_loss": {d: (None if np.isnan(v) else float(v)) for d, v in zip(names, meter.losses())},
        "epochs": {d: float(e) for d, e in zip(names, sampler.epochs())},
    }, tc.report_to)
    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
