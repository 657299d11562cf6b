"""Entry point: `python -m benchmarks speed [--quick] [...]` (run from the repository root)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from benchmarks import speed

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
    args = p.parse_args(argv)
    if args.bench == "speed":
        return speed.main(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
