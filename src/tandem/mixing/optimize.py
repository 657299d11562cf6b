"""Stage one: learn the mixture (`tandem optimize`). Builds the twins, runs the loop, checkpoints every
episode, and writes weights.json, trajectory.csv, metrics.jsonl and weights.png."""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tandem.config import Config
from tandem.data.cache import PreparedData, natural_weights
from tandem.errors import InputError
from tandem.io import write_json, write_text
from tandem.tracking import append_metrics
from tandem.mixing import methods, online
from tandem.mixing.evidence import episode_statistics, weight_intervals
from tandem.mixing.updates import project_capped_simplex
from tandem.mixing.lm import LMProblem, target_weights
from tandem.mixing.loop import EpisodeRecord, LoopSpec, LoopState, run_loop
from tandem.models import build_model
from tandem.training.checkpoint import load_learners, restoring, save_learners
from tandem.training.distributed import is_main
from tandem.training.learner import Learner, OptimConfig
from tandem.training.trainer import fixed_mixture_step, refuse_nonfinite_updates, setup_torch, truncate_metrics


@dataclass
class OptimizeResult:
    names: list[str]
    final: np.ndarray
    average: np.ndarray
    recommended: np.ndarray
    history: list[EpisodeRecord]
    wall_time: float
    proxy_steps: int
    train_tokens: int  # tokens both twins consumed in stage one (forward+backward)

    def as_dict(self, w: np.ndarray) -> dict[str, float]:
        return {d: float(x) for d, x in zip(self.names, w)}


def _record_to_json(r: EpisodeRecord, names: list[str]) -> dict:
    # NaN and infinity are not JSON: a skipped episode's non-finite values are written as null.
    f = lambda a: {d: (float(x) if np.isfinite(x) else None) for d, x in zip(names, a)}  # noqa: E731
    return {"episode": r.episode, "step": r.step, "alpha": f(r.alpha), "delta": f(r.delta),
            "delta_se": None if r.delta_se is None else f(r.delta_se),
            "distance": r.distance if np.isfinite(r.distance) else None,
            "proxy_loss": f(r.proxy_losses), "reference_loss": f(r.reference_losses), "skipped": r.skipped}


def _record_from_json(d: dict, names: list[str]) -> EpisodeRecord:
    g = lambda k: np.array([np.nan if d[k][n] is None else d[k][n] for n in names], dtype=np.float64)  # noqa: E731
    return EpisodeRecord(d["episode"], d["step"], g("alpha"), g("delta"),
                         np.nan if d["distance"] is None else d["distance"], g("proxy_loss"), g("reference_loss"),
                         skipped=d.get("skipped", False), delta_se=g("delta_se") if d.get("delta_se") else None)


def trajectory_csv(history: list[EpisodeRecord], names: list[str]) -> str:
    """One row per episode: the mixture, Delta and its standard error within the episode (from the two held
    halves), and each domain's t over the episodes so far (standardised centred Delta, tandem.mixing.evidence)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["episode", "step", *(f"weight_{d}" for d in names), *(f"delta_{d}" for d in names),
                *(f"delta_se_{d}" for d in names), *(f"t_{d}" for d in names), "distance"])
    nan = np.full(len(names), np.nan)
    for k, r in enumerate(history):
        se = r.delta_se if r.delta_se is not None else nan
        t = episode_statistics(history[: k + 1]).get("t", nan)
        w.writerow([r.episode, r.step, *(f"{x:.8g}" for x in r.alpha), *(f"{x:.8g}" for x in r.delta),
                    *(f"{x:.4g}" for x in se), *(f"{x:.4g}" for x in t), f"{r.distance:.8g}"])
    return buf.getvalue()


def evidence_fields(spec, alpha0: np.ndarray, history: list[EpisodeRecord], names: list[str], report: str,
                    seed: int) -> dict:
    """weights.json's account of how sure stage one is: Delta's mean, standard error and t over episodes per
    domain, and each recommended weight's bootstrap interval with a flag when its move is within noise."""
    stats = episode_statistics(history)
    if not stats:
        return {}
    num = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
    out = {"delta_over_episodes": {d: {"mean": num(m), "se": num(e), "t": num(t), "sign_flips": num(f)}
                                   for d, m, e, t, f in zip(names, stats["mean"], stats["se"], stats["t"],
                                                            stats["sign_flips"])},
           "episode_correlation": float(stats["correlation"])}
    iv = weight_intervals(spec, alpha0, history, report, seed=seed)
    if iv is not None:
        out["interval"] = {d: [float(lo), float(hi)] for d, lo, hi in zip(names, iv["low"], iv["high"])}
        out["interval_level"] = float(iv["level"])
        out["within_noise"] = {d: bool(x) for d, x in zip(names, iv["within_noise"])}
        out["initial"] = {d: float(x) for d, x in zip(names, alpha0)}
    return out


def target_epochs(cfg: Config, data: PreparedData) -> tuple[np.ndarray, float, np.ndarray]:
    """Rows (windows, or examples for an SFT domain) in one epoch of each domain's whole train split, the rows the
    target draws in stage two (train.steps x train.batch_size), and each domain's supervised tokens per row:
    epochs_i = r_i * budget / rows_i with r = row_shares(w), what the stage-two sampler then consumes."""
    from tandem.data.sampler import MixtureSampler

    sampler = MixtureSampler(data.split_arrays("train"), cfg.train.seq_len, cfg.seed, data.domains)
    return (sampler.n_windows.astype(np.float64), float(cfg.train.steps * cfg.train.batch_size),
            sampler.tokens_per_row)


def epoch_limits(mc, names: list[str]) -> np.ndarray | None:
    """mixer.max_epochs per domain (inf where a domain has no cap), or None."""
    if mc.max_epochs is None:
        return None
    if isinstance(mc.max_epochs, dict):
        return np.array([mc.max_epochs.get(d, np.inf) for d in names], dtype=np.float64)
    return np.full(len(names), float(mc.max_epochs))


def rows_per_document(data: PreparedData, seq_len: int, tokens_per_row: np.ndarray | None = None) -> dict[str, float]:
    """Mean supervised tokens of one document of each domain's train split, in units of seq_len (a full text row):
    its tokens / seq_len / documents for a text domain, its mean response tokens / seq_len for an SFT domain (one
    example a row; `tokens_per_row`: the train sampler's, if at hand). A mixture of supervised tokens divided by it
    gives document probabilities."""
    if tokens_per_row is None:
        from tandem.data.sampler import MixtureSampler

        tokens_per_row = MixtureSampler(data.split_arrays("train"), seq_len, 0, data.domains).tokens_per_row
    out = {}
    for i, d in enumerate(data.domains):
        docs = data.index.get("entries", {}).get(f"{d}/train", {}).get("documents") or 1
        out[d] = (tokens_per_row[i] / seq_len if data.is_sft(d)
                  else len(data.tokens(d, "train")) / seq_len / docs)
    return out


def epoch_fields(cfg: Config, data: PreparedData, mixtures: dict[str, np.ndarray],
                 epochs: tuple[np.ndarray, float, np.ndarray] | None = None) -> dict:
    """weights.json's `epochs`: for each mixture, the epochs of each domain's train split the target would see
    (`epochs`: target_epochs, if already at hand); and `rows_per_document`, for exports that sample documents."""
    from tandem.data.sampler import row_shares

    rows, budget, per_row = epochs or target_epochs(cfg, data)

    def epochs_of(w: np.ndarray) -> np.ndarray:  # a domain without a train split (weight 0) sees 0 epochs
        return np.divide(row_shares(w, per_row) * budget, rows, out=np.zeros(len(rows)), where=rows > 0)

    return {"epochs": {label: {d: float(x) for d, x in zip(data.domains, epochs_of(w))}
                       for label, w in mixtures.items()},
            "target_rows": int(budget), "rows_per_document": rows_per_document(data, cfg.train.seq_len, per_row),
            "rows_measured_with": rows_measured_with(cfg, data)}


def rows_measured_with(cfg: Config, data: PreparedData) -> dict:
    """What rows_per_document depends on: the tokenizer (its fingerprint) and the row length."""
    return {"tokenizer": cfg.tokenizer.kind, "tokenizer_fingerprint": data.tokenizer.fingerprint,
            "seq_len": cfg.train.seq_len}


def row_caps(limits: np.ndarray, epochs: tuple[np.ndarray, float, np.ndarray]) -> np.ndarray:
    """The largest share of the target's rows that keeps each domain within its epoch limit; 0 for a domain with no
    train rows (target-only: never drawn), whatever its limit (an uncapped one would give inf x 0)."""
    rows, budget, _ = epochs
    with np.errstate(invalid="ignore"):
        return np.where(rows > 0, limits * rows / budget, 0.0)


def cap_epochs(weights: np.ndarray, limits: np.ndarray,
               epochs: tuple[np.ndarray, float, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`weights` projected so no domain exceeds its epoch limit at the target's budget (in the rows the sampler
    draws: the caps are on rows), and which caps bind."""
    from tandem.data.sampler import row_shares, token_shares

    rows, _, per_row = epochs
    caps = row_caps(limits, epochs)
    capped_rows = project_capped_simplex(row_shares(weights, per_row), caps)
    # a cap binds where the projection holds the domain at it, or past it when the caps cannot all hold together; a
    # domain without train rows (target-only) has cap 0 and weight 0 whatever the caps, so none binds for it
    binding = np.isfinite(caps) & (capped_rows >= caps * (1 - 1e-9)) & (rows > 0)
    return token_shares(capped_rows, per_row), binding


def apply_caps(cfg: Config, data: PreparedData, mc, recommended: np.ndarray, log) -> tuple[np.ndarray, dict]:
    """The recommendation projected onto mixer.max_epochs' caps, and what weights.json records about it."""
    names = data.domains
    natural = natural_weights(data)
    baselines = {"uniform": methods.mixture_array("uniform", names, natural),
                 "natural": np.array([natural[d] for d in names])}
    epochs = target_epochs(cfg, data)
    limits = epoch_limits(mc, names)
    if limits is None:
        return recommended, epoch_fields(cfg, data, {"recommended": recommended, **baselines}, epochs)
    capped, binds = cap_epochs(recommended, limits, epochs)
    binding = [d for d, b in zip(names, binds) if b]
    feasible = float(row_caps(limits, epochs).sum()) >= 1.0
    if not feasible:
        log(f"mixer.max_epochs: the target's {int(epochs[1])} rows exceed every domain's cap together; the "
            f"recommendation repeats each domain in proportion to its cap")
    elif binding:
        log(f"mixer.max_epochs: the cap binds for {', '.join(binding)}")
    extra = {"uncapped": {d: float(x) for d, x in zip(names, recommended)},
             "max_epochs": {d: (float(e) if np.isfinite(e) else None) for d, e in zip(names, limits)},
             "caps_binding": binding,
             # false: the target's rows exceed every domain's cap together, so each cap is exceeded
             "caps_feasible": feasible,
             **epoch_fields(cfg, data, {"recommended": capped, "uncapped": recommended, **baselines}, epochs)}
    return capped, extra


def twin_optim_config(cfg: Config, total_steps: int) -> OptimConfig:
    """The target's optimizer settings (tandem.training.trainer.optim_config) at the twins' learning rate and length."""
    from dataclasses import replace

    from tandem.training.trainer import optim_config

    return replace(optim_config(cfg.train), lr=cfg.mixer.lr or cfg.train.lr, total_steps=total_steps,
                   warmup_steps=min(cfg.train.warmup_steps, total_steps))


def proxy_learner(cfg: Config, mc, data: PreparedData, oc: OptimConfig, device, role: str,
                  seed: int | None = None) -> Learner:
    """A fresh model of the proxy's size (the proxy, a twin, a scratch copy) with its optimizer, refusing non-finite
    updates under the name `role`; initialised from `seed` (default: the run's)."""
    compile_ = cfg.train.compile if mc.compile is None else mc.compile
    fsdp = cfg.train.fsdp if mc.fsdp is None else mc.fsdp
    seed = cfg.seed if seed is None else seed
    learner = Learner(build_model(mc.proxy, data.vocab_size, cfg.train.seq_len, seed, cfg.base_dir), oc,
                      len(data.domains), device, cfg.train.precision, compile=compile_, fsdp=fsdp)
    refuse_nonfinite_updates(learner, role)
    return learner


def write_trajectory(out_dir: Path, history: list[EpisodeRecord], names: list[str], title: str,
                     distance: bool = False) -> None:
    """trajectory.csv and weights.png of a stage one (with the twins' distance where there are twins)."""
    write_text(out_dir / "trajectory.csv", trajectory_csv(history, names))
    if history:
        from tandem.report.plots import plot_trajectories

        plot_trajectories([r.step for r in history], np.stack([r.alpha for r in history]), names,
                          out_dir / "weights.png", title=title,
                          distance=[max(r.distance, 1e-12) for r in history] if distance else None)


def write_weights(out_dir: Path, names: list[str], final: np.ndarray, average: np.ndarray, recommended: np.ndarray,
                  method: str, extra: dict | None = None) -> None:
    as_d = lambda w: {d: float(x) for d, x in zip(names, w)}  # noqa: E731
    obj = {
        "domain_weights": as_d(recommended),
        "final": as_d(final),
        "average": as_d(average),
        # DoReMi's config format: the mixture to train on.
        "train_domain_weights": as_d(recommended),
        "method": method,
    }
    obj.update(extra or {})
    write_json(out_dir / "weights.json", obj)


def pretrain_reference(cfg: Config, data: PreparedData, reference: Learner, batch_size: int, proxy_total: int,
                       natural: dict[str, float], progress: bool) -> int:
    """DoReMi's reference: trained once on the reference mixture, then frozen. Returns its step count."""
    from tandem.progress import bar as progress_bar

    from tandem.data.sampler import MixtureSampler

    mc = cfg.mixer
    steps = mc.reference_steps or proxy_total
    reference.oc = twin_optim_config(cfg, steps)
    names = data.domains
    w = methods.mixture_array(mc.reference_mixture, names, natural)
    sampler = MixtureSampler(data.split_arrays("train"), cfg.train.seq_len, cfg.seed + 31, names)
    for _ in progress_bar(range(steps), desc="reference (frozen)", unit="step", progress=progress, leave=False):
        fixed_mixture_step(reference, sampler, w, batch_size)
    return steps


def mixture_valid_loss(cfg: Config, data: PreparedData, weights: np.ndarray, model_cfg, steps: int, batch_size: int,
                       oc: OptimConfig | None = None, horizon: float = 1.0) -> float:
    """Train a fresh model for `steps` on `weights` and return its validation loss under the target weights.
    horizon < 1: train on the first `horizon` of each domain's train split (a short run that repeats every domain
    as many epochs as a run 1/horizon times longer on the whole split)."""
    from tandem.data.sampler import MixtureSampler
    from tandem.evaluation.evaluate import domain_split_losses

    device = setup_torch(cfg.train)
    names = data.domains
    oc = oc or twin_optim_config(cfg, steps)
    learner = Learner(build_model(model_cfg, data.vocab_size, cfg.train.seq_len, cfg.seed, cfg.base_dir), oc,
                      len(names), device, cfg.train.precision)
    from tandem.mixing.lm import match_horizon

    arrays = [match_horizon(a, horizon, cfg.train.seq_len) for a in data.split_arrays("train")]
    sampler = MixtureSampler(arrays, cfg.train.seq_len, cfg.seed, names)
    for _ in range(steps):
        fixed_mixture_step(learner, sampler, weights, batch_size)
    target = target_weights(cfg.mixer.target, names)
    losses, _ = domain_split_losses(learner.model, data.split_arrays("valid"), cfg.train.seq_len, cfg.eval.max_tokens,
                                    cfg.eval.batch_size, device, cfg.train.precision, flops_params=learner.num_params)
    return float(np.nansum(target * losses))


def search(cfg: Config, mc, data: PreparedData, out_dir: Path, natural: dict, progress: bool, log, t0: float) -> OptimizeResult:
    """grid (each point trains the target) or regmix (a proxy sweep and a regression); resumable per point."""
    from tandem.progress import bar as progress_bar

    from tandem.mixing import search as S

    names = data.domains
    if mc.method == "grid":
        points = S.simplex_grid(len(names), mc.grid_resolution)
        model_cfg, steps, batch = cfg.model, cfg.train.steps, cfg.train.batch_size
    else:
        prior = np.array([natural[d] for d in names])
        points = (S.regmix_sweep(mc.regmix_samples, prior, cfg.seed) if mc.regmix_regression == "lightgbm"
                  else S.dirichlet_mixtures(mc.regmix_samples, prior, cfg.seed))
        from tandem.mixing.budget import regmix_steps

        model_cfg, batch = mc.proxy, mc.batch_size or cfg.train.batch_size
        steps = regmix_steps(mc)
    bar = progress_bar(total=len(points), desc=f"optimize ({mc.method})", unit="mixture", progress=progress)
    values = S.evaluate_points(points, lambda w: mixture_valid_loss(cfg, data, w, model_cfg, steps, batch),
                               out_dir / "points.jsonl", on_point=lambda i, w, v: bar.update(1))
    bar.close()
    if mc.method == "grid":
        best = points[int(np.argmin(values))]
    elif mc.regmix_regression == "lightgbm":
        best = S.regmix_choose_topk(points, values, np.array([natural[d] for d in names]), cfg.seed)
    else:
        # candidates from the sweep's own prior: the regression is only trusted where it saw data
        candidates = S.dirichlet_mixtures(20000, np.array([natural[d] for d in names]), cfg.seed + 1)
        best = S.regmix_choose(points, values, np.vstack([candidates, points]))
    wall = time.perf_counter() - t0
    tokens = len(points) * steps * batch * cfg.train.seq_len
    rows = ["," .join([*(f"weight_{d}" for d in names), "valid_loss"])]
    rows += [",".join([*(f"{x:.6g}" for x in w), f"{v:.6g}"]) for w, v in zip(points, values)]
    write_text(out_dir / "points.csv", "\n".join(rows) + "\n")
    recommended, capped = apply_caps(cfg, data, mc, best, log)
    write_weights(out_dir, names, best, best, recommended, mc.method,
                  {"points": len(points), "steps_per_point": steps, "train_tokens": tokens, "wall_time_s": wall,
                   "best_valid_loss": float(values.min()), **capped})
    return OptimizeResult(names, best, best, recommended, [], wall, len(points) * steps, tokens)


def online_context(cfg: Config, mc, data: PreparedData):
    """An online method's proxy (and Skill-It's scratch copy), LM problem, fixed validation sets, target, prior
    and policy; returns (context, policy, initial mixture, batch size)."""
    if mc.sampling == "reweight":
        raise InputError(f"mixer.sampling: {mc.method} draws its batches by its mixture; sampling=reweight applies "
                         f"to the loop methods only")
    device = setup_torch(cfg.train)
    names = data.domains
    batch_size = mc.batch_size or cfg.train.batch_size
    total = online.schedule_steps(mc, len(names))
    oc = twin_optim_config(cfg, total)
    proxy = proxy_learner(cfg, mc, data, oc, device, "proxy")
    scratch = (proxy_learner(cfg, mc, data, oc, device, "scratch copy")
               if mc.method == "skillit" and mc.skillit.graph is None else None)
    problem = LMProblem(cfg, data, batch_size, horizon_rows=total * batch_size)
    natural = natural_weights(data)
    alpha0 = methods.initial_weights(mc, names, natural)
    ctx = online.make_context(mc, problem, names, natural, cfg.seed, proxy, scratch)
    return ctx, online.POLICIES[mc.method](mc, len(names), alpha0), alpha0, batch_size


def optimize_online(cfg: Config, mc, data: PreparedData, out_dir: Path, resume: bool, progress: bool, log,
                    t0: float, keep: dict | None = None) -> OptimizeResult:
    """ODM, Aioli, Skill-It, ADO (tandem.mixing.online): one proxy, warm-up steps at the initial mixture, the
    method's one-time work, then its rounds; checkpointed every checkpoint_interval rounds, resumable. `keep`
    receives the context (its `proxy` the trained model: the target, when the method steers the target's own run)."""
    from tandem.progress import bar as progress_bar

    names = data.domains
    ctx, policy, alpha, batch_size = online_context(cfg, mc, data)
    proxy, problem = ctx.proxy, ctx.problem
    started, history = False, []
    ckpt_dir, metrics_path = out_dir / "checkpoint", out_dir / "metrics.jsonl"
    learners = {"proxy": (proxy, "proxy_opt")}
    loaded = load_learners(ckpt_dir, learners, log=log) if resume else None
    if loaded is not None:
        rng, st = loaded
        with restoring(ckpt_dir):
            proxy.step_count = int(st["proxy_step"])
            problem.load_state_dict(st["samplers"])
            torch.set_rng_state(rng)
            ctx.rng.bit_generator.state = st["policy_rng"]
            ctx.steps = st["steps"]
            policy.load_state_dict(st["policy"])
            alpha, started = np.array(st["alpha"], dtype=np.float64), bool(st["started"])
            if alpha.shape != (len(names),):
                raise ValueError(f"alpha has {alpha.size} entries, not one per domain ({len(names)})")
            history = [_record_from_json(h, names) for h in st["history"]]
            truncate_metrics(metrics_path, len(history) - 1, key="episode")
        log(f"resumed at round {len(history)}")
    elif metrics_path.exists() and is_main():
        metrics_path.unlink()

    def checkpoint() -> None:  # under torchrun every rank writes its part
        save_learners(ckpt_dir, learners, torch.get_rng_state(),
                      {"alpha": alpha.tolist(), "started": started, "proxy_step": proxy.step_count,
                         "steps": ctx.steps, "samplers": problem.state_dict(), "policy": policy.state_dict(),
                         "policy_rng": ctx.rng.bit_generator.state,
                         "history": [_record_to_json(h, names) for h in history]})

    if not started:
        policy.initial(ctx)  # one-time work on the proxy as initialised (Skill-It's graph)
        ctx.train(alpha, mc.warmup_steps)
        alpha = policy.start(ctx, alpha)
        started = True
    bar = progress_bar(total=mc.episodes, initial=len(history), desc=f"optimize ({mc.method})", unit="round",
                       progress=progress)

    def on_round(t, a, rec) -> None:
        nonlocal alpha
        alpha = np.asarray(a, dtype=np.float64)
        append_metrics(metrics_path, _record_to_json(rec, names), cfg.train.report_to)
        bar.update(1)
        if mc.checkpoint_interval and (t + 1) % online.checkpoint_every(mc, len(names)) == 0:
            checkpoint()

    alpha = online.run_online(policy, ctx, alpha, mc.episodes, len(history), history, on_round)
    bar.close()
    if mc.checkpoint_interval:
        checkpoint()
    if keep is not None:
        keep["ctx"] = ctx
    return write_online_outputs(cfg, mc, data, ctx, alpha, history, batch_size, out_dir, time.perf_counter() - t0,
                                log, policy.outputs(data.domains))


def write_online_outputs(cfg: Config, mc, data: PreparedData, ctx, alpha: np.ndarray, history: list, batch_size: int,
                         out_dir: Path, wall: float, log, extra: dict | None = None) -> OptimizeResult:
    names = data.domains
    average = np.mean([r.alpha for r in history], axis=0) if history else alpha
    learned = average if mc.report == "average" else alpha
    recommended, capped = apply_caps(cfg, data, mc, learned, log)
    tokens = int(ctx.steps * batch_size * cfg.train.seq_len)
    write_weights(out_dir, names, alpha, average, recommended, mc.method, {
        "target": {d: float(x) for d, x in zip(names, ctx.target)}, "episodes": mc.episodes,
        "proxy_steps": ctx.steps, "train_tokens": tokens, "wall_time_s": wall, **capped, **(extra or {})})
    write_trajectory(out_dir, history, names, f"{mc.method}: domain weights per round")
    return OptimizeResult(names, alpha, average, recommended, history, wall, ctx.steps, tokens)


def optimize(cfg: Config, data: PreparedData, out_dir: Path, resume: bool = False, progress: bool = True,
             log: Callable[[str], None] = print) -> OptimizeResult:
    """Stage one: learn the mixture with mixer.method and write OUT/weights.json (and, for learned methods,
    trajectory.csv, metrics.jsonl, weights.png and a checkpoint)."""
    methods.check_method(cfg.mixer.method)
    mc = methods.effective(cfg.mixer)
    names = data.domains
    out_dir.mkdir(parents=True, exist_ok=True)
    natural = natural_weights(data)
    t0 = time.perf_counter()
    if mc.method in methods.STATIC_METHODS:
        w = methods.static_weights(mc, names, natural)
        write_weights(out_dir, names, w, w, w, mc.method,
                      epoch_fields(cfg, data, {"recommended": w, "uniform": methods.mixture_array("uniform", names, natural),
                                               "natural": np.array([natural[d] for d in names])}))
        return OptimizeResult(names, w, w, w, [], time.perf_counter() - t0, 0, 0)
    if not data.trainable.all() and mc.method not in methods.LOOP_METHODS:
        only = [d for d, t in zip(names, data.trainable) if not t]
        raise InputError(f"mixer.method={mc.method}: data.domains.{only[0]} has no train split (a target-only "
                         f"domain); {mc.method} mixes every domain it is given, so use tandem, doremi, doge or a "
                         f"static method, or give the domain a train split")
    if mc.method in methods.SEARCH_METHODS:
        return search(cfg, mc, data, out_dir, natural, progress, log, t0)
    if mc.method in online.ONLINE_METHODS:
        return optimize_online(cfg, mc, data, out_dir, resume, progress, log, t0)
    return optimize_loop(cfg, mc, data, out_dir, resume, progress, log, t0, natural)


@dataclass
class LoopRun:
    """A loop method's stage one in progress: its settings, the twins, the LM problem and the loop's state."""

    spec: LoopSpec
    proxy: Learner
    reference: Learner
    problem: LMProblem
    state: LoopState
    batch_size: int
    total: int  # the proxy's steps: warm-up plus every episode's probe and free steps
    # restart: a fresh proxy at an episode's initialisation (tandem.mixing.loop.run_loop's `initial`)
    initial: Callable[[int], Learner] | None = None
    twins: dict = dataclasses.field(init=False)

    def __post_init__(self):
        self.twins = {"proxy": (self.proxy, "proxy_opt"), "reference": (self.reference, "reference_opt")}


def build_twins(cfg: Config, mc, data: PreparedData, natural: dict) -> LoopRun:
    """The proxy and the reference (same initialisation), the LM problem on the target's horizon, the initial state."""
    spec = dataclasses.replace(methods.loop_spec(mc), on_nonfinite=mc.on_nonfinite,
                               trainable=None if data.trainable.all() else tuple(bool(t) for t in data.trainable))
    device = setup_torch(cfg.train)
    batch_size = mc.batch_size or cfg.train.batch_size
    total = spec.proxy_steps
    # restart: every episode is a whole run of probe_steps, with its own learning-rate schedule and horizon
    run_steps = spec.probe_steps if spec.restart else total
    oc = twin_optim_config(cfg, run_steps)
    initial = None
    if spec.restart:
        def initial(episode: int) -> Learner:
            # each episode its own initialisation, so the episodes are independent runs (their noise averages out)
            seed = int(np.random.SeedSequence([cfg.seed, episode]).generate_state(1)[0] % 2**31)
            return proxy_learner(cfg, mc, data, oc, device, "proxy", seed=seed)
    return LoopRun(spec, proxy_learner(cfg, mc, data, oc, device, "proxy"),
                   proxy_learner(cfg, mc, data, oc, device, "reference"),
                   LMProblem(cfg, data, batch_size, horizon_rows=run_steps * batch_size),
                   LoopState(alpha=methods.initial_weights(mc, data.domains, natural)), batch_size, total, initial)


def resume_twins(run: LoopRun, ckpt_dir: Path, names: list[str], metrics_path: Path, log) -> bool:
    """Continue from OUT/checkpoint when there is one: twins, samplers, RNG and the loop's state; True if resumed."""
    loaded = load_learners(ckpt_dir, run.twins, log=log)
    if loaded is None:
        return False
    rng, st = loaded
    with restoring(ckpt_dir):
        run.proxy.step_count, run.reference.step_count = int(st["proxy_step"]), int(st["reference_step"])
        run.problem.load_state_dict(st["samplers"])
        torch.set_rng_state(rng)
        alpha = np.array(st["alpha"], dtype=np.float64)
        if alpha.shape != (len(names),):
            raise ValueError(f"alpha has {alpha.size} entries, not one per domain ({len(names)})")
        run.state = LoopState(alpha=alpha, episode=int(st["episode"]), warmed_up=bool(st["warmed_up"]),
                              history=[_record_from_json(h, names) for h in st["history"]])
        truncate_metrics(metrics_path, run.state.episode - 1, key="episode")
    log(f"resumed at episode {run.state.episode}")
    return True


def optimize_loop(cfg: Config, mc, data: PreparedData, out_dir: Path, resume: bool, progress: bool, log, t0: float,
                  natural: dict) -> OptimizeResult:
    """A loop method (tandem, doremi, doge): the twins, resumable episodes, then the outputs."""
    names = data.domains
    run = build_twins(cfg, mc, data, natural)
    ckpt_dir, metrics_path = out_dir / "checkpoint", out_dir / "metrics.jsonl"
    resumed = resume and resume_twins(run, ckpt_dir, names, metrics_path, log)
    if run.state.episode == 0 and not run.state.warmed_up and metrics_path.exists() and is_main():
        metrics_path.unlink()
    if run.spec.reference == "frozen" and not resumed:
        pretrain_reference(cfg, data, run.reference, run.batch_size, run.total, natural, progress)
    run_episodes(cfg, mc, run, names, ckpt_dir, metrics_path, resumed, progress, log)
    return write_loop_outputs(cfg, mc, data, run, out_dir, natural, time.perf_counter() - t0, log)


def run_episodes(cfg: Config, mc, run: LoopRun, names: list[str], ckpt_dir: Path, metrics_path: Path, resumed: bool,
                 progress: bool, log) -> None:
    """The episodes (tandem.mixing.loop.run_loop), each logged, checkpointed every mixer.checkpoint_interval; a
    non-finite Delta or gradient stops with one line saying what is kept for --resume."""
    from tandem.progress import bar as progress_bar

    saved_episode = run.state.episode if resumed else None

    def checkpoint() -> None:  # under torchrun every rank writes its part
        nonlocal saved_episode
        saved_episode = run.state.episode
        save_learners(ckpt_dir, run.twins, torch.get_rng_state(), {
            "episode": run.state.episode, "warmed_up": run.state.warmed_up, "alpha": run.state.alpha.tolist(),
            "proxy_step": run.proxy.step_count, "reference_step": run.reference.step_count,
            "samplers": run.problem.state_dict(), "history": [_record_to_json(h, names) for h in run.state.history]})

    bar = progress_bar(total=run.spec.episodes, initial=run.state.episode, desc=f"optimize ({mc.method})",
                       unit="episode", progress=progress)

    def on_episode(st: LoopState, rec: EpisodeRecord) -> None:
        append_metrics(metrics_path, _record_to_json(rec, names), cfg.train.report_to)  # tandem.tracking
        if rec.skipped:
            log(f"episode {rec.episode}: non-finite Delta {rec.delta.tolist()}; mixture update skipped (mixer.on_nonfinite=skip)")
        top = int(np.argmax(rec.alpha))
        bar.set_postfix(dist=f"{rec.distance:.3g}", top=f"{names[top]}={rec.alpha[top]:.2f}")
        bar.update(1)
        if mc.checkpoint_interval and st.episode % mc.checkpoint_interval == 0:
            checkpoint()

    try:
        run.state = run_loop(run.spec, run.problem, run.proxy, run.reference, run.state, on_episode=on_episode,
                             initial=run.initial)
    except FloatingPointError as err:
        bar.close()
        kept = ("no checkpoint yet (a rerun starts from the beginning)" if saved_episode is None
                else f"the checkpoint taken before episode {saved_episode} in {ckpt_dir} is kept for --resume")
        first = str(err).splitlines()[0]
        # on_nonfinite=skip drops an episode whose Delta or reference step is not finite; the proxy's own training
        # has no such escape (its steps are the mixture's evidence), so only a lower learning rate helps there
        in_proxy = "in the proxy" in first
        advice = [] if in_proxy or mc.on_nonfinite == "skip" else [
            "resume with mixer.on_nonfinite=skip to drop such episodes' updates"]
        advice.append("start over (--force) with a lower mixer.lr" + ("" if in_proxy else
                      " or a larger mixer.gamma (the reference's validation step is 1/gamma)"))
        raise FloatingPointError(f"{mc.method} stopped: {first}; {kept}; {', or '.join(advice)}") from None
    bar.close()
    if mc.checkpoint_interval:
        checkpoint()


def write_loop_outputs(cfg: Config, mc, data: PreparedData, run: LoopRun, out_dir: Path, natural: dict, wall: float,
                       log) -> OptimizeResult:
    """weights.json (the learned, average and recommended mixtures, their evidence, the tokens spent) and the
    trajectory; the result."""
    names, spec, state = data.domains, run.spec, run.state
    final, average = state.alpha, state.average
    learned = average if mc.report == "average" else final
    recommended, capped = apply_caps(cfg, data, mc, learned, log)
    alpha0 = methods.initial_weights(mc, names, natural)
    # A reference probe step runs the proxy's rows plus the validation rows (twin), or the validation rows only.
    valid_share = run.problem.valid_rows / run.batch_size
    ref_steps = {"twin": spec.episodes * spec.probe_steps * (1 + valid_share),
                 "valid": spec.episodes * spec.probe_steps * valid_share,
                 "frozen": mc.reference_steps or run.total, "none": 0}[spec.reference]
    proxy_steps = spec.proxy_steps  # every episode ran (under restart the proxy's own count starts again each one)
    tokens = int(round((proxy_steps + ref_steps) * run.batch_size * cfg.train.seq_len))
    write_weights(out_dir, names, final, average, recommended, mc.method, {
        "target": {d: float(x) for d, x in zip(names, target_weights(mc.target, names))},
        "episodes": spec.episodes, "probe_steps": spec.probe_steps, "free_steps": spec.free_steps,
        "gamma": spec.gamma, "eta_alpha": spec.eta_alpha, "update": spec.update, "sync": spec.sync,
        **({"restart": True} if spec.restart else {}),
        "proxy_steps": proxy_steps, "train_tokens": tokens, "wall_time_s": wall,
        **evidence_fields(spec, alpha0, state.history, names, mc.report, cfg.seed), **capped,
    })
    write_trajectory(out_dir, state.history, names, f"{mc.method}: domain weights per episode", distance=True)
    return OptimizeResult(names, final, average, recommended, state.history, wall, proxy_steps, tokens)
