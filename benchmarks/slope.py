"""Which way the target's own loss slopes at uniform: `python -m benchmarks slope FOLDER [--reference w,...]`.

FOLDER holds `tandem train` runs written by benchmarks/local_slope.sh: `uniform-seedS` and, per domain N,
`up-N-seedS` (the same seed, one domain's log-weight raised by the same amount). Per seed, the paired difference
in mean validation loss of each raised run to uniform is a finite-difference slope of the target's own loss along
that domain: negative means more of that domain helps. In centred log-weights the descent direction is minus the
slopes, centred; its cosine with a reference mixture's move from uniform (one known to beat uniform) says whether a
signal that followed the exact local slope of the target's loss would head towards it.

Validation loss only (what a method may look at); test loss is printed beside it for the record.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from benchmarks.phases import centred_log, cosine


def read(folder: Path) -> tuple[list[str], list[int], dict[str, np.ndarray]]:
    """Domains, seeds, and per split the slopes: array [seeds, domains] of raised-minus-uniform mean losses."""
    runs = {}
    for run in sorted(folder.glob("*-seed*")):
        m = re.fullmatch(r"(uniform|up-(.+))-seed(\d+)", run.name)
        if m and (run / "eval.json").is_file():
            runs[(m.group(2) or "", int(m.group(3)))] = json.loads((run / "eval.json").read_text(encoding="utf-8"))
    if not runs:
        raise SystemExit(f"{folder}: no finished runs (uniform-seedS, up-NAME-seedS with eval.json)")
    names = list(next(iter(runs.values()))["weights"])
    seeds = sorted(s for (n, s) in runs if n == "" and all((d, s) in runs for d in names))
    if not seeds:
        raise SystemExit(f"{folder}: no seed with uniform and every domain's raised run finished")
    out = {}
    for split in ("valid_loss", "test_loss"):
        out[split] = np.array([[runs[(d, s)][split]["average"] - runs[("", s)][split]["average"] for d in names]
                               for s in seeds])
    return names, seeds, out


def descent(slopes: np.ndarray) -> np.ndarray:
    """Minus the mean slope over seeds, centred: the direction in centred log-weights that lowers the loss."""
    m = slopes.mean(axis=0)
    return -(m - m.mean())


def summarise(folder: Path, reference: np.ndarray | None = None, against: Path | None = None) -> str:
    names, seeds, slopes = read(folder)
    lines = [f"{folder}: {len(seeds)} seeds ({', '.join(map(str, seeds))}); raised minus uniform, mean loss "
             f"(negative: more of that domain helps)"]
    for split, label in (("valid_loss", "valid"), ("test_loss", "test (for the record)")):
        x = slopes[split]
        mean, se = x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.zeros(len(names))
        lines.append(f"  {label}:")
        for n, m, e in zip(names, mean, se):
            lines.append(f"    {n:<12} {m:+.4f} +- {e:.4f}  (t {m / e:+.1f})" if e > 0 else f"    {n:<12} {m:+.4f}")
    if reference is not None:
        ref = centred_log(reference)
        per_seed = [cosine(-(s - s.mean()), ref) for s in slopes["valid_loss"]]
        lines.append(f"  cosine of the descent direction (valid) with the reference's move: per seed "
                     f"{' '.join(f'{c:+.2f}' for c in per_seed)}; of the mean slope "
                     f"{cosine(descent(slopes['valid_loss']), ref):+.2f}")
    if against is not None:
        other_names, _, other = read(against)
        if other_names != names:
            raise SystemExit(f"{against}: domains {other_names} differ from {folder}'s {names}")
        lines.append(f"  cosine of the mean descent direction (valid) with {against}'s: "
                     f"{cosine(descent(slopes['valid_loss']), descent(other['valid_loss'])):+.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks slope", description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--reference", help="a mixture known to beat uniform, comma-separated in the domains' order")
    p.add_argument("--against", type=Path, help="another slope folder (e.g. the proxy's runs against the target's)")
    a = p.parse_args(argv)
    ref = np.array([float(v) for v in a.reference.split(",")]) if a.reference else None
    print(summarise(a.folder, ref, a.against))
    return 0
