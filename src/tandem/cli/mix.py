"""`tandem optimize` (stage one) and `tandem run` (stage one, stage two, evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

from tandem.errors import InputError


def _validate(cfg) -> None:
    from tandem.mixing import methods

    methods.check_method(cfg.mixer.method)
    if cfg.stages is not None:
        from tandem.training.stages import check_stages

        check_stages(cfg)


def cmd_optimize(args) -> int:
    from tandem.cli.common import load, log_to, prepare, removed_on_input_error
    from tandem.io import check_writable_dir
    from tandem.mixing.optimize import optimize

    cfg = load(args)
    _validate(cfg)
    out = check_writable_dir(args.out)
    data = prepare(cfg, args)
    with removed_on_input_error(out):
        from tandem.runs import claim

        # The whole config identifies the run (a two-stage config's SFT tasks are stage one's validation data).
        claim(out, cfg, data, "optimize", args.resume, args.force)
        if cfg.stages is not None:  # stage one of a two-stage config: the pretrain mixture, validated on the tasks
            from tandem.training.stages import stage_one

            cfg, data = stage_one(cfg, data)
        res = optimize(cfg, data, out, resume=args.resume, progress=not args.quiet, log=log_to(args.quiet))
    print(format_weights({"uniform": {d: 1 / len(res.names) for d in res.names}, cfg.mixer.method: res.as_dict(res.recommended)}))
    for extra in (format_evidence(out / "weights.json"), format_epochs(out / "weights.json")):
        if extra:
            print(extra)
    print(f"wrote {out / 'weights.json'} ({res.wall_time:.1f} s)")
    return 0


def format_weights(mixtures: dict[str, dict[str, float]]) -> str:
    labels = list(mixtures)
    names = list(next(iter(mixtures.values())))
    w = max(len(n) for n in names + ["domain"])
    head = f"{'domain':<{w}}  " + "  ".join(f"{lab:>9}" for lab in labels)
    lines = [head, "-" * len(head)]
    for d in names:
        lines.append(f"{d:<{w}}  " + "  ".join(f"{mixtures[lab][d]:>9.4f}" for lab in labels))
    return "\n".join(lines)


def format_epochs(weights_json: Path) -> str:
    """Epochs of each domain's train split the target would see at its budget under each mixture (weights.json's
    `epochs`), with the caps of mixer.max_epochs."""
    if not weights_json.is_file():
        return ""
    w = json.loads(weights_json.read_text(encoding="utf-8"))
    if "epochs" not in w:
        return ""
    ep, caps = w["epochs"], w.get("max_epochs") or {}
    labels, names = list(ep), list(w["domain_weights"])
    width = max(len(n) for n in names + ["domain"])
    head = f"{'domain':<{width}}  " + "  ".join(f"{lab:>11}" for lab in labels) + ("  max_epochs" if caps else "")
    lines = [f"epochs of each train split at the target's {w.get('target_rows', '?')} rows:", head, "-" * len(head)]
    for d in names:
        cap = caps.get(d)
        lines.append(f"{d:<{width}}  " + "  ".join(f"{ep[lab][d]:>11.2f}" for lab in labels)
                     + (f"  {('-' if cap is None else f'{cap:g}'):>10}" if caps else ""))
    return "\n".join(lines)


def format_evidence(weights_json: Path) -> str:
    """How sure stage one is of each weight: its 90% interval, Delta's t over episodes, and whether the move from
    the initial mixture is within noise (weights.json's `interval`, `delta_over_episodes`, `within_noise`)."""
    if not weights_json.is_file():
        return ""
    w = json.loads(weights_json.read_text(encoding="utf-8"))
    if "interval" not in w:
        return ""
    names = list(w["domain_weights"])
    learned = w.get("uncapped", w["domain_weights"])  # the intervals are of the mixture before any epoch caps
    width = max(len(n) for n in names + ["domain"])
    level = int(round(100 * w.get("interval_level", 0.9)))
    head = f"{'domain':<{width}}  {'weight':>8}  {f'{level}% interval':>17}  {'t(Delta)':>8}  move"
    lines = [head, "-" * len(head)]
    for d in names:
        lo, hi = w["interval"][d]
        t = w.get("delta_over_episodes", {}).get(d, {}).get("t")
        moved = "within noise" if w["within_noise"][d] else "real"
        lines.append(f"{d:<{width}}  {learned[d]:>8.4f}  {f'[{lo:.3f}, {hi:.3f}]':>17}  "
                     f"{('-' if t is None else f'{t:+.1f}'):>8}  {moved}")
    if "uncapped" in w:
        lines.append("(the learned weights before mixer.max_epochs; the recommended ones are capped, see the epochs)")
    if all(w["within_noise"].values()):
        lines.append("warning: the recommended mixture is within noise of the initial one: stage one found no "
                     "preference it can tell from noise (more episodes or validation rows give Delta more evidence)")
    return "\n".join(lines)


def format_side_by_side(weights: dict[str, dict[str, float]], evals: dict[str, dict]) -> str:
    """Per domain: weight and test loss under each mixture, then average and worst."""
    labels = list(weights)
    names = list(next(iter(weights.values())))
    w = max(len(n) for n in names + ["average"])
    head = f"{'domain':<{w}}  " + "  ".join(f"{'w:' + lab:>12}  {'loss:' + lab:>14}" for lab in labels)
    lines = [head, "-" * len(head)]
    for d in names:
        cells = []
        for lab in labels:
            v = evals[lab]["test_loss"]["per_domain"][d]
            cells.append(f"{weights[lab][d]:>12.4f}  {('-' if v is None else f'{v:.4f}'):>14}")
        lines.append(f"{d:<{w}}  " + "  ".join(cells))
    for key in ("average", "worst"):
        lines.append(f"{key:<{w}}  " + "  ".join(f"{'':>12}  {evals[lab]['test_loss'][key]:>14.4f}" for lab in labels))
    return "\n".join(lines)


def _stage_two(cfg, data, weights: dict, out: Path, args) -> dict:
    """Train and evaluate the target; with --resume a finished stage (eval.json for these weights) is kept."""
    from tandem.pipeline import train_and_evaluate
    from tandem.evaluation.evaluate import finished_eval

    ev = finished_eval(out, weights) if args.resume else None
    return ev if ev is not None else train_and_evaluate(cfg, data, weights, out, args.resume, args.quiet)


def cmd_run(args) -> int:
    from tandem.cli.common import load, prepare, removed_on_input_error
    from tandem.io import check_writable_dir

    cfg = load(args)
    _validate(cfg)
    out = check_writable_dir(args.out)
    baselines = [b for b in (args.baseline or "").split(",") if b]
    for b in baselines:
        if b not in ("uniform", "natural"):
            raise InputError(f"--baseline: unknown mixture {b!r}; expected uniform or natural")
    if args.check_seeds and args.check_seeds < 2:
        raise InputError(f"--check-seeds: expected 0 (off) or >= 2 (a paired standard error needs two seeds), "
                         f"got {args.check_seeds}")
    if args.check_steps is not None and args.check_steps < 1:
        raise InputError(f"--check-steps: expected >= 1, got {args.check_steps}")
    if args.check_seeds and cfg.stages is not None:
        raise InputError(f"{args.config}: stages: --check-seeds scores single-stage mixtures; it does not run on a "
                         f"two-stage config")
    data = prepare(cfg, args)
    with removed_on_input_error(out):
        return _run(args, cfg, data, out, baselines)


def _run(args, cfg, data, out: Path, baselines: list[str]) -> int:
    from tandem.cli.common import log_to
    from tandem.io import write_text
    from tandem.mixing.optimize import optimize
    from tandem.runs import claim

    claim(out, cfg, data, "run", args.resume, getattr(args, "force", False))
    if cfg.stages is not None:
        from tandem.training.stages import run_two_stage

        print(run_two_stage(cfg, data, out, baselines, args.resume, args.quiet))
        print(f"wrote {out / 'weights.json'}, {out / 'eval.json'}, {out / 'summary.md'} (stage one in {out / 'optimize'})")
        return 0
    log = log_to(args.quiet)
    log(f"stage one: {cfg.mixer.method} on a {cfg.mixer.proxy.preset} proxy")
    res = optimize(cfg, data, out / "optimize", resume=args.resume, progress=not args.quiet, log=log)
    from tandem.training.distributed import is_main

    if is_main():
        write_text(out / "weights.json", (out / "optimize" / "weights.json").read_text(encoding="utf-8"))
    learned = res.as_dict(res.recommended)
    if getattr(args, "check_seeds", 0):
        learned = _check(cfg, data, res, out, args, log)
        if is_main():  # the mixture stage two trains on, and why
            from tandem.io import write_json

            w = json.loads((out / "optimize" / "weights.json").read_text(encoding="utf-8"))
            check = json.loads((out / "check.json").read_text(encoding="utf-8"))
            write_json(out / "weights.json", {**w, "domain_weights": learned, "train_domain_weights": learned,
                                              "stage_one": w["domain_weights"], "check": {
                                                  "recommended": check["recommended"], "verdict": check["verdict"]}})
    epochs = format_epochs(out / "optimize" / "weights.json")
    if epochs:
        log(epochs)
    log(f"stage two: {cfg.model.preset} target on the learned mixture")
    evals = {cfg.mixer.method: _stage_two(cfg, data, learned, out, args)}
    weights = {cfg.mixer.method: learned}
    from tandem.data.cache import natural_weights
    from tandem.mixing.weights import resolve_weights

    for b in baselines:
        wb = resolve_weights(b, data.domains, natural_weights(data))
        if all(abs(wb[d] - learned[d]) <= 1e-12 for d in data.domains):
            # The same mixture (to 1e-12), seed and model: the same training; its result is reused.
            log(f"baseline: {b} weights are the learned mixture; its training is the one above, not repeated")
            from tandem.io import write_json

            evals[b] = {**evals[cfg.mixer.method], "same_as": "the learned mixture's run (OUT/eval.json)"}
            write_json(out / f"baseline-{b}" / "eval.json", evals[b])
        else:
            log(f"baseline: {cfg.model.preset} target on {b} weights")
            evals[b] = _stage_two(cfg, data, wb, out / f"baseline-{b}", args)
        weights[b] = wb
    table = format_side_by_side(weights, evals)
    evidence = format_evidence(out / "optimize" / "weights.json")
    if evidence:
        table += "\n\nstage one's evidence (a move is \"within noise\" when the interval holds the initial weight):\n" + evidence
    write_text(out / "summary.md", "```\n" + table + "\n```\n")
    print(table)
    print(f"wrote {out / 'weights.json'}, {out / 'eval.json'}, {out / 'summary.md'} (stage one in {out / 'optimize'})")
    return 0


CHECK_EPOCH_CAPS = (4.0, 16.0)


def _check(cfg, data, res, out: Path, args, log) -> dict:
    """The target-scale check of `run --check-seeds`: the learned mixture (capped and not, or capped at 4 and at 16
    epochs when mixer.max_epochs is unset and a cap binds), uniform and natural,
    scored by short target trainings; the winner trains the target. Kept in OUT/check.json (reused on --resume)."""
    import numpy as np

    from tandem.data.cache import natural_weights
    from tandem.io import write_json
    from tandem.mixing.recommend import check_candidates, format_check

    path = out / "check.json"
    if args.resume and path.is_file():
        report = json.loads(path.read_text(encoding="utf-8"))
    else:
        names = data.domains
        w = json.loads((out / "optimize" / "weights.json").read_text(encoding="utf-8"))
        nat = natural_weights(data)
        candidates = {cfg.mixer.method: res.recommended}
        if "uncapped" in w and not np.allclose([w["uncapped"][d] for d in names], res.recommended):
            candidates[f"{cfg.mixer.method} (uncapped)"] = np.array([w["uncapped"][d] for d in names])
        candidates["uniform"] = np.array([nat[d] > 0 for d in names]) / sum(nat[d] > 0 for d in names)
        candidates["natural"] = np.array([nat[d] for d in names])
        if cfg.mixer.max_epochs is None:
            # Whether repeating a small domain helps depends on the target; let the check try caps too, at the two
            # landmarks of the data-constrained scaling results (Muennighoff et al. 2023): up to about 4 epochs
            # repeated tokens are worth nearly as much as fresh ones; beyond about 16 they add almost nothing.
            from tandem.mixing.optimize import cap_epochs, target_epochs

            epochs = target_epochs(cfg, data)
            for limit in CHECK_EPOCH_CAPS:
                capped, binds = cap_epochs(res.recommended, np.full(len(names), limit), epochs)
                if np.any(binds):
                    candidates[f"{cfg.mixer.method} (at most {limit:g} epochs)"] = capped
        steps = args.check_steps or max(1, cfg.train.steps // 10)
        report = check_candidates(cfg, data, candidates, args.check_seeds, steps, log)
        write_json(path, report)
    log(format_check(report))
    return dict(report["candidates"][report["recommended"]]["weights"])


def cmd_recommend(args) -> int:
    import numpy as np

    from tandem.cli.common import load, prepare, removed_on_input_error
    from tandem.data.cache import natural_weights
    from tandem.io import check_writable_dir, write_json
    from tandem.mixing.recommend import check_candidates, format_check
    from tandem.mixing.weights import as_array, resolve_weights

    cfg = load(args)
    out = check_writable_dir(args.out)
    if cfg.stages is not None:
        raise InputError(f"{args.config}: stages: tandem recommend scores single-stage mixtures; a two-stage "
                         f"config would mix the SFT tasks into pretraining")
    if args.seeds < 2:
        raise InputError(f"--seeds: expected >= 2 (a paired standard error needs two seeds), got {args.seeds}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps: expected >= 1, got {args.steps}")
    specs = [c for c in args.candidates.split(",") if c]
    if not specs:
        raise InputError("--candidates: expected a comma-separated list of weights files, uniform or natural")
    def split_spec(spec: str) -> tuple[str, str]:
        # LABEL=FILE names a candidate; a path that itself holds '=' (runs/lr=1e-3/weights.json) is not split
        if spec in ("uniform", "natural") or Path(spec).is_file() or "=" not in spec:
            return "", spec
        label, _, path = spec.partition("=")
        return label, path

    for spec in specs:  # validate the files before any work
        _, path = split_spec(spec)
        if path not in ("uniform", "natural"):
            resolve_weights(path, cfg.domain_names)
    data = prepare(cfg, args)
    natural = natural_weights(data)
    candidates = {}
    for spec in specs:
        label, path = split_spec(spec)
        label = label or (path if path in ("uniform", "natural") else Path(path).parent.name or Path(path).stem)
        if label in candidates:
            raise InputError(f"--candidates: two candidates are called {label!r}; name them LABEL=FILE")
        candidates[label] = as_array(resolve_weights(path, data.domains, natural), data.domains)
    with removed_on_input_error(out):
        from tandem.runs import claim

        claim(out, cfg, data, "recommend", False, args.force)
        report = check_candidates(cfg, data, candidates, args.seeds, args.steps or max(1, cfg.train.steps // 10),
                                  log=(lambda s: None) if args.quiet else (lambda s: print(s, file=__import__("sys").stderr)))
        write_json(out / "recommend.json", report)
        best = report["candidates"][report["recommended"]]["weights"]
        write_json(out / "weights.json", {"domain_weights": best, "recommended": report["recommended"],
                                          "verdict": report["verdict"]})
    print(format_check(report))
    print(f"wrote {out / 'recommend.json'} and {out / 'weights.json'} (the recommended mixture)")
    return 0


def register(sub, common) -> None:
    sp = sub.add_parser("optimize", help="learn the domain weights (stage one) with mixer.method",
                        description="Run the mixture method of the config (TANDEM by default) on the proxy and write "
                                    "OUT/weights.json, OUT/trajectory.csv, OUT/metrics.jsonl and OUT/weights.png.")
    common(sp)
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    sp.add_argument("--force", action="store_true", help="replace a run already in OUT instead of refusing")
    sp.set_defaults(func=cmd_optimize)

    sp = sub.add_parser("run", help="stage one (optimize) then stage two (train the target on the learned weights) and evaluate",
                        description="Learn the mixture on the proxy, train cfg.model on it, evaluate per domain; "
                                    "optionally train baselines for a side-by-side table.")
    common(sp)
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--baseline", default="uniform",
                    help="comma-separated baseline mixtures trained the same way for comparison, in OUT/baseline-NAME/ "
                         "(uniform, natural; empty string for none; default: uniform)")
    sp.add_argument("--resume", action="store_true", help="continue from the checkpoints in OUT")
    sp.add_argument("--force", action="store_true", help="replace a run already in OUT instead of refusing")
    sp.add_argument("--check-seeds", type=int, default=0,
                    help="before stage two, score the learned mixture (capped and not), uniform and natural by short "
                         "trainings of the target on this many paired seeds (validation loss only) and train on the "
                         "best (default 0: off)")
    sp.add_argument("--check-steps", type=int, default=None,
                    help="steps of each check training (default: train.steps / 10)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("recommend", help="score candidate mixtures by short trainings of the target (validation "
                                          "loss, paired seeds) and recommend the best",
                        description="Train cfg.model for --steps on each candidate mixture over --seeds paired seeds, "
                                    "compare validation losses to uniform's, and write the best to OUT/weights.json.")
    common(sp)
    sp.add_argument("--candidates", required=True,
                    help="comma-separated mixtures: weights files (LABEL=FILE to name one), uniform, natural")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--seeds", type=int, default=3, help="paired seeds per candidate (default 3)")
    sp.add_argument("--steps", type=int, default=None, help="steps of each training (default: train.steps / 10)")
    sp.add_argument("--force", action="store_true", help="replace a run already in OUT instead of refusing")
    sp.set_defaults(func=cmd_recommend)
