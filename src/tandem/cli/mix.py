"""`tandem optimize` (stage one), `tandem run` (stage one, stage two, evaluation) and `tandem recommend` (candidate
mixtures scored by short trainings of the target). The jobs themselves are in tandem.pipeline.run; torch loads
only once a command runs."""

from __future__ import annotations

from pathlib import Path

from tandem.cli.common import add_dry_run, load, log_to, prepare
from tandem.errors import InputError
from tandem.io import check_writable_dir


def cmd_optimize(args) -> int:
    from tandem.pipeline.run import optimize_job, validate
    from tandem.report.tables import format_epochs, format_evidence, format_weights

    cfg = load(args)
    cfg = validate(cfg)
    if args.dry_run:
        from tandem.cli.plan import dry_run

        return dry_run(cfg, args, "optimize")
    out = check_writable_dir(args.out)
    data = prepare(cfg, args)
    res = optimize_job(cfg, data, out, args.resume, args.force, args.quiet, log_to(args.quiet))
    print(format_weights({"uniform": {d: 1 / len(res.names) for d in res.names},
                          cfg.mixer.method: res.as_dict(res.recommended)}))
    for extra in (format_evidence(out / "weights.json"), format_epochs(out / "weights.json")):
        if extra:
            print(extra)
    print(f"wrote {out / 'weights.json'} ({res.wall_time:.1f} s)")
    return 0


def cmd_run(args) -> int:
    from tandem.pipeline.run import run_job, validate

    cfg = load(args)
    cfg = validate(cfg)
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
    if args.dry_run:
        from tandem.cli.plan import dry_run

        return dry_run(cfg, args, "run")
    data = prepare(cfg, args)
    print(run_job(cfg, data, out, baselines, args.resume, args.force, args.quiet, args.check_seeds, args.check_steps,
                  log_to(args.quiet)))
    print(f"wrote {out / 'weights.json'}, {out / 'eval.json'}, {out / 'summary.md'} (stage one in {out / 'optimize'})")
    return 0


def cmd_recommend(args) -> int:
    from tandem.api import recommend
    from tandem.mixing.recommend import format_check

    specs = [c for c in args.candidates.split(",") if c]
    candidates: dict[str, str] = {}
    for spec in specs:
        # LABEL=FILE names a candidate; a path that itself holds '=' (runs/lr=1e-3/weights.json) is not split
        if spec in ("uniform", "natural") or Path(spec).is_file() or "=" not in spec:
            label, path = "", spec
        else:
            label, _, path = spec.partition("=")
        label = label or (path if path in ("uniform", "natural") else Path(path).parent.name or Path(path).stem)
        if label in candidates:
            raise InputError(f"--candidates: two candidates are called {label!r}; name them LABEL=FILE")
        candidates[label] = path
    report = recommend(args.config, args.out, candidates, args.seeds, args.steps, args.set, args.force, args.quiet,
                       log=log_to(args.quiet))
    print(format_check(report))
    print(f"wrote {Path(args.out) / 'recommend.json'} and {Path(args.out) / 'weights.json'} (the recommended mixture)")
    return 0


def register(sub, common) -> None:
    sp = sub.add_parser("optimize", help="learn the domain weights (stage one) with mixer.method",
                        description="Run the mixture method of the config (TANDEM by default) on the proxy and write "
                                    "OUT/weights.json, OUT/trajectory.csv, OUT/metrics.jsonl and OUT/weights.png.")
    common(sp)
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    sp.add_argument("--force", action="store_true", help="replace a run already in OUT instead of refusing")
    add_dry_run(sp)
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
    add_dry_run(sp)
    sp.add_argument("--check-seeds", type=int, default=0,
                    help="before stage two, score the learned mixture (capped and not), uniform and natural by "
                         "trainings of the target on this many paired seeds (validation loss only) and train on the "
                         "best (default 0: off)")
    sp.add_argument("--check-steps", type=int, default=None,
                    help="steps of each check training (default: train.steps, the target's own: shorter runs "
                         "favour what helps early and can pick a mixture the full target finds worse)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("recommend", help="score candidate mixtures by trainings of the target (validation "
                                          "loss, paired seeds) and recommend the best",
                        description="Train cfg.model for --steps on each candidate mixture over --seeds paired seeds, "
                                    "compare validation losses to uniform's, and write the best to OUT/weights.json.")
    common(sp)
    sp.add_argument("--candidates", required=True,
                    help="comma-separated mixtures: weights files (LABEL=FILE to name one), uniform, natural")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--seeds", type=int, default=3, help="paired seeds per candidate (default 3)")
    sp.add_argument("--steps", type=int, default=None, help="steps of each training (default: train.steps, the target's own)")
    sp.add_argument("--force", action="store_true", help="replace a run already in OUT instead of refusing")
    sp.set_defaults(func=cmd_recommend)
