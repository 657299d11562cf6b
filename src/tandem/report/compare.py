"""Tables and plots of a comparison: mean and standard deviation over seeds, and paired differences.

Every method runs on the same seeds (the same initialisation and data order for a given seed), so methods are
compared by the per-seed difference of their test losses: its mean and standard error over seeds. A method is
called better than another only when it wins by more than two standard errors of that paired difference; the
best mean of a column is bolded only when it beats every other method that way."""

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
        row["stage1_flops"] = _stats([r.get("stage1_flops") for r in rs])  # None in results written before FLOPs
        row["weights"] = {d: float(np.mean([r["weights"][d] for r in rs])) for d in domains}
        row["weights_std"] = {d: float(np.std([r["weights"][d] for r in rs], ddof=1)) if len(rs) > 1 else 0.0
                              for d in domains}
        row["n"] = len(rs)
        out[m] = row
    return out


def _value(r: dict, column: str):
    t = r["test_loss"]
    return t[column] if column in ("average", "worst") else t["per_domain"].get(column)


def paired(results: list[dict], method: str, other: str, column: str = "average") -> tuple[float, float, int]:
    """Mean and standard error over seeds of (method - other) in a test-loss column, over the seeds both ran."""
    a = {r["seed"]: _value(r, column) for r in results if r["method"] == method}
    b = {r["seed"]: _value(r, column) for r in results if r["method"] == other}
    d = np.array([a[s] - b[s] for s in sorted(set(a) & set(b)) if a[s] is not None and b[s] is not None], dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan"), 0
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se, len(d)


def verdict(mean: float, se: float) -> str:
    """`better` / `worse` when the paired difference is beyond two standard errors, else `within noise`."""
    if not np.isfinite(se) or se == 0 and mean == 0:
        return "within noise" if np.isfinite(mean) else "-"
    if mean + 2 * se < 0:
        return "better"
    if mean - 2 * se > 0:
        return "worse"
    return "within noise"


def significant_best(results: list[dict], methods: list[str], column: str) -> str | None:
    """The method with the lowest mean in `column` if it beats every other by more than two paired standard
    errors, else None."""
    means = {m: np.nanmean([_value(r, column) for r in results if r["method"] == m and _value(r, column) is not None])
             for m in methods if any(r["method"] == m for r in results)}
    if len(means) < 2:
        return None
    best = min(means, key=means.get)
    for m in means:
        if m != best and verdict(*paired(results, best, m, column)[:2]) != "better":
            return None
    return best


def paired_table(results: list[dict], methods: list[str], baselines: list[str]) -> str:
    """Paired differences of average and worst test loss to each baseline present (negative: lower loss)."""
    present = [b for b in baselines if any(r["method"] == b for r in results)]
    lines = []
    for base in present:
        lines += [f"| method | seeds | average - {base} (± s.e.) | | worst - {base} (± s.e.) | |",
                  "|---|---|---|---|---|---|"]
        for m in methods:
            if m == base or not any(r["method"] == m for r in results):
                continue
            cells = [m]
            n = 0
            for col in ("average", "worst"):
                mean, se, n = paired(results, m, base, col)
                cells += [f"{mean:+.4f} ± {se:.4f}", verdict(mean, se)]
            cells.insert(1, str(n))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if lines:
        lines.append("Paired over seeds (each seed: the same initialisation and data order for every method); "
                     "`better`/`worse` only beyond two standard errors of the paired difference.")
    return "\n".join(lines)


def markdown_table(summary: dict, domains: list[str], results: list[dict] | None = None) -> str:
    loss_cols = ["average", "worst", *domains]
    best = {c: significant_best(results or [], list(summary), c) for c in loss_cols}
    head = ["method", "seeds", *(f"{c} test loss" if c in ("average", "worst") else c for c in loss_cols),
            "stage-1 time (s)", "stage-1 tokens", "stage-1 FLOPs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, row in summary.items():
        cells = [m, str(row["n"])]
        for c in loss_cols:
            mean, std = row[c]
            s = f"{mean:.4f} ± {std:.4f}"
            cells.append(f"**{s}**" if best[c] == m else s)
        cells.append(f"{row['stage1_wall_s'][0]:.1f}")
        cells.append(f"{row['stage1_tokens'][0]:,.0f}")
        cells.append("-" if np.isnan(row["stage1_flops"][0]) else f"{row['stage1_flops'][0]:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean ± standard deviation over seeds (lower is better); in bold the best mean of a column only where "
                 "it beats every other method by more than two standard errors of the paired difference.")
    lines.append("")
    if results:
        pt = paired_table(results, list(summary), ["uniform", "doremi", "doge"])
        if pt:
            lines += [pt, ""]
    lines.append("| method | " + " | ".join(domains) + " |")
    lines.append("|" + "---|" * (len(domains) + 1))
    for m, row in summary.items():
        lines.append(f"| {m} | " + " | ".join(f"{row['weights'][d]:.3f}" for d in domains) + " |")
    lines.append("")
    lines.append("Learned weights (mean over seeds).")
    return "\n".join(lines)


def seed_folders(out: Path, method: str) -> list[Path]:
    """OUT/runs/METHOD-seedK of a comparison, in the order of K."""
    found = [(f, f.name.rsplit("-seed", 1)[1]) for f in (out / "runs").glob(f"{method}-seed*") if f.is_dir()]
    return [f for f, k in sorted(((f, k) for f, k in found if k.isdigit()), key=lambda fk: int(fk[1]))]


def write_report(out: Path, results: list[dict], methods: list[str]) -> str:
    from tandem.report.plots import plot_domain_losses, plot_trajectories_grid, plot_weight_bars

    summary = summarize(results, methods)
    domains = list(results[0]["test_loss"]["per_domain"])
    table = markdown_table(summary, domains, results)
    write_text(out / "results.md", "# Comparison\n\n" + table + "\n\n![weights](weights.png)\n\n"
               "![test loss](test_loss.png)\n\n![trajectories](trajectories.png)\n")
    plot_weight_bars({m: s["weights"] for m, s in summary.items()}, out / "weights.png",
                     "learned domain weights (mean ± sd over seeds)", errors={m: s["weights_std"] for m, s in summary.items()})
    plot_domain_losses({m: {d: s[d][0] for d in domains} for m, s in summary.items()}, out / "test_loss.png",
                       title="test loss per domain (mean ± sd over seeds)",
                       errors={m: {d: s[d][1] for d in domains} for m, s in summary.items()})
    trajectories = {}
    for m in methods:  # every seed's stage one (online runs: the target's own run)
        for folder in seed_folders(out, m):
            path = next((p for p in (folder / "optimize" / "trajectory.csv", folder / "online" / "trajectory.csv")
                         if p.is_file()), None)
            rows = list(csv.DictReader(path.open())) if path is not None else []
            if rows:
                trajectories.setdefault(m, []).append(
                    ([int(r["step"]) for r in rows], np.array([[float(r[f"weight_{d}"]) for d in domains] for r in rows])))
    if trajectories:
        plot_trajectories_grid(trajectories, domains, out / "trajectories.png")
    return table
