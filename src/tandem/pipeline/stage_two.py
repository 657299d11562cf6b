"""The stage-two job: train the target on a mixture, save it so Hugging Face loads it, evaluate it per domain
(losses, and task metrics for the SFT domains that declare one), write eval.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tandem.evaluation.evaluate import domain_split_losses, evaluate, finished_eval
from tandem.evaluation.generate import sft_outcome
from tandem.io import read_jsonl, write_json
from tandem.mixing.weights import as_array
from tandem.models import save_model
from tandem.report.plots import plot_training
from tandem.training.distributed import is_main
from tandem.training.trainer import train


def _plot_training(out) -> None:
    """OUT/training.png: the target's training (and periodic validation) curves from OUT/metrics.jsonl."""
    records = read_jsonl(out / "metrics.jsonl")
    if records:
        plot_training(records, out / "training.png")


def _set_special_ids(folder, tok) -> None:
    """The saved GPT's config.json learns the tokenizer's eos (and pad) id, so `generate` stops where tandem does."""
    path = folder / "config.json"
    meta = folder / "tandem_model.json"
    if not path.is_file() or not meta.is_file() or json.loads(meta.read_text()).get("kind") != "gpt":
        return
    c = json.loads(path.read_text())
    c.update({"eos_token_id": tok.eos_id, "pad_token_id": tok.eos_id})
    write_json(path, c)


def _model_meta(cfg, data) -> dict:
    return {"tokenizer_fingerprint": data.tokenizer.fingerprint, "seq_len": cfg.train.seq_len, "domains": data.domains}


def periodic_validation(cfg, data):
    """What the trainer logs every train.eval_interval steps: each domain's validation loss (under torchrun each rank
    scores a share of the windows, on its shards under FSDP)."""
    def validate(learner):
        per, _ = domain_split_losses(learner.model, data.split_arrays("valid"), cfg.train.seq_len, cfg.eval.max_tokens,
                                     cfg.eval.batch_size, learner.device, cfg.train.precision)
        return per
    return validate


def train_and_evaluate(cfg, data, weights: dict, out: Path, resume: bool, quiet: bool, model_cfg=None) -> dict:
    """Stage two: train on `weights`, save the model, evaluate, write eval.json; returns the eval dict."""
    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    outcome = train(cfg, data, as_array(weights, data.domains), out, model_cfg=model_cfg, resume=resume,
                    progress=not quiet, log=log, validate=periodic_validation(cfg, data))
    if is_main():
        save_model(outcome.model, out / "model", extra=_model_meta(cfg, data))
        data.tokenizer.save_pretrained(out / "model", cfg.train.seq_len)
        _set_special_ids(out / "model", data.tokenizer)
        _plot_training(out)
    result = evaluate(outcome.model, data, cfg.train.seq_len, cfg.eval.max_tokens, cfg.eval.batch_size,
                      outcome.learner.device, cfg.train.precision)
    ev = {
        "test_loss": result["test_loss"],
        "valid_loss": result["valid_loss"],
        "tokens_seen": outcome.tokens_seen(data.domains),
        "epochs": outcome.epochs(data.domains),
        "weights": weights,
        "eval_tokens": {"valid": result["valid_tokens"], "test": result["test_tokens"]},
        "train_wall_time_s": outcome.wall_time,
        "model_params": sum(p.numel() for p in outcome.model.parameters()),
    }
    ev.update(sft_outcome(cfg, data, outcome.model, outcome.learner.device, log))
    write_json(out / "eval.json", ev)
    return ev


def stage_two(cfg, data, weights: dict, out: Path, resume: bool, quiet: bool) -> dict:
    """Train and evaluate the target; on resume a finished stage (eval.json for these weights) is kept."""
    ev = finished_eval(out, weights) if resume else None
    return ev if ev is not None else train_and_evaluate(cfg, data, weights, out, resume, quiet)


def online_mixer(cfg, num_domains: int):
    """The mixer settings under which an online method (ODM, ADO, Skill-It, Aioli) steers the target's own training,
    as their papers run them: the target's model, batch, learning rate and schedule, as many rounds as fill
    train.steps (warm-up included)."""
    from tandem.errors import InputError
    from tandem.mixing import methods, online

    mc = methods.resolve_mixer(cfg)
    if mc.method not in online.ONLINE_METHODS:
        raise InputError(f"--online: mixer.method {mc.method!r} does not adapt during training; expected one of "
                         f"{', '.join(online.ONLINE_METHODS)}")
    rs = online.round_steps(mc, num_domains)
    warm = min(mc.warmup_steps, max(cfg.train.steps - rs, 0))
    episodes = max(1, (cfg.train.steps - warm) // rs)
    return mc.model_copy(update={"proxy": cfg.model, "batch_size": cfg.train.batch_size, "episodes": episodes,
                                 "warmup_steps": warm, "lr": None})


def train_online_and_evaluate(cfg, data, out: Path, resume: bool, quiet: bool) -> dict:
    """The target trained under an online method's adapting mixture (its rounds, probes and updates in the target's
    own run: OUT/online holds the trajectory and checkpoints), saved, evaluated; eval.json's `weights` is the
    mixture averaged over the run (what the target trained on), `online` says how it ran."""
    import time

    import numpy as np

    from tandem.mixing.optimize import optimize_online

    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    mc = online_mixer(cfg, len(data.domains))
    run_cfg = cfg.model_copy(update={"mixer": mc})
    held: dict = {}
    (out / "online").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = optimize_online(run_cfg, mc, data, out / "online", resume, not quiet, log, t0, keep=held)
    ctx = held["ctx"]
    learner = ctx.proxy
    if is_main():
        save_model(learner.module, out / "model", extra=_model_meta(cfg, data))
        data.tokenizer.save_pretrained(out / "model", cfg.train.seq_len)
        _set_special_ids(out / "model", data.tokenizer)
    result = evaluate(learner.model, data, cfg.train.seq_len, cfg.eval.max_tokens, cfg.eval.batch_size,
                      learner.device, cfg.train.precision)
    seen = ctx.problem.train.tokens_seen()
    rows = np.array([max(len(data.tokens(d, "train")), 1) for d in data.domains], dtype=np.float64)
    ev = {
        "test_loss": result["test_loss"],
        "valid_loss": result["valid_loss"],
        "tokens_seen": {d: int(t) for d, t in zip(data.domains, seen)},
        "epochs": {d: float(t / r) for d, t, r in zip(data.domains, seen, rows)},
        "weights": res.as_dict(res.average),
        "online": {"method": mc.method, "rounds": mc.episodes, "target_steps": int(learner.step_count),
                   "proxy_sized_steps": int(ctx.steps),  # the target's, and a scratch copy's (Skill-It's graph)
                   "final_weights": res.as_dict(res.final)},
        "eval_tokens": {"valid": result["valid_tokens"], "test": result["test_tokens"]},
        "train_wall_time_s": time.perf_counter() - t0,
        "model_params": sum(p.numel() for p in learner.module.parameters()),
    }
    ev.update(sft_outcome(cfg, data, learner.model, learner.device, log))
    write_json(out / "eval.json", ev)
    return ev
