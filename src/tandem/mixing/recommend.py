"""A check at the target's scale before a mixture is recommended (`tandem recommend`, `tandem run --check-seeds`).

A proxy cannot see what only a larger target does (memorise a small domain it repeats), so candidate mixtures
(the learned one, capped and uncapped, uniform, natural, a peer's) are scored by trainings of the target model
itself: `steps` steps (default train.steps, the target's own length: see `default_steps`) from the same
initialisation and data order per seed, for every candidate, on the first steps / train.steps of each domain's text
(so a shorter run repeats a domain as many epochs as the full training), then the validation loss under the
mixer's target weights. Only validation data are read. Candidates are compared to
uniform by the paired difference over seeds and its standard error; the recommendation is the candidate with the
lowest mean, and the report says plainly whether it beats uniform beyond two standard errors.
"""

from __future__ import annotations

import time

import numpy as np

from tandem.config import Config
from tandem.data.cache import PreparedData, natural_weights
from tandem.mixing.methods import mixture_array


def score(cfg: Config, data: PreparedData, weights: np.ndarray, seed: int, steps: int) -> float:
    """Validation loss (target-weighted) of the target trained `steps` steps on `weights` from seed `seed`."""
    from dataclasses import replace

    from tandem.mixing.optimize import mixture_valid_loss
    from tandem.training.trainer import optim_config

    # The target's own optimizer settings, its schedule compressed into the short run (warm-up scaled alike), on
    # the same share of each domain's text: the short run repeats every domain as many epochs as the full training
    # will, so it sees the overfitting a full run would (a short run on the whole split never repeats anything).
    full = optim_config(cfg.train)
    fraction = min(1.0, steps / max(cfg.train.steps, 1))
    oc = replace(full, total_steps=steps, warmup_steps=int(round(full.warmup_steps * fraction)))
    return mixture_valid_loss(cfg.model_copy(update={"seed": seed}), data, weights, cfg.model, steps,
                              cfg.train.batch_size, oc=oc, horizon=fraction)


def default_steps(cfg: Config) -> int:
    """The check's training length when none is given: the target's own, train.steps.

    Shorter runs (on the same share of each domain's text, so they repeat it as many epochs) were the default
    before, and measured wrong where repetition decides the answer (BENCHMARKS.md, "The target-scale check with
    longer moves"): a short run favours what helps a model early (more of the large domains, less repetition), and
    in the data-restricted scenario runs of a tenth, a quarter and a half of the target's steps all ranked the
    learned mixture capped at 4 epochs above uniform, which the full target found 0.16 nats worse. Only a run as
    long as the target's measures what the target will do; `--check-steps` trades that for cost knowingly."""
    return max(1, cfg.train.steps)


def check_candidates(cfg: Config, data: PreparedData, candidates: dict[str, np.ndarray], seeds: int, steps: int,
                     log=print) -> dict:
    """Score every candidate on the same seeds; returns the report (JSON-able)."""
    names = data.domains
    if "uniform" not in candidates:
        candidates = {**candidates, "uniform": mixture_array("uniform", names, natural_weights(data))}
    t0 = time.perf_counter()
    losses: dict[str, list[float]] = {k: [] for k in candidates}
    # Candidates with the same weights (a learned mixture that stayed uniform) share one training per seed.
    same: dict[str, str] = {}  # label -> the label whose training it shares (itself for the first of its weights)
    for label, w in candidates.items():
        trained = [k for k, v in same.items() if k == v]
        same[label] = next((k for k in trained if np.allclose(candidates[k], w, rtol=0, atol=1e-12)), label)
    for s in range(seeds):
        for label, w in candidates.items():
            if same[label] != label:
                losses[label].append(losses[same[label]][-1])
                continue
            losses[label].append(score(cfg, data, np.asarray(w, dtype=np.float64), cfg.seed + s, steps))
            log(f"check: {label} seed {s}: valid loss {losses[label][-1]:.4f}")
    base = np.array(losses["uniform"])
    rows = {}
    for label, w in candidates.items():
        v = np.array(losses[label])
        d = v - base
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        rows[label] = {"weights": {n: float(x) for n, x in zip(names, w)}, "valid_loss_by_seed": v.tolist(),
                       "mean": float(v.mean()), "minus_uniform": float(d.mean()), "se": se}
    best = min(rows, key=lambda k: (rows[k]["mean"], k != "uniform"))  # a tie goes to uniform
    r = rows[best]
    beats = best != "uniform" and np.isfinite(r["se"]) and r["minus_uniform"] + 2 * r["se"] < 0
    if best == "uniform":
        verdict = "uniform has the lowest validation loss: no candidate beats it"
    elif beats:
        verdict = (f"{best} beats uniform by {-r['minus_uniform']:.4f} ± {r['se']:.4f} (paired over {seeds} seeds), "
                   f"more than two standard errors")
    else:
        verdict = (f"{best} has the lowest mean, {r['minus_uniform']:+.4f} ± {r['se']:.4f} against uniform: within "
                   f"noise over {seeds} seeds, so no candidate beats uniform beyond two standard errors")
    runs = seeds * len(set(same.values()))
    return {"candidates": rows, "recommended": best, "beats_uniform": bool(beats), "verdict": verdict,
            "seeds": seeds, "steps": steps,
            "cost": {"trainings": runs, "target_steps": runs * steps,
                     "fraction_of_one_target_training": runs * steps / max(cfg.train.steps, 1),
                     "wall_time_s": time.perf_counter() - t0}}


def format_check(report: dict) -> str:
    rows = report["candidates"]
    w = max(len(k) for k in [*rows, "candidate"])
    head = f"{'candidate':<{w}}  {'valid loss':>10}  {'- uniform':>9}  {'± s.e.':>7}"
    lines = [f"target-scale check: {report['seeds']} seeds x {report['steps']} steps per candidate "
             f"({report['cost']['fraction_of_one_target_training']:.2f} of one target training)", head, "-" * len(head)]
    for k, r in sorted(rows.items(), key=lambda kv: kv[1]["mean"]):
        lines.append(f"{k:<{w}}  {r['mean']:>10.4f}  {r['minus_uniform']:>+9.4f}  {r['se']:>7.4f}")
    lines.append(report["verdict"])
    return "\n".join(lines)
