"""The stage-one and whole-run jobs: `optimize` (learn the mixture; for a two-stage config, the pretraining mixture
validated on the tasks) and `run` (stage one, the optional target-scale check, stage two on the learned mixture
and on each baseline, a side-by-side summary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from tandem.config import Config
from tandem.data.cache import PreparedData, natural_weights
from tandem.io import write_json, write_text
from tandem.mixing import methods
from tandem.mixing.optimize import OptimizeResult, cap_epochs, optimize, target_epochs
from tandem.mixing.recommend import check_candidates, default_steps, format_check
from tandem.mixing.weights import resolve_weights
from tandem.pipeline.common import removed_on_input_error
from tandem.pipeline.stage_two import stage_two
from tandem.pipeline.two_stage import check_stages, run_two_stage, stage_one
from tandem.report.tables import format_epochs, format_evidence, format_side_by_side
from tandem.runs import claim
from tandem.training.distributed import is_main

Log = Callable[[str], None]
# The check's epoch caps, at the two landmarks of the data-constrained scaling results (Muennighoff et al. 2023): up
# to about 4 epochs repeated tokens are worth nearly as much as fresh ones; beyond about 16 they add almost nothing.
CHECK_EPOCH_CAPS = (4.0, 16.0)


def validate(cfg: Config) -> Config:
    """What can be checked before any data is read (a known method, stage domains that exist); returns the config
    with its method's settings resolved (tandem.mixing.methods.resolve_mixer), as every job runs it."""
    cfg = cfg.model_copy(update={"mixer": methods.resolve_mixer(cfg)})
    if cfg.stages is not None:
        check_stages(cfg)
    return cfg


def optimize_job(cfg: Config, data: PreparedData, out: Path, resume: bool = False, force: bool = False,
                 quiet: bool = True, log: Log = lambda s: None) -> OptimizeResult:
    """Stage one into `out` (weights.json, trajectory.csv, ...), claimed for this config; bad input leaves nothing."""
    with removed_on_input_error(out):
        # The whole config identifies the run (a two-stage config's SFT tasks are stage one's validation data).
        claim(out, cfg, data, "optimize", resume, force)
        if cfg.stages is not None:  # stage one of a two-stage config: the pretrain mixture, validated on the tasks
            cfg, data = stage_one(cfg, data)
        return optimize(cfg, data, out, resume=resume, progress=not quiet, log=log)


def run_job(cfg: Config, data: PreparedData, out: Path, baselines: list[str], resume: bool = False,
            force: bool = False, quiet: bool = True, check_seeds: int = 0, check_steps: int | None = None,
            log: Log = lambda s: None) -> str:
    """`tandem run`: stage one, then the target on the learned mixture and on each baseline; returns the summary
    table (also OUT/summary.md)."""
    with removed_on_input_error(out):
        # The target-scale check decides what stage two trains on, so its settings are part of what the folder holds:
        # a --resume that adds, drops or changes them is another run (refused before anything changes).
        command = "run" + (f" --check-seeds {check_seeds} --check-steps {check_steps or 'default'}" if check_seeds else "")
        claim(out, cfg, data, command, resume, force)
        if cfg.stages is not None:
            return run_two_stage(cfg, data, out, baselines, resume, quiet, log)
        log(f"stage one: {cfg.mixer.method} on a {cfg.mixer.proxy.preset} proxy")
        res = optimize(cfg, data, out / "optimize", resume=resume, progress=not quiet, log=log)
        if is_main():
            write_text(out / "weights.json", (out / "optimize" / "weights.json").read_text(encoding="utf-8"))
        learned = res.as_dict(res.recommended)
        # the column of what stage two trained on: the method's mixture, or the one the check picked instead
        label, verdict = cfg.mixer.method, None
        if check_seeds:
            learned, picked, verdict = _checked(cfg, data, res, out, resume, check_seeds, check_steps, log)
            if picked != cfg.mixer.method:
                label = f"checked ({picked})"
        epochs = format_epochs(out / "optimize" / "weights.json")
        if epochs:
            log(epochs)
        log(f"stage two: {cfg.model.preset} target on the {'checked' if check_seeds else 'learned'} mixture")
        evals = {label: stage_two(cfg, data, learned, out, resume, quiet)}
        weights = {label: learned}
        for b in baselines:
            weights[b] = resolve_weights(b, data.domains, natural_weights(data))
            evals[b] = _baseline(cfg, data, weights[b], learned, evals[label], out / f"baseline-{b}",
                                 resume, quiet, log, b)
        table = format_side_by_side(weights, evals)
        if verdict:
            table += f"\n\ntarget-scale check ({check_seeds} seeds, OUT/check.json): {verdict}"
        evidence = format_evidence(out / "optimize" / "weights.json")
        if evidence:
            table += ("\n\nstage one's evidence (a move is \"within noise\" when the interval holds the initial "
                      "weight):\n" + evidence)
        write_text(out / "summary.md", "```\n" + table + "\n```\n")
        return table


def _baseline(cfg, data, wb: dict, learned: dict, learned_eval: dict, out: Path, resume: bool, quiet: bool, log: Log,
              name: str) -> dict:
    if all(abs(wb[d] - learned[d]) <= 1e-12 for d in data.domains):
        # The same mixture (to 1e-12), seed and model: the same training; its result is reused.
        log(f"baseline: {name} weights are the learned mixture; its training is the one above, not repeated")
        ev = {**learned_eval, "same_as": "the learned mixture's run (OUT/eval.json)"}
        write_json(out / "eval.json", ev)
        return ev
    log(f"baseline: {cfg.model.preset} target on {name} weights")
    return stage_two(cfg, data, wb, out, resume, quiet)


def _checked(cfg, data, res, out: Path, resume: bool, seeds: int, steps: int | None, log: Log) -> tuple[dict, str, str]:
    """The check's winner (its weights, its label, the check's verdict), and OUT/weights.json saying which mixture
    stage two trains on and why."""
    learned, report = check(cfg, data, res, out, resume, seeds, steps, log)
    if is_main():
        w = json.loads((out / "optimize" / "weights.json").read_text(encoding="utf-8"))
        write_json(out / "weights.json", {**w, "domain_weights": learned, "train_domain_weights": learned,
                                          "stage_one": w["domain_weights"], "check": {
                                              "recommended": report["recommended"], "verdict": report["verdict"]}})
    return learned, report["recommended"], report["verdict"]


def check(cfg, data, res, out: Path, resume: bool, seeds: int, steps: int | None, log: Log) -> tuple[dict, dict]:
    """The target-scale check of `run --check-seeds`: the learned mixture (capped and not, or capped at 4 and at 16
    epochs when mixer.max_epochs is unset and a cap binds), uniform and natural, scored by trainings of the target;
    the winner trains the target. Returns its weights and the check's report, kept in OUT/check.json (reused on
    resume)."""
    path = out / "check.json"
    if resume and path.is_file():
        report = json.loads(path.read_text(encoding="utf-8"))
    else:
        report = check_candidates(cfg, data, check_mixtures(cfg, data, res, out), seeds,
                                  steps or default_steps(cfg), log)
        write_json(path, report)
    log(format_check(report))
    return dict(report["candidates"][report["recommended"]]["weights"]), report


def check_mixtures(cfg, data, res, out: Path) -> dict[str, np.ndarray]:
    """The check's candidates: the learned mixture (and its uncapped form), uniform, natural, and epoch caps."""
    names = data.domains
    w = json.loads((out / "optimize" / "weights.json").read_text(encoding="utf-8"))
    nat = natural_weights(data)
    candidates = {cfg.mixer.method: res.recommended}
    if "uncapped" in w and not np.allclose([w["uncapped"][d] for d in names], res.recommended):
        candidates[f"{cfg.mixer.method} (uncapped)"] = np.array([w["uncapped"][d] for d in names])
    candidates["uniform"] = np.array([nat[d] > 0 for d in names]) / sum(nat[d] > 0 for d in names)  # trainable ones
    candidates["natural"] = np.array([nat[d] for d in names])
    if cfg.mixer.max_epochs is None:  # whether repeating a small domain helps depends on the target: try caps too
        epochs = target_epochs(cfg, data)
        for limit in CHECK_EPOCH_CAPS:
            capped, binds = cap_epochs(res.recommended, np.full(len(names), limit), epochs)
            if np.any(binds):
                candidates[f"{cfg.mixer.method} (at most {limit:g} epochs)"] = capped
    return candidates
