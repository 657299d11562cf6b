"""Signal benchmark: how much of TANDEM's Delta is signal, and do its weights repeat across seeds?

`python -m benchmarks signal [--seeds 3] [--old-src PATH]` (from the repository root; needs `data/default`, built by
`tandem corpus --out data/default`):

- three: three real domains of very different sizes from the default corpus (code 1.4M characters, scripture 357k,
  chat 54k), stage one only, with the default config's mixer settings (tiny proxy, K=5, E=10, 30 episodes, 50
  warm-up steps, 8 held sequences per domain, batch 16 x 128 tokens; configs/default.yaml).
- null: six domains cut at random from one pool (the books domain's documents), so uniform is optimal by symmetry;
  same settings.

For each run it reads trajectory.csv and weights.json and reports, per domain: the per-episode signal-to-noise of
the centred Delta (|mean| / standard deviation over episodes), t over the episodes (mean / standard error), the
share of consecutive episodes whose centred Delta flips sign, and the recommended weight; across seeds, the
largest spread of a recommended weight. `--old-src` runs the same configs with another checkout's `src/` (the
code before a change) for a before/after table; its config is the same file but for keys that code does not know.

Only stage-one quantities are read: no test split is touched.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
MIXER = {"method": "tandem", "proxy": {"preset": "tiny"}, "episodes": 30, "probe_steps": 5, "free_steps": 10,
         "warmup_steps": 50, "gamma": 1.0, "eval_sequences": 8}
TRAIN = {"steps": 300, "batch_size": 16, "seq_len": 128, "lr": 3.0e-3, "warmup_steps": 30, "threads": 1}


def _jsonl(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, docs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")


def build_data(root: Path, corpus: Path) -> dict[str, dict]:
    """The two scenarios' domain specs (paths relative to root/configs)."""
    specs = {"three": {}, "null": {}}
    for d in ("code", "scripture", "chat"):
        specs["three"][d] = {s: str((corpus / d / f"{s}.jsonl").resolve()) for s in ("train", "valid", "test")}
    rng = random.Random(0)
    for split in ("train", "valid", "test"):
        docs = _jsonl(corpus / "books" / f"{split}.jsonl")
        rng.shuffle(docs)
        for k in range(6):
            name = f"pool{k}"
            _write(root / "data" / "null" / name / f"{split}.jsonl", docs[k::6])
            specs["null"].setdefault(name, {})[split] = str((root / "data" / "null" / name / f"{split}.jsonl").resolve())
    return specs


def write_config(root: Path, scenario: str, domains: dict, seed: int, variant: str) -> Path:
    # One token cache per variant: code before a change may tokenize differently.
    cache = root / "data" / f"{scenario}-{'before' if variant == 'before' else 'after'}.cache"
    cfg = {"seed": seed, "data": {"domains": domains, "cache_dir": str(cache.resolve())},
           "tokenizer": {"vocab_size": 4096}, "model": {"preset": "mini"}, "train": TRAIN, "eval": {"max_tokens": 50000},
           "mixer": MIXER}
    path = root / "configs" / f"{scenario}-{variant}-seed{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_optimize(config: Path, out: Path, src: Path, extra: list[str]) -> float:
    if (out / "weights.json").is_file():
        return float(json.loads((out / "weights.json").read_text()).get("wall_time_s", 0.0))
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-c", "import sys; from tandem.cli.main import main; sys.exit(main(sys.argv[1:]))",
           "optimize", str(config), "--out", str(out), "-q", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=str(REPO))
    return time.perf_counter() - t0


def read_run(out: Path) -> dict:
    rows = list(csv.DictReader((out / "trajectory.csv").open()))
    names = [k[len("delta_"):] for k in rows[0] if k.startswith("delta_") and not k.startswith("delta_se_")]
    d = np.array([[float(r[f"delta_{n}"]) for n in names] for r in rows])
    c = d - d.mean(axis=1, keepdims=True)
    mean, sd = c.mean(axis=0), c.std(axis=0, ddof=1)
    flips = (np.sign(c[1:]) != np.sign(c[:-1])).mean(axis=0)
    w = json.loads((out / "weights.json").read_text())
    return {"names": names, "episodes": len(rows), "snr": (np.abs(mean) / sd).tolist(),
            "t": (mean / (sd / np.sqrt(len(c)))).tolist(), "flips": flips.tolist(),
            "weights": [w.get("uncapped", w["domain_weights"])[n] for n in names], "within_noise": w.get("within_noise"),
            "interval": w.get("interval"), "wall_s": w.get("wall_time_s")}


def summarise(runs: list[dict]) -> dict:
    names = runs[0]["names"]
    W = np.array([r["weights"] for r in runs])
    M = len(names)
    return {
        "names": names, "seeds": len(runs),
        "snr": np.mean([r["snr"] for r in runs], axis=0).tolist(),
        "abs_t": np.mean([np.abs(r["t"]) for r in runs], axis=0).tolist(),
        "flips": np.mean([r["flips"] for r in runs], axis=0).tolist(),
        "weights_mean": W.mean(axis=0).tolist(),
        "weights_spread": (W.max(axis=0) - W.min(axis=0)).tolist(),
        "max_dev_from_uniform": float(np.abs(W - 1.0 / M).max()),
        "per_seed_weights": W.tolist(),
        "moved": [[bool(abs(x - 1.0 / M) > 0.05) for x in r["weights"]] for r in runs],
        "t_per_seed": [r["t"] for r in runs],
        "wall_s": [r["wall_s"] for r in runs],
    }


def table(label: str, s: dict) -> str:
    lines = [f"| {label} | " + " | ".join(s["names"]) + " |", "|---|" + "---|" * len(s["names"])]
    f = lambda xs, fmt: " | ".join(fmt.format(x) for x in xs)  # noqa: E731
    lines.append("| per-episode SNR of centred Delta | " + f(s["snr"], "{:.2f}") + " |")
    lines.append(f"| mean \\|t\\| over {s['seeds']} seeds | " + f(s["abs_t"], "{:.1f}") + " |")
    lines.append("| sign flips between episodes | " + f(s["flips"], "{:.0%}") + " |")
    lines.append("| recommended weight (mean) | " + f(s["weights_mean"], "{:.3f}") + " |")
    lines.append("| spread across seeds (max - min) | " + f(s["weights_spread"], "{:.3f}") + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks signal")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--root", type=Path, default=REPO / "runs" / "signal")
    ap.add_argument("--corpus", type=Path, default=REPO / "data" / "default")
    ap.add_argument("--old-src", type=Path, default=None, help="a checkout's src/ to run as 'before'")
    ap.add_argument("--only", choices=["three", "null"], default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL:KEY=VALUE[,KEY=VALUE]",
                    help="also run the current code with these overrides, reported as LABEL (repeatable)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "signal.json")
    args = ap.parse_args(argv)
    specs = build_data(args.root, args.corpus)
    variants = {"after": (REPO / "src", [])}
    for v in args.variant:
        label, _, sets = v.partition(":")
        variants[label] = (REPO / "src", [a for kv in sets.split(",") if kv for a in ("--set", kv)])
    if args.old_src:
        # The code before the change knows neither update=normalized nor its defaults; it runs its own defaults
        # with the step size the default config used then.
        variants["before"] = (args.old_src, ["--set", "mixer.eta_alpha=10.0"])
    jobs = []
    for scen in ([args.only] if args.only else ["three", "null"]):
        for seed in range(args.seeds):
            for v, (src, extra) in variants.items():
                cfg = write_config(args.root, scen, specs[scen], seed, v)
                jobs.append((scen, v, seed, cfg, args.root / "runs" / v / f"{scen}-seed{seed}", src, extra))
    # Prepare each scenario's cache once before running jobs side by side (they would race to build it).
    for scen, v in sorted({(j[0], j[1]) for j in jobs}):
        src = variants[v][0]
        subprocess.run([sys.executable, "-c", "import sys; from tandem.cli.main import main; sys.exit(main(sys.argv[1:]))",
                        "prepare", str(args.root / "configs" / f"{scen}-{v}-seed0.yaml"), "-q"],
                       check=True, cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(src)))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: run_optimize(j[3], j[4], j[5], j[6]), jobs))
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "mixer": MIXER, "train": TRAIN,
               "scenarios": {}}
    for scen in sorted({j[0] for j in jobs}):
        for v in variants:
            runs = [read_run(j[4]) for j in jobs if j[0] == scen and j[1] == v]
            results["scenarios"][f"{scen}/{v}"] = summarise(runs)
            print(f"\n### {scen}, {v}\n")
            print(table(f"{scen} ({v})", results["scenarios"][f"{scen}/{v}"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
