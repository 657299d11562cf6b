"""Two-stage training: the pretraining mixture is learned for the loss measured after fine-tuning.

Config `stages: {pretrain: [...], sft: [...]}`. The target is pretrained for `train.steps` on a
mixture of the `pretrain` domains, then fine-tuned for `stages.sft_steps` on the `sft` domains
(a fixed mixture, `stages.sft_weights`), and evaluated per domain after fine-tuning.

Outer objective of stage one. The mixer runs over the pretrain domains as usual, but its
validation data is the SFT domains' validation examples (response tokens only, every task
holding an equal share of them): TANDEM's reference trains on the pretraining mixture plus those examples,
so Delta_i measures how much learning the downstream tasks changes the loss of pretraining
domain i, and weight moves toward the domains the fine-tuned model needs. This is the penalty
form of min_alpha L_sft_valid(theta(alpha)) with the fine-tuning stage folded into the
reference's validation steps; the fine-tuning run itself is not differentiated through. Its
cost is that of single-stage TANDEM (a reference step costs one proxy step); DoGE and the
search methods (grid, regmix) use the same validation data, DoReMi and ODM none.

This module is the job (run_two_stage, two_stage_target) and its pieces (stage one's view of the data, the
fine-tuning steps).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tandem.config import Config, config_from_dict
from tandem.data.cache import PreparedData, natural_weights
from tandem.data.sampler import MixtureSampler
from tandem.data.sft import SFTExamples
from tandem.errors import InputError
from tandem.evaluation.evaluate import evaluate, finished_eval, summarize
from tandem.evaluation.generate import sft_outcome
from tandem.io import write_json, write_text
from tandem.mixing.optimize import optimize
from tandem.mixing.weights import as_array, resolve_weights
from tandem.training.learner import Learner
from tandem.pipeline.stage_two import periodic_validation
from tandem.training.trainer import fixed_mixture_step, optim_config, train


def check_stages(cfg: Config) -> None:
    """Stage domains must exist; stage-one mixer settings that name domains must name pretrain domains."""
    st = cfg.stages
    names = set(cfg.domain_names)
    for label, doms in (("stages.pretrain", st.pretrain), ("stages.sft", st.sft)):
        unknown = [d for d in doms if d not in names]
        if unknown:
            raise InputError(f"{label}: unknown domain(s) {unknown}; expected some of {sorted(names)}")
    for label, w in (("mixer.target", cfg.mixer.target), ("mixer.initial", cfg.mixer.initial), ("mixer.weights", cfg.mixer.weights)):
        keys = list(w) if isinstance(w, (dict, list)) else []
        outside = [d for d in keys if d not in st.pretrain]
        if outside:
            raise InputError(f"{label}: names {outside}, which are not stages.pretrain domains {st.pretrain}")
    if isinstance(st.sft_weights, dict):
        from tandem.config import check_weights

        try:
            check_weights(st.sft_weights, st.sft, "stages.sft_weights")
        except ValueError as err:
            raise InputError(str(err)) from None


def subset(data: PreparedData, domains: list[str]) -> PreparedData:
    """The same prepared data restricted to some domains (arrays shared, nothing copied)."""
    return dataclasses.replace(data, domains=list(domains), arrays={d: data.arrays[d] for d in domains})


def balanced_union(parts: list[SFTExamples]) -> SFTExamples:
    """One example set in which every part holds an equal share of the supervised (response) tokens.

    A weight is a share of supervised tokens everywhere in tandem, so "tasks weighted equally" means equal token
    shares, not equal example counts: each part's examples are repeated in order until its supervised tokens
    reach the largest part's (shares then differ by at most one example's tokens). Counting examples instead would
    let a task with long answers dominate the token-mean validation loss."""
    counts = [p.supervised_counts(None) for p in parts]
    goal = max(int(c.sum()) for c in counts)
    toks, masks, offsets = [], [], [0]
    for p, c in zip(parts, counts):
        if c.sum() == 0:
            continue
        cycles = -(-goal // int(c.sum()))  # whole passes over the part, then cut where the goal is reached
        order = np.tile(np.arange(p.num_examples), cycles)
        need = int(np.searchsorted(np.cumsum(c[order]), goal)) + 1
        for k in order[:need]:
            a, b = int(p.offsets[k]), int(p.offsets[k + 1])
            toks.append(np.asarray(p.tokens[a:b]))
            masks.append(np.asarray(p.mask[a:b]))
            offsets.append(offsets[-1] + b - a)
    return SFTExamples(np.concatenate(toks), np.concatenate(masks), np.array(offsets), parts[0].pad_id)


def stage_one(cfg: Config, data: PreparedData) -> tuple[Config, PreparedData]:
    """Config and data for learning the pretraining mixture: pretrain domains, validated on the SFT tasks."""
    check_stages(cfg)
    st = cfg.stages
    valid = [data.tokens(d, "valid") for d in st.sft]
    for d, v in zip(st.sft, valid):
        if not isinstance(v, SFTExamples) or len(v) == 0:
            raise InputError(f"data.domains.{d}: stage one's outer objective needs this sft domain (kind: sft) with a valid split")
    union = balanced_union(valid)
    view = subset(data, st.pretrain)
    view.arrays = {d: {**data.arrays[d], "valid": union} for d in st.pretrain}
    raw = cfg.to_dict()
    raw["data"]["domains"] = {d: raw["data"]["domains"][d] for d in st.pretrain}
    raw["stages"] = None
    # Validated anew, but with the user's own mixer object: a dict round trip would mark every mixer field as set
    # by the user, and the method's published defaults (tandem.mixing.methods.effective) would never apply.
    new = config_from_dict(raw, cfg.base_dir, "stages")
    return new.model_copy(update={"mixer": cfg.mixer}), view


def fine_tune(cfg: Config, data: PreparedData, model: torch.nn.Module, device: torch.device,
              progress: bool = False) -> tuple[torch.nn.Module, dict[str, int]]:
    """Stage two: `stages.sft_steps` steps on the SFT domains' fixed mixture; returns the model and tokens seen."""
    from tandem.progress import bar as progress_bar

    st, tc = cfg.stages, cfg.train
    names = data.domains
    w = st.sft_weights if isinstance(st.sft_weights, dict) else resolve_weights(st.sft_weights, names, natural_weights(data))
    weights = as_array(w, names)
    oc = dataclasses.replace(optim_config(tc), lr=st.sft_lr, total_steps=st.sft_steps,
                             warmup_steps=min(tc.warmup_steps, st.sft_steps // 10))
    learner = Learner(model, oc, len(names), device, tc.precision)
    sampler = MixtureSampler(data.split_arrays("train"), tc.seq_len, cfg.seed + 2, names)
    for _ in progress_bar(range(st.sft_steps), desc="fine-tune", unit="step", progress=progress, leave=False):
        fixed_mixture_step(learner, sampler, weights, tc.batch_size)
    return learner.model, {d: int(t) for d, t in zip(names, sampler.tokens_seen())}


def two_stage_target(cfg: Config, data: PreparedData, weights: dict[str, float], out: Path, resume: bool = False,
                     progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Pretrain the target on `weights` (pretrain domains), fine-tune it, evaluate every domain; writes eval.json."""
    st = cfg.stages
    kept = finished_eval(out, weights) if resume else None
    if kept is not None:
        return kept
    t0 = time.perf_counter()
    pretrain = subset(data, st.pretrain)
    pre = train(cfg, pretrain, as_array(weights, st.pretrain), out / "pretrain", resume=resume, progress=progress,
                log=log, validate=periodic_validation(cfg, pretrain))
    model, sft_seen = fine_tune(cfg, subset(data, st.sft), pre.model, pre.learner.device, progress)
    res = evaluate(model, data, cfg.train.seq_len, cfg.eval.max_tokens, cfg.eval.batch_size, pre.learner.device,
                   cfg.train.precision)
    sft_only = lambda s: summarize({d: res[f"{s}_loss"]["per_domain"][d] for d in st.sft})  # noqa: E731
    ev = {
        "sft_test_loss": sft_only("test"), "sft_valid_loss": sft_only("valid"),
        "test_loss": res["test_loss"], "valid_loss": res["valid_loss"],
        "weights": weights, "tokens_seen": {**pre.tokens_seen(st.pretrain), **sft_seen},
        "pretrain_steps": cfg.train.steps, "sft_steps": st.sft_steps, "wall_time_s": time.perf_counter() - t0,
        **sft_outcome(cfg, data, model, pre.learner.device, log),
    }
    write_json(out / "eval.json", ev)
    return ev


def format_two_stage(weights: dict[str, dict[str, float]], evals: dict[str, dict], pretrain: list[str], sft: list[str]) -> str:
    """Post-fine-tuning test loss per SFT task for each stage-one mixture, then the mixtures themselves."""
    labels = list(weights)
    w = max(len(n) for n in [*pretrain, *sft, "average (sft)"])
    head = f"{'domain':<{w}}  " + "  ".join(f"{'w:' + lab:>12}  {'loss:' + lab:>14}" for lab in labels)
    lines = [head, "-" * len(head)]
    cell = lambda v: "-" if v is None or not math.isfinite(v) else f"{v:.4f}"  # noqa: E731
    for d in sft:
        lines.append(f"{d:<{w}}  " + "  ".join(f"{'':>12}  {cell(evals[lab]['sft_test_loss']['per_domain'][d]):>14}" for lab in labels))
    for key in ("average", "worst"):
        lines.append(f"{key + ' (sft)':<{w}}  " + "  ".join(f"{'':>12}  {cell(evals[lab]['sft_test_loss'][key]):>14}" for lab in labels))
    for d in pretrain:
        lines.append(f"{d:<{w}}  " + "  ".join(
            f"{weights[lab][d]:>12.4f}  {cell(evals[lab]['test_loss']['per_domain'][d]):>14}" for lab in labels))
    return "\n".join(lines)


def run_two_stage(cfg: Config, data: PreparedData, out: Path, baselines: list[str], resume: bool, quiet: bool,
                  log: Callable[[str], None] = lambda s: None) -> str:
    """`tandem run` on a two-stage config: learn the stage-one mixture, then pretrain + fine-tune the target on it
    and on each baseline mixture; writes weights.json, eval.json, summary.md and returns the table."""
    st = cfg.stages
    cfg1, data1 = stage_one(cfg, data)
    log(f"stage one: {cfg.mixer.method} on a {cfg.mixer.proxy.preset} proxy over {st.pretrain}, validated on {st.sft}")
    res = optimize(cfg1, data1, out / "optimize", resume=resume, progress=not quiet, log=log)
    write_text(out / "weights.json", (out / "optimize" / "weights.json").read_text(encoding="utf-8"))
    weights = {cfg.mixer.method: res.as_dict(res.recommended)}
    for b in baselines:
        weights[b] = resolve_weights(b, st.pretrain, natural_weights(subset(data, st.pretrain)))
    evals = {}
    for lab, w in weights.items():
        log(f"stage two: pretrain the {cfg.model.preset} target on the {lab} mixture, fine-tune on {st.sft}")
        evals[lab] = two_stage_target(cfg, data, w, out if lab == cfg.mixer.method else out / f"baseline-{lab}",
                                      resume, not quiet, log)
    table = format_two_stage(weights, evals, st.pretrain, st.sft)
    write_text(out / "summary.md", "Test loss after fine-tuning (response tokens of the sft tasks; "
               "text loss of the pretrain domains) and the stage-one mixtures.\n\n```\n" + table + "\n```\n")
    return table
