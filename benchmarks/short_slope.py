"""The proxy's loss slope at uniform from short, horizon-matched runs: `python -m benchmarks short-slope CONFIG
--fraction F [--seeds N] [--against DIR ...] [--reference w,...]`.

Per seed, the config's proxy (mixer.proxy) is trained for F x train.steps (its warm-up scaled alike) on the first F of
each domain's train split, so that it repeats every domain as many epochs as the target will in its whole run
(tandem.mixing.optimize.mixture_valid_loss with horizon=F, the runner of the target-scale check), at uniform and with
each domain's log-weight raised by --delta. The paired difference of its mean validation loss (under mixer.target) is
a finite-difference slope; its descent direction (centred log-weights) is compared with the slopes of full-length runs
(benchmarks/local_slope.sh folders) and with a reference mixture's move. Results are cached in OUT (default
runs/short-slope/NAME-fF.json) per (seed, mixture).
"""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.phases import centred_log, cosine


def _one(args) -> tuple[str, float]:
    config, overrides, seed, key, weights, fraction = args
    from tandem.config import load_config
    from tandem.data.cache import prepare_data
    from tandem.mixing.optimize import mixture_valid_loss, twin_optim_config

    cfg = load_config(config, [*overrides, f"seed={seed}"])
    data = prepare_data(cfg)
    steps = max(1, round(cfg.train.steps * fraction))
    oc = replace(twin_optim_config(cfg, steps), warmup_steps=round(cfg.train.warmup_steps * fraction))
    batch = cfg.mixer.batch_size or cfg.train.batch_size
    return key, mixture_valid_loss(cfg, data, np.asarray(weights), cfg.mixer.proxy, steps, batch, oc=oc,
                                   horizon=fraction)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks short-slope", description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--fraction", type=float, required=True)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--delta", type=float, default=0.5)
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--against", action="append", default=[], type=Path, help="a local_slope.sh folder")
    p.add_argument("--reference", help="a mixture known to beat uniform, in the domains' order")
    p.add_argument("--out", type=Path)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    from tandem.config import load_config

    cfg = load_config(a.config, a.overrides)
    names = list(cfg.data.domains)
    name = Path(a.config).stem.removeprefix("sft-")
    out = a.out or Path("runs/short-slope") / f"{name}-f{a.fraction:g}.json"
    cache = json.loads(out.read_text()) if out.is_file() else {}
    mixtures = {"uniform": np.full(len(names), 1 / len(names))}
    for n in names:
        raw = np.array([math.exp(a.delta) if m == n else 1.0 for m in names])
        mixtures[f"up-{n}"] = raw / raw.sum()
    todo = [(a.config, a.overrides, s, f"{k}-seed{s}", w.tolist(), a.fraction)
            for s in range(a.seeds) for k, w in mixtures.items() if f"{k}-seed{s}" not in cache]
    with ProcessPoolExecutor(a.jobs) as ex:
        for key, v in ex.map(_one, todo):
            cache[key] = v
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(cache, indent=1))
    slopes = np.array([[cache[f"up-{n}-seed{s}"] - cache[f"uniform-seed{s}"] for n in names] for s in range(a.seeds)])
    mean, se = slopes.mean(0), slopes.std(0, ddof=1) / np.sqrt(len(slopes))
    print(f"{out}: {a.seeds} seeds, {a.fraction:g} of the steps and of each train split; raised minus uniform, "
          f"mean validation loss")
    for n, m, e in zip(names, mean, se):
        print(f"  {n:<12} {m:+.4f} +- {e:.4f}  (t {m / e:+.1f})")
    d = -(mean - mean.mean())
    from benchmarks import slope as slope_mod

    for folder in a.against:
        other = slope_mod.descent(slope_mod.read(folder)[2]["valid_loss"])
        per = [cosine(-(x - x.mean()), other) for x in slopes]
        print(f"  cosine with {folder}'s descent: mean {cosine(d, other):+.2f}; per seed "
              f"{' '.join(f'{c:+.2f}' for c in per)}")
    if a.reference:
        ref = centred_log(np.array([float(v) for v in a.reference.split(",")]))
        print(f"  cosine with the reference's move: {cosine(d, ref):+.2f}")
    return 0
