"""Variant W's rows (BENCHMARKS.md, "TANDEM with whole-horizon episodes"): `python -m benchmarks whole FOLDER
[--uniform RESULTS] [--against LABEL=RESULTS ...]`.

FOLDER holds benchmarks/tandem_whole.sh's runs: `w-seedS` (stage one) and `target-seedS` (the target trained on its
mixture). Reported: each seed's learned mixture and its largest weight change from the initial mixture; with
targets, the paired difference in mean validation loss (test beside it, for the record) to uniform and to each
other row, read from `tandem compare` results.json files (`uniform`; for --against the method after `@`, default
tandem) or from a folder of `tandem train` runs `uniform-seedS`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _losses(path: Path, method: str) -> dict[int, tuple[float, float]]:
    """{seed: (valid, test)} from a compare's results.json, or from a folder of `NAME-seedS/eval.json` runs."""
    if path.is_file():
        rows = json.loads(path.read_text())["runs"]
        return {r["seed"]: (r["valid_loss"]["average"], r["test_loss"]["average"]) for r in rows if r["method"] == method}
    out = {}
    for run in path.glob(f"{method}-seed*"):
        ev = run / "eval.json"
        if ev.is_file():
            e = json.loads(ev.read_text())
            out[int(run.name.rsplit("seed", 1)[1])] = (e["valid_loss"]["average"], e["test_loss"]["average"])
    return out


def _paired(a: dict, b: dict) -> str:
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return f"{len(seeds)} paired seeds"
    parts = []
    for k in (0, 1):
        d = np.array([a[s][k] - b[s][k] for s in seeds])
        parts.append(f"{d.mean():+.4f} +- {d.std(ddof=1) / np.sqrt(len(d)):.4f}")
    return f"valid {parts[0]} (test {parts[1]}), {len(seeds)} seeds"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks whole", description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--uniform", type=Path, help="results.json of a compare with uniform, or a folder of uniform-seedS runs")
    p.add_argument("--against", action="append", default=[], metavar="LABEL=RESULTS[@METHOD]",
                   help="another row: a compare's results.json and its method (default tandem)")
    a = p.parse_args(argv)
    changes = []
    for w in sorted(a.folder.glob("w-seed*")):
        f = w / "weights.json"
        if not f.is_file():
            continue
        d = json.loads(f.read_text())
        names = list(d["domain_weights"])
        rec = np.array([d["domain_weights"][n] for n in names])
        init = np.array([d.get("initial", {}).get(n, 1 / len(names)) for n in names])
        changes.append(float(np.abs(rec - init).max()))
        print(f"{w.name}: {' '.join(f'{n} {x:.3f}' for n, x in zip(names, rec))}; largest change {changes[-1]:.3f}; "
              f"stage one {d['wall_time_s']:.0f} s, {d['train_tokens']} tokens")
    if changes:
        print(f"largest weight change per seed: {', '.join(f'{c:.3f}' for c in changes)}")
    mine = _losses(a.folder, "target")
    if not mine:
        return 0
    if a.uniform:
        print(f"W - uniform: {_paired(mine, _losses(a.uniform, 'uniform'))}")
    for item in a.against:
        label, path = item.split("=", 1)
        path, _, method = path.partition("@")
        print(f"W - {label}: {_paired(mine, _losses(Path(path), method or 'tandem'))}")
    return 0
