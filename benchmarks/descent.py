"""One step down the proxy's own loss slope: `python -m benchmarks descent CONFIG --slope DIR --proxy-set K=V ...`.

An exploration of a mixture signal measured where the target's loss is decided, at the target's horizon, instead of
TANDEM's greedy twin gap. Per seed, from the finite-difference runs in DIR (benchmarks/local_slope.sh with the
proxy's architecture and the target's steps: uniform and each domain's log-weight raised by DELTA):
1. the slope of the proxy's mean validation loss along each domain, paired with its uniform run;
2. the descent direction in centred log-weights, d = -(slope - mean), scaled so its largest entry is 1;
3. candidates softmax(log uniform + eta d) for eta in --etas, each trained as the proxy (the same --proxy-set
   settings and seed); the candidate with the lowest proxy validation loss, uniform (eta 0: DIR's own uniform run)
   included, is picked;
4. the target (the config's own model and steps) trained on the pick at the same seed (left out with
   --proxy-only: for a null, where what counts is how far the pick moves from uniform).
Validation loss only chooses; the printed table pairs the target's validation and test loss with uniform's.
Runs go to OUT/SEED/{eta-E, target}; finished runs (eval.json present) are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.slope import read


def _train(config: Path, seed: int, weights: Path, out: Path, sets: list[str]) -> dict:
    if not (out / "eval.json").is_file():
        cmd = [sys.executable, "-m", "tandem", "train", str(config), "--set", f"seed={seed}",
               *[a for s in sets for a in ("--set", s)], "--weights", str(weights), "-q", "--force", "--out", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads((out / "eval.json").read_text(encoding="utf-8"))


def candidates(slope: np.ndarray, etas: list[float]) -> dict[float, np.ndarray]:
    """softmax(eta d) for each eta, d the centred descent direction with its largest entry 1 (uniform at eta 0)."""
    d = -(slope - slope.mean())
    d = d / np.abs(d).max() if np.abs(d).max() > 0 else d
    out = {}
    for eta in [0.0, *etas]:
        z = np.exp(eta * d)
        out[eta] = z / z.sum()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks descent", description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("--slope", type=Path, required=True, help="benchmarks/local_slope.sh's runs with the proxy")
    p.add_argument("--proxy-set", action="append", default=[], help="the proxy's --set settings, as in --slope's runs")
    p.add_argument("--etas", default="0.5,1,2", help="log-weight moves along the direction (default 0.5,1,2)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--proxy-only", action="store_true", help="pick, but train no target")
    a = p.parse_args(argv)
    names, seeds, slopes = read(a.slope)
    etas = [float(x) for x in a.etas.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with ThreadPoolExecutor(a.jobs) as pool:
        picks = {}
        for i, seed in enumerate(seeds):
            cands = candidates(slopes["valid_loss"][i], etas)
            jobs = {}
            for eta, w in cands.items():
                wf = a.out / str(seed) / f"eta-{eta:g}.json"
                wf.parent.mkdir(parents=True, exist_ok=True)
                wf.write_text(json.dumps({"domain_weights": dict(zip(names, w.tolist()))}))
                if eta:  # eta 0 is uniform: the slope's own uniform run at this seed, already trained
                    jobs[eta] = pool.submit(_train, a.config, seed, wf, a.out / str(seed) / f"eta-{eta:g}", a.proxy_set)
            uniform = json.loads((a.slope / f"uniform-seed{seed}" / "eval.json").read_text(encoding="utf-8"))
            proxy_valid = {0.0: uniform["valid_loss"]["average"],
                           **{eta: j.result()["valid_loss"]["average"] for eta, j in jobs.items()}}
            best = min(proxy_valid, key=proxy_valid.get)
            picks[seed] = (best, cands[best], proxy_valid)
        if a.proxy_only:
            print(f"{a.out}: domains {', '.join(names)}; etas {etas}")
            for seed, (best, w, pv) in picks.items():
                print(f"  seed {seed}: picked eta {best:g} ({', '.join(f'{x:.3f}' for x in w)}); largest weight change "
                      f"{np.abs(w - 1 / len(w)).max():.3f}; proxy valid - uniform "
                      f"{' '.join(f'{e:g}:{pv[e] - pv[0.0]:+.4f}' for e in pv if e)}")
            return 0
        targets = {seed: pool.submit(_train, a.config, seed, a.out / str(seed) / f"eta-{picks[seed][0]:g}.json",
                                     a.out / str(seed) / "target", []) for seed in seeds}
        uniforms = {seed: pool.submit(_train, a.config, seed, a.out / str(seed) / "eta-0.json",
                                      a.out / str(seed) / "target-uniform", []) for seed in seeds}
        for seed in seeds:
            t, u = targets[seed].result(), uniforms[seed].result()
            best, w, pv = picks[seed]
            rows.append((seed, best, w, pv, t["valid_loss"]["average"] - u["valid_loss"]["average"],
                         t["test_loss"]["average"] - u["test_loss"]["average"]))
    print(f"{a.out}: domains {', '.join(names)}; etas {etas}")
    for seed, best, w, pv, dv, dt in rows:
        print(f"  seed {seed}: picked eta {best:g} ({', '.join(f'{x:.3f}' for x in w)}); proxy valid - uniform "
              f"{' '.join(f'{e:g}:{pv[e] - pv[0.0]:+.4f}' for e in pv if e)}; target valid - uniform {dv:+.4f}, "
              f"test {dt:+.4f}")
    for col, label in ((4, "valid"), (5, "test (for the record)")):
        x = np.array([r[col] for r in rows])
        se = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
        print(f"  target {label} - uniform: {x.mean():+.4f} +- {se:.4f} ({len(x)} seeds)")
    summary = {"names": names, "seeds": seeds, "etas": etas, "rows": [
        {"seed": s, "eta": b, "weights": w.tolist(), "proxy_valid": {str(k): v for k, v in pv.items()},
         "target_valid_minus_uniform": dv, "target_test_minus_uniform": dt} for s, b, w, pv, dv, dt in rows]}
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0
