"""Transfer benchmark (issue 20): a target that overfits small domains the proxy never repeats.

`python -m benchmarks transfer --prepare-only` builds data/bench/transfer from the scenario pool; `python -m benchmarks
transfer --commands` prints the runs (two streams, run them in parallel on two cores); `python -m benchmarks transfer
--report` collects runs/bench5/transfer* into benchmarks/results/transfer.json and prints the table for BENCHMARKS.md.

Protocol (fixed before the runs): seeds 0-4, the same initialisation and data order for every row at a seed. Rows:
uniform; natural; TANDEM on its defaults; TANDEM with horizon matching (mixer.horizon=target); TANDEM with horizon
matching and a 4-epoch cap; the mixture the target-scale check (`run --check-seeds 2 --check-steps 100`, horizon
matching on; candidates: the learned mixture, uniform, natural, and the learned mixture capped at 4 and at 16
epochs) recommends; and a grid over the family "each small domain gets s, the two large ones split the rest"
(s = 0.05, 0.10, 0.15; s = 0.2 is uniform), whose best s is chosen on the mean VALIDATION loss over the 5 seeds.
Reported: test loss, paired difference to uniform ± standard error, and the share of the uniform-to-grid-best gap
closed, (uniform - row) / (uniform - grid best), on test loss.

The scenario was sized on a one-seed probe before this protocol was written (seed 0: uniform, natural, and small
domains at 0.03 and at 0.10 each; 0.10 had the lowest validation and test loss), so the grid's neighbourhood was
known; the 16-epoch cap among the check's candidates was added after that probe, from the published landmark, not
from these runs.

Default decision (fixed before the runs): mixer.horizon becomes `target` by default if TANDEM with horizon matching
has a lower mean paired VALIDATION loss than TANDEM without it here, by more than two standard errors; otherwise
the default stays `proxy` and the option is documented with these numbers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CONFIG = "benchmarks/configs/transfer.yaml"
RUNS = "runs/bench5"
SEEDS = 5
TRAIN_CHARS = {"code": 1_600_000, "books": 1_600_000, "scripture": 12_000, "legal": 12_000, "chat": 12_000}
SMALL = ("scripture", "legal", "chat")
GRID = (0.05, 0.10, 0.15)


def family(s: float) -> dict[str, float]:
    big = (1.0 - len(SMALL) * s) / (len(TRAIN_CHARS) - len(SMALL))
    return {d: (s if d in SMALL else big) for d in TRAIN_CHARS}


def commands() -> list[list[str]]:
    base = f"tandem compare {CONFIG} --seeds {SEEDS} -q"
    a = [f"{base} --methods uniform,natural,tandem --out {RUNS}/transfer",
         f"{base} --methods tandem --set mixer.horizon=target --set mixer.max_epochs=4 --out {RUNS}/transfer-horizon-cap4"]
    b = [f"{base} --methods tandem --set mixer.horizon=target --out {RUNS}/transfer-horizon"]
    for s in GRID:
        w = "{" + ", ".join(f"{d}: {x:.6f}" for d, x in family(s).items()) + "}"
        b.append(f"{base} --methods fixed --set 'mixer.weights={w}' --out {RUNS}/transfer-grid-s{s:.2f}")
    for seed in range(SEEDS):
        cmd = (f"tandem run {CONFIG} --set seed={seed} --set mixer.horizon=target --check-seeds 2 --check-steps 100 "
               f"--baseline '' -q --out {RUNS}/transfer-check/seed{seed}")
        (a if seed < 3 else b).append(cmd)
    return [a, b]


def _compare_runs(path: Path, method: str) -> dict[int, dict]:
    out = {}
    for f in sorted(path.glob(f"runs/{method}-seed*/result.json")):
        r = json.loads(f.read_text())
        out[int(r["seed"])] = {"test": r["test_loss"]["average"], "valid": r["valid_loss"]["average"],
                               "weights": r["weights"]}
    return out


def collect(root: Path = REPO) -> dict[str, dict[int, dict]]:
    runs = root / RUNS
    rows = {"uniform": _compare_runs(runs / "transfer", "uniform"),
            "natural": _compare_runs(runs / "transfer", "natural"),
            "tandem": _compare_runs(runs / "transfer", "tandem"),
            "tandem, horizon matching": _compare_runs(runs / "transfer-horizon", "tandem"),
            "tandem, horizon matching, 4-epoch cap": _compare_runs(runs / "transfer-horizon-cap4", "tandem")}
    for s in GRID:
        rows[f"grid s={s:.2f}"] = _compare_runs(runs / f"transfer-grid-s{s:.2f}", "fixed")
    check = {}
    for seed in range(SEEDS):
        d = runs / "transfer-check" / f"seed{seed}"
        if (d / "eval.json").is_file() and (d / "check.json").is_file():
            ev, ck = json.loads((d / "eval.json").read_text()), json.loads((d / "check.json").read_text())
            check[seed] = {"test": ev["test_loss"]["average"], "valid": ev["valid_loss"]["average"],
                           "weights": ev["weights"], "chosen": ck["recommended"]}
    rows["target-scale check's choice"] = check
    return rows


def report(rows: dict[str, dict[int, dict]]) -> tuple[str, dict]:
    seeds = sorted(rows["uniform"])
    grid = {k: v for k, v in rows.items() if k.startswith("grid") and sorted(v) == seeds}
    grid["grid s=0.20 (uniform)"] = rows["uniform"]
    best = min(grid, key=lambda k: np.mean([grid[k][s]["valid"] for s in seeds]))
    ub = np.array([rows["uniform"][s]["test"] for s in seeds])
    gap = ub.mean() - np.mean([grid[best][s]["test"] for s in seeds])
    vgap = -np.mean([grid[best][s]["valid"] - rows["uniform"][s]["valid"] for s in seeds])
    lines = ["| mixture | test loss | test - uniform | | valid - uniform | share of the gap closed (test, valid) |",
             "|---|---|---|---|---|---|"]
    summary = {"seeds": seeds, "grid_best": best, "gap": float(gap), "valid_gap": float(vgap), "rows": {}}
    for k, v in {**rows, f"{best}: the grid's best on validation": grid[best]}.items():
        if sorted(v) != seeds:
            lines.append(f"| {k} | ({len(v)} of {len(seeds)} seeds) | | | | |")
            continue
        t = np.array([v[s]["test"] for s in seeds])
        va = np.array([v[s]["valid"] - rows["uniform"][s]["valid"] for s in seeds])
        d = t - ub
        se = d.std(ddof=1) / np.sqrt(len(d))
        vse = va.std(ddof=1) / np.sqrt(len(va))
        verdict = "better" if d.mean() + 2 * se < 0 else "worse" if d.mean() - 2 * se > 0 else "within noise"
        share = -d.mean() / gap if gap > 0 else float("nan")
        vshare = -va.mean() / vgap if vgap > 0 else float("nan")
        lines.append(f"| {k} | {t.mean():.4f} | {d.mean():+.4f} ± {se:.4f} | {verdict} | {va.mean():+.4f} ± {vse:.4f} "
                     f"| {share:.0%}, {vshare:.0%} |")
        summary["rows"][k] = {"test": float(t.mean()), "minus_uniform": float(d.mean()), "se": float(se),
                              "valid_minus_uniform": float(va.mean()), "valid_se": float(vse), "share": float(share),
                              "valid_share": float(vshare),
                              "weights": {d_: float(np.mean([v[s]["weights"][d_] for s in seeds])) for d_ in TRAIN_CHARS}}
    return "\n".join(lines), summary


def main(argv: list[str]) -> int:
    if "--prepare-only" in argv:
        from benchmarks.scenario_data import build_pool, build_scenario_data

        pool = build_pool(REPO / "data" / "bench")
        print(build_scenario_data(pool, REPO / "data" / "bench" / "transfer", TRAIN_CHARS))
        return 0
    if "--commands" in argv:
        for i, stream in enumerate(commands()):
            print(f"# stream {i + 1}")
            print("\n".join(stream))
        return 0
    table, summary = report(collect())
    out = REPO / "benchmarks" / "results" / "transfer.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
