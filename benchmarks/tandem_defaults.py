"""`python -m benchmarks tandem-defaults [RUNS]`: the tables and the two decisions of BENCHMARKS.md, "TANDEM finding
the mixture" (its protocol, written before the runs, is there).

RUNS (default runs/s7) holds one `tandem compare` folder per scenario and row: SCENARIO (uniform and A, TANDEM on
its defaults), SCENARIO-C (proxy: target, horizon: target), SCENARIO-B (held_out_fraction 0.15), SCENARIO-init
(initial: natural), SCENARIO-G10 (gamma 10, the default after decision 3), as benchmarks/tandem_defaults.sh runs them. Every row is paired with uniform at the same seed;
decisions read only validation loss. Test loss is shown for the record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SCENARIOS = ("transfer", "restricted", "oracle", "ecommerce", "abundant")
ROWS = {"A": "", "G": "-G10", "C": "-C", "B": "-B", "natural start": "-init"}
LABELS = {"A": "tandem (defaults at gamma 1)", "G": "tandem, gamma 10 (the final defaults)", "C": "tandem, proxy = target, horizon = target",
          "B": "tandem, Delta on held-out windows (0.15)", "natural start": "tandem, initial: natural"}


def runs(folder: Path, method: str) -> dict[int, dict]:
    path = folder / "results.json"
    if not path.is_file():
        return {}
    return {r["seed"]: r for r in json.loads(path.read_text())["runs"] if r["method"] == method}


def paired(a: dict[int, dict], b: dict[int, dict], key: str) -> tuple[float, float, int]:
    """Mean and standard error of a - b over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s][key]["average"] - b[s][key]["average"] for s in seeds])
    if len(d) == 0:
        return float("nan"), float("nan"), 0
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"), len(d)


def verdict(m: float, se: float) -> str:
    return "better" if m + 2 * se < 0 else "worse" if m - 2 * se > 0 else "within noise"


def scenario_table(root: Path, scenario: str) -> tuple[str, dict]:
    uniform = runs(root / scenario, "uniform")
    rows = {k: runs(root / f"{scenario}{suffix}", "tandem") for k, suffix in ROWS.items()}
    rows = {k: v for k, v in rows.items() if v}
    if not uniform or not rows:
        return "", {}
    domains = list(next(iter(uniform.values()))["weights"])
    lines = [f"| {scenario}: row | test - uniform | | valid - uniform | weights ({', '.join(domains)}) | stage one s |",
             "|---|---|---|---|---|---|"]
    out = {}
    for k, rs in rows.items():
        t, ts, n = paired(rs, uniform, "test_loss")
        v, vs, _ = paired(rs, uniform, "valid_loss")
        w = ", ".join(f"{np.mean([r['weights'][d] for r in rs.values()]):.3f}" for d in domains)
        wall = np.mean([r["stage1_wall_s"] for r in rs.values()])
        lines.append(f"| {LABELS[k]} ({n}) | {t:+.4f} ± {ts:.4f} | {verdict(t, ts)} | {v:+.4f} ± {vs:.4f} | {w} | "
                     f"{wall:.0f} |")
        out[k] = {"test": (t, ts), "valid": (v, vs), "n": n}
    for k in ("C", "B"):
        if k in rows and "A" in rows:
            v, vs, n = paired(rows[k], rows["A"], "valid_loss")
            out[f"{k}-A"] = (v, vs, n)
            lines.append(f"| {k} - A, valid ({n}) | | | {v:+.4f} ± {vs:.4f} | | |")
    return "\n".join(lines), out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = Path(argv[0]) if argv else Path("runs/s7")
    results = {}
    for s in SCENARIOS:
        text, res = scenario_table(root, s)
        if text:
            print(text + "\n")
            results[s] = res
    # Decision 1: held-out windows only if B beats A on validation by > 2 s.e. in both transfer and restricted.
    b = [results.get(s, {}).get("B-A") for s in ("transfer", "restricted")]
    if all(b):
        held = all(m + 2 * se < 0 for m, se, _ in b)
        print(f"decision 1 (where Delta is measured): {'held-out windows' if held else 'train rows'}")
    # Decision 2: proxy = target if C beats A by > 2 s.e. in >= 2 scenarios and loses by > 2 s.e. in none.
    c = [results[s]["C-A"] for s in ("transfer", "restricted", "oracle", "ecommerce") if "C-A" in results.get(s, {})]
    if len(c) == 4:
        wins = sum(m + 2 * se < 0 for m, se, _ in c)
        losses = sum(m - 2 * se > 0 for m, se, _ in c)
        print(f"decision 2 (proxy): C wins {wins}, loses {losses} -> "
              f"{'proxy: target, horizon: target' if wins >= 2 and losses == 0 else 'the config proxy'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
