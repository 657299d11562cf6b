"""Tables and plots of a comparison: mean and standard deviation over seeds, best per column marked."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tandem.io import write_text


def _stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize(results: list[dict], methods: list[str]) -> dict:
    """method -> {column: (mean, std)} for average / worst / per-domain test loss, stage-one time and tokens."""
    domains = list(results[0]["test_loss"]["per_domain"]) if results else []
    out = {}
    for m in methods:
        rs = [r for r in results if r["method"] == m]
        if not rs:
            continue
        row = {
            "average": _stats([r["test_loss"]["average"] for r in rs]),
            "worst": _stats([r["test_loss"]["worst"] for r in rs]),
        }
        for d in domains:
            row[d] = _stats([r["test_loss"]["per_domain"][d] for r in rs])
        row["stage1_wall_s"] = _stats([r["stage1_wall_s"] for r in rs])
        row["stage1_tokens"] = _stats([r["stage1_tokens"] for r in rs])
        row["weights"] = {d: float(np.mean([r["weights"][d] for r in rs])) for d in domains}
        row["n"] = len(rs)
        out[m] = row
    return out


def markdown_table(summary: dict, domains: list[str]) -> str:
    loss_cols = ["average", "worst", *domains]
    best = {c: min(summary[m][c][0] for m in summary) for c in loss_cols}
    head = ["method", "seeds", *(f"{c} test loss" if c in ("average", "worst") else c for c in loss_cols),
            "stage-1 time (s)", "stage-1 tokens"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, row in summary.items():
        cells = [m, str(row["n"])]
        for c in loss_cols:
            mean, std = row[c]
            s = f"{mean:.4f} ± {std:.4f}"
            cells.append(f"**{s}**" if np.isclose(mean, best[c]) else s)
        cells.append(f"{row['stage1_wall_s'][0]:.1f}")
        cells.append(f"{row['stage1_tokens'][0]:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean ± standard deviation over seeds; best mean per column in bold (lower is better).")
    lines.append("")
    lines.append("| method | " + " | ".join(domains) + " |")
    lines.append("|" + "---|" * (len(domains) + 1))
    for m, row in summary.items():
        lines.append(f"| {m} | " + " | ".join(f"{row['weights'][d]:.3f}" for d in domains) + " |")
    lines.append("")
    lines.append("Learned weights (mean over seeds).")
    return "\n".join(lines)


def write_report(out: Path, results: list[dict], methods: list[str]) -> str:
    from tandem.report.plots import plot_domain_losses, plot_trajectories_grid, plot_weight_bars

    summary = summarize(results, methods)
    domains = list(results[0]["test_loss"]["per_domain"])
    table = markdown_table(summary, domains)
    write_text(out / "results.md", "# Comparison\n\n" + table + "\n\n![weights](weights.png)\n\n"
               "![test loss](test_loss.png)\n\n![trajectories](trajectories.png)\n")
    plot_weight_bars({m: s["weights"] for m, s in summary.items()}, out / "weights.png", "learned domain weights")
    plot_domain_losses({m: {d: s[d][0] for d in domains} for m, s in summary.items()}, out / "test_loss.png")
    trajectories = {}
    for m in methods:
        path = out / "runs" / f"{m}-seed0" / "optimize" / "trajectory.csv"
        if path.is_file():
            rows = list(csv.DictReader(path.open()))
            if rows:
                trajectories[m] = ([int(r["step"]) for r in rows],
                                   np.array([[float(r[f"weight_{d}"]) for d in domains] for r in rows]))
    if trajectories:
        plot_trajectories_grid(trajectories, domains, out / "trajectories.png")
    return table
