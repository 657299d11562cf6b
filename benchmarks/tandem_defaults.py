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
ROWS = {"A": "", "G": "-G10", "C": "-C", "B": "-B", "natural start": "-init", "G9": "-G", "E": "-E32", "EV": "-E32V", "S": "-K1E1", "CS": "-CS"}
LABELS = {"A": "tandem (defaults at gamma 1)", "G": "tandem, gamma 10 (the final defaults)", "C": "tandem, proxy = target, horizon = target",
          "B": "tandem, Delta on held-out windows (0.15)", "natural start": "tandem, initial: natural", "G9": "tandem, the defaults (rerun, session 9)",
          "E": "tandem, eval_sequences 32", "EV": "tandem, eval_sequences 32, valid_fraction 0.9",
          "S": "tandem, probe 1, free 1, episodes to the same FLOPs",
          "CS": "tandem, proxy = target, horizon = target, probe 1, free 1, S's episodes"}


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
    for k in ("E", "EV", "S", "CS"):
        if k in rows and "G9" in rows:
            v, vs, n = paired(rows[k], rows["G9"], "valid_loss")
            t, ts, _ = paired(rows[k], rows["G9"], "test_loss")
            flops = max(rows[k][s]["stage1_flops"] / rows["G9"][s]["stage1_flops"] for s in rows[k] if s in rows["G9"])
            out[f"{k}-G"] = (v, vs, n, flops)
            lines.append(f"| {k} - G9, valid ({n}); test for the record; stage-one FLOPs ratio | {t:+.4f} ± {ts:.4f} | | "
                         f"{v:+.4f} ± {vs:.4f} | | x{flops:.3f} |")
    if "G9" in rows and "G" in rows:
        same = all(abs(rows["G9"][s]["test_loss"]["average"] - rows["G"][s]["test_loss"]["average"]) < 1e-9
                   for s in rows["G9"] if s in rows["G"])
        lines.append(f"| G9 reproduces G's test losses to 1e-9: {same} | | | | | |")
    return "\n".join(lines), out


def check_runs(folder: Path) -> dict[int, dict]:
    """R's runs (`tandem run --check-seeds`, one folder per seed: FOLDER/seedS): eval.json with the check's winner."""
    out = {}
    for d in sorted(folder.glob("seed*")):
        if (d / "eval.json").is_file() and (d / "check.json").is_file():
            ev = json.loads((d / "eval.json").read_text())
            check = json.loads((d / "check.json").read_text())
            out[int(d.name[4:])] = {**ev, "picked": check["recommended"],
                                    "trainings": check["cost"]["trainings"]}
    return out


def check_table(root: Path, scenario: str) -> tuple[str, tuple | None]:
    """R (the check with longer moves) against uniform and G9, paired by seed; returns the table and R - G9 on
    validation (mean, s.e., n)."""
    rs = check_runs(root / f"{scenario}-R")
    uniform = runs(root / scenario, "uniform")
    g = runs(root / f"{scenario}-G", "tandem")
    if not rs or not uniform or not g:
        return "", None
    t, ts, n = paired(rs, uniform, "test_loss")
    v, vs, _ = paired(rs, uniform, "valid_loss")
    gv, gvs, gn = paired(rs, g, "valid_loss")
    gt, gts, _ = paired(rs, g, "test_loss")
    picked = ", ".join(f"{s}: {r['picked']}" for s, r in sorted(rs.items()))
    same = [s for s, r in rs.items() if r["picked"] == "tandem" and s in g]
    reproduced = all(abs(rs[s]["test_loss"]["average"] - g[s]["test_loss"]["average"]) < 1e-9 for s in same)
    lines = [f"| {scenario}: R, the check with longer moves ({n}) | test - uniform {t:+.4f} ± {ts:.4f} ({verdict(t, ts)}) "
             f"| valid - uniform {v:+.4f} ± {vs:.4f} | R - G9: valid {gv:+.4f} ± {gvs:.4f}, test {gt:+.4f} ± {gts:.4f} |",
             f"| picked per seed | {picked} | trainings per check: {rs[min(rs)]['trainings']} | runs that picked "
             f"tandem reproduce G9: {reproduced if same else 'none picked it'} |"]
    return "\n".join(lines), (gv, gvs, gn)


def variant_decision(results: dict, root: Path, number: int, key: str, folder: str, stay: str) -> None:
    """Print decision `number` for variant `key` against G9 (rows `KEY-G`, null runs in ROOT/null-FOLDER). A loss
    beyond two standard errors in any scenario decides it (the defaults stay) before every scenario has run;
    otherwise it needs them all and the null's five seeds."""
    d = [results.get(s, {}).get(f"{key}-G") for s in SCENARIOS]
    ran = [x for x in d if x]
    if not ran:
        return
    null = [max(abs(w - 1 / 6) for w in json.loads(f.read_text())["domain_weights"].values())
            for f in sorted((root / f"null-{folder}").glob("seed*/weights.json"))]
    wins = sum(m + 2 * se < 0 for m, se, _, _ in ran)
    losses = sum(m - 2 * se > 0 for m, se, _, _ in ran)
    if not losses and not all(d):
        return  # undecided until every scenario has run
    ok = wins >= 1 and losses == 0 and len(null) == 5 and max(null) <= 0.05
    print(f"decision {number}: {key} wins {wins}, loses {losses} (in {len(ran)} of {len(d)} scenarios), null largest "
          f"changes {', '.join(f'{x:.3f}' for x in null) or 'not run'} -> {'adopt ' + key if ok else stay}")


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
    # Decision 4 (more evidence per episode): eligible if no scenario's validation is worse than G9 by > 2 s.e.,
    # the same-pool null's largest weight change <= 0.05 in every seed, and stage-one FLOPs <= 1.2x G9's;
    # the eligible variant with the lowest mean validation difference over the four signal scenarios, if below 0.
    best = None
    for k in ("E", "EV"):
        d = [results.get(s, {}).get(f"{k}-G") for s in SCENARIOS]
        if not all(d):
            continue
        null = [max(abs(w - 1 / 6) for w in json.loads(f.read_text())["domain_weights"].values())
                for f in sorted((root / f"null-{'E32' if k == 'E' else 'E32V'}").glob("seed*/weights.json"))]
        worse = sum(m - 2 * se > 0 for m, se, _, _ in d)
        flops = max(f for *_, f in d)
        mean4 = float(np.mean([m for m, *_ in d[:4]]))
        ok = worse == 0 and len(null) == 5 and max(null) <= 0.05 and flops <= 1.2
        print(f"decision 4, {k}: worse in {worse}, null largest changes {', '.join(f'{x:.3f}' for x in null)}, "
              f"FLOPs x{flops:.3f}, mean valid difference (4 scenarios) {mean4:+.4f} -> {'eligible' if ok else 'not eligible'}")
        if ok and mean4 < 0 and (best is None or mean4 < best[1]):
            best = (k, mean4)
    if any(f"{k}-G" in results.get(s, {}) for k in ("E", "EV") for s in SCENARIOS):
        print(f"decision 4: {'adopt ' + best[0] if best else 'the defaults stay'}")
    # Decisions 5 (S: shorter, more episodes) and 6 (CS: S's schedule with the target's architecture as the proxy),
    # as written: adopt the variant if it beats G9 on validation by > 2 s.e. in at least one scenario, loses by > 2 s.e.
    # in none, and the null's largest weight change is <= 0.05 in every seed.
    variant_decision(results, root, 5, "S", "K1E1", "the schedule stays")
    variant_decision(results, root, 6, "CS", "CS", "the defaults stay")
    # Decision 7 (the target-scale check with longer moves): they stay among the check's candidates if R beats G9 on
    # validation by > 2 s.e. in at least one scenario and loses by > 2 s.e. in none.
    r = {}
    for s in ("restricted", "ecommerce", "oracle", "abundant"):
        text, res = check_table(root, s)
        if text:
            print(text)
            r[s] = res
    if r:
        wins = sum(m + 2 * se < 0 for m, se, _ in r.values())
        losses = sum(m - 2 * se > 0 for m, se, _ in r.values())
        if losses or len(r) == 4:
            print(f"decision 7: R wins {wins}, loses {losses} (in {len(r)} of 4 scenarios) -> "
                  f"{'the longer moves stay in the check' if wins and not losses else 'the longer moves leave the check'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
