"""Where the mixture signal points during stage one: `python -m benchmarks phases NAME=GLOB [...] [--reference w,...]`.

Each NAME=GLOB names a group of stage-one runs (folders written by `tandem optimize`, or the `optimize/` folder of a
compare run, each holding metrics.jsonl and weights.json). Per group, from the episodes' records:

- the mean over episodes of each domain's standardised centred Delta (tandem.mixing.updates.standardize: the
  quantity TANDEM's step adds up; positive means less weight), averaged over the group's runs, and the mean of its
  absolute values: how consistently one direction holds from episode to episode;
- each domain's t over the episodes (the AR(1)-corrected statistic `tandem optimize` reports), averaged over runs;
- the same mean in six consecutive phases of stage one (the proxy's steps where each phase starts and ends), which
  shows whether the signal keeps its direction as the proxy trains;
- the mean learned mixture, and with --reference (a mixture known to beat uniform, in the domains' order) the
  cosine between each run's move from uniform and the reference's, in centred log-weights.

BENCHMARKS.md, "Where the twins' gap points during stage one", was measured with it.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from tandem.mixing.evidence import episode_statistics
from tandem.mixing.loop import EpisodeRecord
from tandem.mixing.updates import standardize

PHASES = 6


def read_run(folder: Path) -> tuple[list[str], np.ndarray, list[int], dict]:
    """Domain names, the episodes' Delta (rows), the proxy step of each episode and weights.json."""
    recs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    recs = [r for r in recs if "delta" in r and not r.get("skipped")]
    if not recs:
        raise ValueError(f"{folder}: no episode records in metrics.jsonl")
    names = list(recs[0]["delta"])
    delta = np.array([[r["delta"][n] for n in names] for r in recs], dtype=np.float64)
    weights = json.loads((folder / "weights.json").read_text(encoding="utf-8"))
    return names, delta, [int(r["step"]) for r in recs], weights


def centred_log(w: np.ndarray) -> np.ndarray:
    lw = np.log(np.asarray(w, dtype=np.float64) * len(w))
    return lw - lw.mean()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def summarise(folders: list[Path], reference: np.ndarray | None = None) -> dict:
    """The group's statistics (see the module docstring)."""
    names, z_means, ts, phases, mixtures, cosines, steps_at = None, [], [], [], [], [], None
    for folder in folders:
        n, delta, steps, weights = read_run(folder)
        if names is not None and n != names:
            raise ValueError(f"{folder}: domains {n} differ from the group's {names}")
        names = n
        z = standardize(delta)
        z_means.append(z.mean(axis=0))
        history = [EpisodeRecord(i, s, np.zeros(len(n)), d, 0.0, d, d) for i, (s, d) in enumerate(zip(steps, delta))]
        ts.append(episode_statistics(history)["t"])
        cuts = np.array_split(np.arange(len(z)), min(PHASES, len(z)))
        phases.append([z[c].mean(axis=0) for c in cuts])
        steps_at = [(steps[c[0]], steps[c[-1]]) for c in cuts]
        w = np.array([weights["domain_weights"][k] for k in n])
        mixtures.append(w)
        if reference is not None:
            cosines.append(cosine(centred_log(w), centred_log(reference)))
    if names is None:
        raise ValueError("no runs in the group")
    same_length = len({len(p) for p in phases}) == 1
    return {
        "domains": names, "runs": len(folders), "episodes": int(len(z)),
        "mean_z": np.mean(z_means, axis=0).tolist(), "mean_abs_z": float(np.abs(np.mean(z_means, axis=0)).mean()),
        "t": np.nanmean(ts, axis=0).tolist(),
        "phases": ([{"steps": list(s), "mean_z": np.mean([p[i] for p in phases], axis=0).tolist()}
                    for i, s in enumerate(steps_at)] if same_length else []),
        "mixture": np.mean(mixtures, axis=0).tolist(),
        "cosine_with_reference": cosines,
    }


def format_group(name: str, s: dict) -> str:
    f = lambda v: "[" + " ".join(f"{x:+.2f}" for x in v) + "]"  # noqa: E731
    lines = [f"{name}: {s['runs']} runs, {s['episodes']} episodes; domains {', '.join(s['domains'])}",
             f"  mean z {f(s['mean_z'])}  mean |z| {s['mean_abs_z']:.2f}",
             f"  t      {f(s['t'])}",
             f"  mixture {' '.join(f'{x:.3f}' for x in s['mixture'])}"]
    if s["cosine_with_reference"]:
        c = s["cosine_with_reference"]
        lines.append(f"  cosine with the reference's move: {' '.join(f'{x:+.2f}' for x in c)} (mean {np.mean(c):+.2f})")
    for p in s["phases"]:
        lines.append(f"  steps {p['steps'][0]:>4}-{p['steps'][1]:<4} {f(p['mean_z'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks phases", description=__doc__.split("\n\n")[0])
    p.add_argument("groups", nargs="+", help="NAME=GLOB: the stage-one folders of one group of runs")
    p.add_argument("--reference", help="a mixture known to beat uniform, comma-separated in the domains' order")
    p.add_argument("--out", type=Path, help="also write the statistics as JSON here")
    args = p.parse_args(argv)
    reference = np.array([float(x) for x in args.reference.split(",")]) if args.reference else None
    out = {}
    for group in args.groups:
        name, _, pattern = group.partition("=")
        folders = sorted(Path(m).parent for m in glob.glob(str(Path(pattern or name) / "metrics.jsonl")))
        if not folders:
            p.error(f"{group}: no folder with a metrics.jsonl matches")
        out[name] = summarise(folders, reference)
        print(format_group(name, out[name]))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0
