"""`tandem compare`: several methods side by side over paired seeds (the job is tandem.pipeline.compare)."""

from __future__ import annotations

import sys

from tandem.cli.common import add_dry_run, load, log_to
from tandem.io import check_writable_dir


def cmd_compare(args) -> int:
    from tandem.pipeline.compare import check_plan, compare_job

    cfg = load(args)
    names_m = [m.strip() for m in args.methods.split(",") if m.strip()]
    check_plan(names_m, args.seeds)
    unknown = set(cfg.methods) - set(names_m)
    if unknown:
        log_to(args.quiet)(f"note: methods.{sorted(unknown)} not in --methods; ignored")
    if args.dry_run:
        from tandem.cli.plan import dry_run

        return dry_run(cfg, args, "compare")
    out = check_writable_dir(args.out)
    _, table, warnings = compare_job(cfg, out, names_m, args.seeds, args.quiet, log_to(args.quiet), args.config,
                                     online=not args.static_online)
    print(table)
    # After the runs (bad input is one line and nothing else): where a method's stage one did not spend the budget.
    for line in warnings:
        print(line, file=sys.stderr)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and plots in {out}")
    return 0


def register(sub, common) -> None:
    sp = sub.add_parser("compare", help="run several mixture methods side by side over seeds and tabulate them",
                        description="For each method and seed: stage one (learn the weights on the proxy), then the "
                                    "same stage two (train the target, evaluate per domain). Finished runs are kept, "
                                    "so a killed compare resumes where it stopped.")
    common(sp)
    sp.add_argument("--methods", default="uniform,natural,doremi,doge,tandem",
                    help="comma-separated methods (default: uniform,natural,doremi,doge,tandem)")
    sp.add_argument("--seeds", type=int, default=1, help="seeds per method (config seed, seed+1, ...)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--resume", action="store_true",
                    help="continue from OUT (compare always does: finished runs are kept, unfinished ones resume "
                         "from their checkpoints)")
    sp.add_argument("--static-online", action="store_true",
                    help="run the online methods (odm, ado, skillit, aioli) in their static form: a stage one on the "
                         "proxy that ends in one mixture, then the target on it (default: they steer the target's own "
                         "training, as in their papers)")
    add_dry_run(sp)
    sp.set_defaults(func=cmd_compare, resume=True)
