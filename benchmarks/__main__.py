"""Entry point: `python -m benchmarks speed|scenarios|signal|scale [...]` (run from the repository root)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from benchmarks import speed

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["paired"]:  # a compare folder against a baseline (benchmarks/paired.py)
        from benchmarks import paired

        return paired.main(argv[1:])
    if argv[:1] == ["transfer"]:  # its own options (benchmarks/transfer.py)
        from benchmarks import transfer

        return transfer.main(argv[1:])
    if argv[:1] == ["scale"]:  # its own options (benchmarks/scale.py)
        from benchmarks import scale

        return scale.main(argv[1:])
    if argv[:1] == ["tandem-defaults"]:  # the runs that chose TANDEM's defaults (benchmarks/tandem_defaults.py)
        from benchmarks import tandem_defaults

        return tandem_defaults.main(argv[1:])
    if argv[:1] == ["power"]:  # TANDEM's step on synthetic Delta (benchmarks/power.py)
        from benchmarks import power

        return power.main(argv[1:])
    if argv[:1] == ["callback"]:  # the Trainer callbacks' cost per step (benchmarks/callback.py)
        from benchmarks import callback

        return callback.main(argv[1:])
    if argv[:1] == ["lookahead"]:  # a look-ahead mixture signal against the greedy one (benchmarks/lookahead.py)
        from benchmarks import lookahead

        return lookahead.main(argv[1:])
    if argv[:1] == ["phases"]:  # where the mixture signal points during stage one (benchmarks/phases.py)
        from benchmarks import phases

        return phases.main(argv[1:])
    if argv[:1] == ["slope"]:  # which way the target's own loss slopes at uniform (benchmarks/slope.py)
        from benchmarks import slope

        return slope.main(argv[1:])
    if argv[:1] == ["htwin"]:  # the twins over the target's whole horizon (benchmarks/htwin.py)
        from benchmarks import htwin

        return htwin.main(argv[1:])
    if argv[:1] == ["short-slope"]:  # the proxy's slope from short horizon-matched runs (benchmarks/short_slope.py)
        from benchmarks import short_slope

        return short_slope.main(argv[1:])
    if argv[:1] == ["whole"]:  # TANDEM with whole-horizon episodes (benchmarks/whole.py)
        from benchmarks import whole

        return whole.main(argv[1:])
    if argv[:1] == ["descent"]:  # one step down the proxy's loss slope at the target's horizon (benchmarks/descent.py)
        from benchmarks import descent

        return descent.main(argv[1:])
    if argv[:1] == ["signal"]:  # its own options (benchmarks/signal.py)
        from benchmarks import signal

        return signal.main(argv[1:])

    p = argparse.ArgumentParser(prog="python -m benchmarks", description="tandem benchmarks (see BENCHMARKS.md)")
    sub = p.add_subparsers(dest="bench", required=True)
    s = sub.add_parser("speed", help="training-loop throughput and TANDEM overhead vs the twin floor")
    s.add_argument("--quick", action="store_true", help="a short smoke run (minutes less; numbers are noisier)")
    s.add_argument("--only", choices=sorted(speed.BENCHES), action="append",
                   help="run only this benchmark (repeatable); other sections already in --out are kept")
    s.add_argument("--config", type=Path, default=speed.DEFAULT_CONFIG, help="config file (default: configs/default.yaml)")
    s.add_argument("--out", type=Path, default=speed.DEFAULT_OUT, help="results JSON (default: benchmarks/results/speed.json)")
    s.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    s.add_argument("--max-wait", type=float, default=900.0,
                   help="seconds to wait in total for other processes to go quiet before measuring (default 900)")
    s.add_argument("--busy-threshold", type=float, default=0.10,
                   help="machine share of CPU used by other processes above which we wait (default 0.10)")
    c = sub.add_parser("scenarios", help="mixture quality on real text: abundant, restricted, out-of-domain, oracle; "
                                          "ablations; regenerates the scenario part of BENCHMARKS.md")
    c.add_argument("--only", action="append", choices=["abundant", "restricted", "ood", "oracle", "sft-tasks", "sft-ecommerce", "sft-two-stage", "ablations",
                                                             "investigations"],
                   help="run only this scenario (repeatable); the report still includes every finished one")
    c.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    c.add_argument("--quick", action="store_true",
                   help="tiny standard-library domains and models, seconds: checks the runner end to end (needs --root)")
    c.add_argument("--root", help="folder for data/bench and runs/bench (default: the repository root)")
    c.add_argument("--prepare-only", action="store_true", help="build the scenario data and stop")
    c.add_argument("--report-only", action="store_true", help="only collect finished runs and rewrite the report")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra config override for every run")
    c.add_argument("--out", help="results JSON (default: benchmarks/results/scenarios.json)")
    c.add_argument("--markdown", help="markdown file whose scenario section is rewritten (default: BENCHMARKS.md)")
    c.add_argument("--figures", help="figure folder (default: docs/bench)")
    c.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.bench == "speed":
        return speed.main(args)
    if args.bench == "scenarios":
        from benchmarks import scenarios

        if args.quick and not args.root:
            p.error("--quick needs --root (a scratch folder)")
        if args.seeds < 1:
            p.error("--seeds must be >= 1")
        return scenarios.main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
