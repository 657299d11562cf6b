"""`python -m benchmarks paired RUNS_DIR [--base uniform]`: a compare folder's methods against a baseline, paired over
seeds, on test and on validation loss, with stage-one tokens and the mean learned weights (Markdown)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def table(folder: Path, base: str = "uniform") -> str:
    runs = json.loads((folder / "results.json").read_text())["runs"]
    by = {}
    for r in runs:
        by.setdefault(r["method"], {})[r["seed"]] = r
    seeds = sorted(by[base])
    domains = list(by[base][seeds[0]]["weights"])
    metric = _task_metric(folder, by, base, seeds)
    lines = ["| method | test loss | test - " + base + " | | valid - " + base + " | stage-one tokens | weights ("
             + ", ".join(domains) + ") |" + (" task score - " + base + " |" if metric else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if metric else "")]
    for m, rs in by.items():
        common = [s for s in seeds if s in rs]
        if not common:
            continue
        t = np.array([rs[s]["test_loss"]["average"] for s in common])
        dt = t - np.array([by[base][s]["test_loss"]["average"] for s in common])
        dv = (np.array([rs[s]["valid_loss"]["average"] for s in common])
              - np.array([by[base][s]["valid_loss"]["average"] for s in common]))
        se = lambda d: d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")  # noqa: E731
        verdict = ("better" if dt.mean() + 2 * se(dt) < 0 else "worse" if dt.mean() - 2 * se(dt) > 0
                   else "within noise") if m != base else ""
        w = ", ".join(f"{np.mean([rs[s]['weights'][d] for s in common]):.3f}" for d in domains)
        tok = int(np.mean([rs[s]["stage1_tokens"] for s in common]))
        lines.append(f"| {m} ({len(common)}) | {t.mean():.4f} | {dt.mean():+.4f} ± {se(dt):.4f} | {verdict} | "
                     f"{dv.mean():+.4f} ± {se(dv):.4f} | {tok:,} | {w} |" + (metric(m, common) if metric else ""))
    return "\n".join(lines)


def _task_metric(folder: Path, by: dict, base: str, seeds: list[int]):
    """A cell maker for the paired difference of the average task score (from each run's eval.json), or None when
    the runs hold no task metrics."""
    def score(m, s):
        path = folder / "runs" / f"{m}-seed{s}" / "eval.json"
        ev = json.loads(path.read_text()) if path.is_file() else {}
        return ev.get("task_metrics", {}).get("average", {}).get("score")

    if score(base, seeds[0]) is None:
        return None

    def cell(m, common):
        d = np.array([score(m, s) - score(base, s) for s in common])
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        return f" {d.mean():+.4f} ± {se:.4f} |"
    return cell


def two_stage_table(folder: Path, base: str = "uniform") -> str:
    """A two-stage scenario's folder (METHOD-seedS/ runs of `tandem run --baseline uniform`): the post-fine-tuning
    average task loss of each method's pretraining mixture against the baseline's, paired over seeds."""
    evals: dict = {}
    for d in sorted(folder.glob("*-seed*")):
        if not (d / "eval.json").is_file():
            continue
        m, s = d.name.rsplit("-seed", 1)
        evals.setdefault(m, {})[int(s)] = json.loads((d / "eval.json").read_text())
        b = d / f"baseline-{base}" / "eval.json"
        if b.is_file():
            evals.setdefault(base, {})[int(s)] = json.loads(b.read_text())
    if base not in evals:
        return "(no finished runs)"
    lines = [f"| method | task test loss | test - {base} | | valid - {base} | task score - {base} | pretraining "
             "weights |", "|---|---|---|---|---|---|---|"]
    score = lambda ev: ev.get("task_metrics", {}).get("average", {}).get("score", float("nan"))  # noqa: E731
    for m, rs in evals.items():
        common = sorted(s for s in rs if s in evals[base])
        t = np.array([rs[s]["sft_test_loss"]["average"] for s in common])
        dt = t - np.array([evals[base][s]["sft_test_loss"]["average"] for s in common])
        dv = np.array([rs[s]["sft_valid_loss"]["average"] - evals[base][s]["sft_valid_loss"]["average"] for s in common])
        dm = np.array([score(rs[s]) - score(evals[base][s]) for s in common])
        se = lambda d: d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")  # noqa: E731
        verdict = ("better" if dt.mean() + 2 * se(dt) < 0 else "worse" if dt.mean() - 2 * se(dt) > 0
                   else "within noise") if m != base else ""
        ws = rs[common[0]]["weights"]
        w = ", ".join(f"{d} {np.mean([rs[s]['weights'][d] for s in common]):.3f}" for d in ws)
        lines.append(f"| {m} ({len(common)}) | {t.mean():.4f} | {dt.mean():+.4f} ± {se(dt):.4f} | {verdict} | "
                     f"{dv.mean():+.4f} ± {se(dv):.4f} | {dm.mean():+.4f} ± {se(dm):.4f} | {w} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks paired",
                                description="Paired differences to a base method of a `tandem compare` folder.")
    p.add_argument("folder", type=Path, help="a `tandem compare` output folder (holds results.json)")
    p.add_argument("--base", default="uniform", help="the method every other is paired with (default uniform)")
    args = p.parse_args(argv)
    if not (args.folder / "results.json").is_file():
        p.error(f"{args.folder}: no results.json; expected a finished `tandem compare` folder")
    print(table(args.folder, args.base))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
