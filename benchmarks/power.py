"""TANDEM's step on noisy evidence: what pure noise does to the mixture, and how far a real signal moves it.

`python -m benchmarks power [--replays N]` (numpy only, about a minute) prints the table in BENCHMARKS.md ("TANDEM's
step") and writes benchmarks/results/power.json.

Protocol (written before the runs). Synthetic Delta sequences stand in for stage one, so no model, data split or
test loss is involved:
- M = 6 domains, T in {12, 20, 30} episodes; Delta_t = mu + noise_t with Gaussian noise of unit scale that is AR(1)
  across episodes (rho in {0, 0.3, 0.5}: consecutive episodes share the proxy's state; measured sign flips of 20-32%
  where independence gives 40-47%); every episode's Delta is multiplied by the twins' cosine schedule (1 down to
  0.1 over stage one), which a rule that pools episodes as alike would misread.
- Null: mu = 0. Its statistic: the 95th percentile over replays of the largest |w_i - 1/6| of the recommended
  mixture. Constraint: at most 0.05 for every T at rho = 0.3.
- Power: domain 0 favoured (centred mean -a), domain 1 disfavoured (+a), per-episode centred signal-to-noise
  s in {0.3, 0.45, 0.6} (what real domains show); statistic: the mean recommended weight of domain 0 (start 1/6).
- Candidates: update=standardized (the centred Delta over its root mean square across domains, step
  eta / sqrt(T)), recommending the final mixture or the average over the second half of the episodes (Polyak).
  For each, eta is the largest value on the grid 0.02, 0.03, ..., 0.30 that meets the null constraint; the
  candidate with the larger mean favoured weight over the nine (T, s) cells at rho = 0.3 is the default, its eta
  the default eta_alpha. (Positive-part James-Stein shrinkage across domains was excluded before the runs: it
  shrinks nothing at M = 3, a common case here.)
- Reported beside it: the same at rho = 0 and 0.5, and the sign-consistent share (how often domain 0 ends above
  1/6 and domain 1 below it).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from tandem.mixing.loop import LoopSpec
from tandem.mixing.evidence import replay

M = 6
EPISODES = (12, 20, 30)
RHOS = (0.0, 0.3, 0.5)
SNRS = (0.3, 0.45, 0.6)
ETAS = tuple(round(0.01 * k, 2) for k in range(2, 31))
NULL_LIMIT = 0.05
RHO_CHOICE = 0.3
OUT = Path(__file__).resolve().parent / "results" / "power.json"


def sequences(rng: np.random.Generator, T: int, rho: float, snr: float, n: int) -> np.ndarray:
    """n sequences of T episodes of Delta (n x T x M)."""
    e = rng.standard_normal((n, T, M))
    noise = np.empty_like(e)
    noise[:, 0] = e[:, 0]
    for t in range(1, T):
        noise[:, t] = rho * noise[:, t - 1] + math.sqrt(1 - rho * rho) * e[:, t]
    a = snr * math.sqrt(1 - 1 / M)  # centred signal-to-noise of domains 0 and 1 is snr
    mu = np.zeros(M)
    mu[0], mu[1] = -a, a
    scale = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.arange(T) / max(T - 1, 1)))  # cosine schedule, 1 -> 0.1
    return (mu + noise) * scale[None, :, None]


def recommend(seq: np.ndarray, eta: float, report: str) -> np.ndarray:
    T = len(seq)
    spec = LoopSpec(episodes=T, probe_steps=1, free_steps=1, update="standardized", eta_alpha=eta)
    alpha0 = np.full(M, 1.0 / M)
    if report == "final":
        return replay(spec, alpha0, seq)[0]
    path, alpha = [], alpha0
    from tandem.mixing.loop import next_mixture

    for d in seq:
        alpha = next_mixture(spec, alpha, d)
        path.append(alpha)
    return np.mean(path[T // 2:], axis=0)


def cell(seqs: np.ndarray, eta: float, report: str) -> dict:
    w = np.array([recommend(s, eta, report) for s in seqs])
    return {"null95": float(np.quantile(np.abs(w - 1 / M).max(axis=1), 0.95)), "favoured": float(w[:, 0].mean()),
            "disfavoured": float(w[:, 1].mean()), "right_way": float(np.mean((w[:, 0] > 1 / M) & (w[:, 1] < 1 / M)))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks power")
    p.add_argument("--replays", type=int, default=1000)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    data = {(T, rho, s): sequences(rng, T, rho, s, args.replays) for T in EPISODES for rho in RHOS for s in (0.0, *SNRS)}
    results: dict = {"protocol": __doc__, "candidates": {}}
    for report in ("final", "second_half"):
        # null 95th percentile is increasing in eta: the largest eta that keeps it under the limit at every T
        chosen = None
        for eta in ETAS:
            if all(cell(data[(T, RHO_CHOICE, 0.0)], eta, report)["null95"] <= NULL_LIMIT for T in EPISODES):
                chosen = eta
            else:
                break
        table = {f"T={T} rho={rho} snr={s}": cell(data[(T, rho, s)], chosen, report)
                 for T in EPISODES for rho in RHOS for s in (0.0, *SNRS)}
        power = float(np.mean([table[f"T={T} rho={RHO_CHOICE} snr={s}"]["favoured"] for T in EPISODES for s in SNRS]))
        results["candidates"][report] = {"eta": chosen, "mean_favoured_weight": power, "cells": table}
        print(f"\n{report}: eta {chosen} (largest with null 95th pct <= {NULL_LIMIT} at rho {RHO_CHOICE}); "
              f"mean favoured weight at rho {RHO_CHOICE}: {power:.3f}")
        print("| T | rho | null 95th pct max|dw| | favoured weight at SNR 0.3 / 0.45 / 0.6 | disfavoured | right way |")
        print("|---|---|---|---|---|---|")
        for T in EPISODES:
            for rho in RHOS:
                n = table[f"T={T} rho={rho} snr=0.0"]
                c = [table[f"T={T} rho={rho} snr={s}"] for s in SNRS]
                print(f"| {T} | {rho} | {n['null95']:.3f} | " + " / ".join(f"{x['favoured']:.3f}" for x in c)
                      + " | " + " / ".join(f"{x['disfavoured']:.3f}" for x in c)
                      + " | " + " / ".join(f"{x['right_way']:.2f}" for x in c) + " |")
    best = max(results["candidates"], key=lambda k: results["candidates"][k]["mean_favoured_weight"])
    results["choice"] = {"report": best, "eta": results["candidates"][best]["eta"]}
    print(f"\nchoice: report={best}, eta_alpha={results['candidates'][best]['eta']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
