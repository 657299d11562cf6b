"""The twins over the target's whole horizon: `python -m benchmarks htwin FOLDER [--slope NAME=DIR ...]
[--reference w,...] [--prefix NAME]`.

FOLDER holds stage-one runs written by benchmarks/horizon_twins.sh, `NAME-gG-seedS` (one episode of the target's
steps, both twins from the same initialisation). Per run the episode's Delta, centred over domains (negative: the
reference trained with validation data is better there, so more weight). Reported per prefix and gamma: the mean
centred Delta over seeds with its standard error and t, and the cosine of the descent direction (minus the centred
Delta) with each finite-difference slope's (benchmarks/slope.py) and with a reference mixture's move from uniform.
No loss of a learned mixture is read here.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.phases import centred_log, cosine
from benchmarks import slope as slope_mod


def read(folder: Path, prefix: str | None = None) -> dict[tuple[str, float], tuple[list[str], dict[int, np.ndarray]]]:
    """{(name, gamma): (domains, {seed: Delta of the single episode})}."""
    out: dict = defaultdict(lambda: (None, {}))
    for run in sorted(folder.glob("*-g*-seed*")):
        m = re.fullmatch(r"(.+)-g([0-9.]+)-seed(\d+)", run.name)
        if not m or (prefix and m.group(1) != prefix) or not (run / "metrics.jsonl").is_file():
            continue
        if not (run / "weights.json").is_file():
            continue  # unfinished
        rec = json.loads((run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
        names = list(rec["delta"])
        key = (m.group(1), float(m.group(2)))
        seeds = out[key][1]
        seeds[int(m.group(3))] = np.array([rec["delta"][n] for n in names], dtype=np.float64)
        out[key] = (names, seeds)
    return dict(out)


def summarise(folder: Path, slopes: dict[str, Path], reference: np.ndarray | None, prefix: str | None) -> str:
    lines = []
    slope_dirs = {k: slope_mod.descent(slope_mod.read(v)[2]["valid_loss"]) for k, v in slopes.items()}
    for (name, gamma), (names, by_seed) in sorted(read(folder, prefix).items()):
        seeds = sorted(by_seed)
        c = np.array([by_seed[s] - by_seed[s].mean() for s in seeds])
        mean = c.mean(axis=0)
        se = c.std(axis=0, ddof=1) / np.sqrt(len(c)) if len(c) > 1 else np.full(len(names), np.nan)
        rms = float(np.sqrt((c ** 2).mean()))
        lines.append(f"{name}, gamma {gamma:g}: {len(seeds)} seeds; centred Delta (negative: more weight), "
                     f"root mean square per run {rms:.3g}")
        for n, m, e in zip(names, mean, se):
            lines.append(f"  {n:<12} {m:+.4f} +- {e:.4f}  (t {m / e:+.1f})")
        direction = -mean
        for label, d in slope_dirs.items():
            per = [cosine(-x, d) for x in c]
            lines.append(f"  cosine with the {label} slope's descent: mean direction {cosine(direction, d):+.2f}; "
                         f"per seed {' '.join(f'{v:+.2f}' for v in per)}")
        if reference is not None:
            ref = centred_log(reference)
            per = [cosine(-x, ref) for x in c]
            lines.append(f"  cosine with the reference mixture's move: mean direction {cosine(direction, ref):+.2f}; "
                         f"per seed {' '.join(f'{v:+.2f}' for v in per)}")
    return "\n".join(lines) if lines else f"{folder}: no finished runs"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks htwin", description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--prefix", help="only the runs NAME-g*-seed*")
    p.add_argument("--slope", action="append", default=[], metavar="LABEL=DIR",
                   help="a finite-difference slope folder (benchmarks/local_slope.sh) to compare with")
    p.add_argument("--reference", help="a mixture known to beat uniform, comma-separated in the domains' order")
    a = p.parse_args(argv)
    slopes = dict(s.split("=", 1) for s in a.slope)
    ref = np.array([float(v) for v in a.reference.split(",")]) if a.reference else None
    print(summarise(a.folder, {k: Path(v) for k, v in slopes.items()}, ref, a.prefix))
    return 0
