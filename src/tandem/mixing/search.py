"""Search methods: train models at candidate mixtures and pick the best by validation loss.

`grid`: every point of a simplex grid trains the target (the oracle for few domains).
`regmix`: as RegMix's released code runs it: proxies trained on mixtures sampled around the token
distribution (prior^0.5, Dirichlet strengths log-spaced over 0.1-5, each domain capped at 15 times its
natural share), a LightGBM regression of the validation loss on the weights, and the average of the
top-k (128) of 100,000 candidate mixtures by predicted loss. (`regmix_regression: quadratic` keeps the
earlier quadratic ridge fit and its single argmin.)
Both are resumable: each finished point is appended to `points.jsonl` and skipped on rerun.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np

from tandem.io import append_jsonl, read_jsonl


def simplex_grid(num_domains: int, resolution: int) -> np.ndarray:
    """All mixtures with coordinates in {0, 1/r, ..., 1} summing to 1: C(r + M - 1, M - 1) points."""
    pts = [c for c in itertools.product(range(resolution + 1), repeat=num_domains - 1) if sum(c) <= resolution]
    return np.array([[*c, resolution - sum(c)] for c in pts], dtype=np.float64) / resolution


def _key(w: np.ndarray) -> str:
    return ",".join(f"{x:.6f}" for x in w)


def evaluate_points(points: np.ndarray, objective: Callable[[np.ndarray], float], log_path: Path | None,
                    on_point: Callable[[int, np.ndarray, float], None] | None = None) -> np.ndarray:
    """objective(w) for every point, reusing values already in log_path (one JSON line per finished point)."""
    done: dict[str, float] = {}
    for rec in read_jsonl(log_path) if log_path is not None else []:  # a torn last line is skipped
        if "weights" in rec and "loss" in rec:
            done[_key(np.array(rec["weights"]))] = float(rec["loss"])
    values = np.empty(len(points))
    for i, w in enumerate(points):
        k = _key(w)
        if k in done:
            values[i] = done[k]
        else:
            values[i] = objective(w)
            if log_path is not None:
                append_jsonl(log_path, {"weights": w.tolist(), "loss": float(values[i])})
        if on_point is not None:
            on_point(i, w, values[i])
    return values


def quadratic_features(W: np.ndarray) -> np.ndarray:
    """[w_i] and [w_i w_j, i <= j]: enough for an interior minimum, few enough for a small sweep."""
    M = W.shape[1]
    pairs = [W[:, i] * W[:, j] for i in range(M) for j in range(i, M)]
    return np.column_stack([W, *pairs])


def fit_ridge(X: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    return np.linalg.solve(X.T @ X + ridge * np.eye(X.shape[1]), X.T @ y)


def regmix_choose(W: np.ndarray, y: np.ndarray, candidates: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """The candidate mixture with the lowest loss predicted by a quadratic ridge fit of y on W."""
    coef = fit_ridge(quadratic_features(W), y, ridge)
    pred = quadratic_features(candidates) @ coef
    return candidates[int(np.argmin(pred))]


def dirichlet_mixtures(n: int, prior: np.ndarray, seed: int, concentration: float = 1.0) -> np.ndarray:
    """Dirichlet around the token distribution (prior); small domains keep a minimum spread (the quadratic
    variant's sweep and candidates)."""
    rng = np.random.default_rng([seed, 0xD1])
    alpha = np.maximum(prior * len(prior) * concentration, 0.05)
    return rng.dirichlet(alpha, size=n)


# RegMix's released sweep (mixture_config/synthesize_mixture.py): the constants of its code.
REGMIX_TEMPERATURE = 0.5  # the prior is raised to this power before sampling
REGMIX_STRENGTHS = np.logspace(np.log10(0.1), np.log10(5.0), 15)  # Dirichlet strengths, one drawn per sample
REGMIX_MAX_USAGE = 15.0  # no domain above 15x its natural share
REGMIX_MINIMUM = 2e-4  # weights below this are set to 0
REGMIX_CANDIDATES = 100_000  # mixtures scored by the regression
REGMIX_TOP_K = 128  # the chosen mixture is the mean of the k best predicted


def regmix_sweep(n: int, prior: np.ndarray, seed: int) -> np.ndarray:
    """n distinct mixtures as RegMix samples its proxies' mixtures: Dirichlet(prior^0.5 x strength) with the strength
    drawn among 15 log-spaced values in [0.1, 5], rejected where a domain exceeds 15x its share of the untempered
    prior, weights under 2e-4 zeroed and rounded to multiples of 2e-4; drawn 100x over and subsampled."""
    rng = np.random.default_rng([seed, 0x7E6])
    prior = np.asarray(prior, dtype=np.float64)
    prior = prior / prior.sum()
    cap = np.minimum(REGMIX_MAX_USAGE * prior, 1.0)
    tempered = prior ** REGMIX_TEMPERATURE
    tempered = np.maximum(tempered / tempered.sum(), 1e-12)
    draws = 100 * n
    strength = rng.choice(REGMIX_STRENGTHS, size=draws)
    g = rng.standard_gamma(tempered[None, :] * strength[:, None])  # a Dirichlet per row, each its own strength
    total = g.sum(axis=1)
    w = g[total > 0] / total[total > 0, None]
    w = w[np.all(w <= cap, axis=1)]
    w = np.where(w < REGMIX_MINIMUM, 0.0, w)
    w = w[w.sum(axis=1) > 0]
    units = np.round(w / w.sum(axis=1, keepdims=True) / REGMIX_MINIMUM).astype(np.int64)  # in multiples of 2e-4
    whole = int(round(1 / REGMIX_MINIMUM))
    units[np.arange(len(units)), units.argmax(axis=1)] += whole - units.sum(axis=1)  # sum exactly 1
    units = units[np.all(units >= 0, axis=1)]
    unique = np.unique(units, axis=0)  # distinct mixtures (on the 2e-4 grid, L1 < 1e-5 means equal)
    if len(unique) < n:  # a prior so peaked that the caps reject nearly everything: fill from the prior's Dirichlet
        return np.vstack([unique / whole, dirichlet_mixtures(n - len(unique), prior, seed)])
    idx = np.sort(rng.choice(len(unique), size=n, replace=False))
    return unique[idx] / whole


def regmix_lightgbm(W: np.ndarray, y: np.ndarray, seed: int):
    """RegMix's regression: a LightGBM regressor of the validation loss on the mixture (gbdt, 1000 iterations,
    learning rate 0.01, its seed). Its leaves need at least min_child_samples points; RegMix fits 512 runs with
    LightGBM's default of 20, a sweep of tens of runs gets a quarter of its points (at least 2) so that it splits."""
    import lightgbm as lgb

    params = {"boosting_type": "gbdt", "objective": "regression", "learning_rate": 1e-2, "seed": seed,
              "min_data_in_leaf": max(2, min(20, len(y) // 4)), "min_sum_hessian_in_leaf": 0.0, "verbose": -1,
              "num_threads": 1, "deterministic": True, "force_row_wise": True, "min_data_in_bin": 1}
    return lgb.train(params, lgb.Dataset(np.asarray(W), np.asarray(y), params={"min_data_in_bin": 1}),
                     num_boost_round=1000)


def regmix_choose_topk(W: np.ndarray, y: np.ndarray, prior: np.ndarray, seed: int,
                       candidates: int = REGMIX_CANDIDATES, k: int = REGMIX_TOP_K) -> np.ndarray:
    """RegMix's choice: Dirichlet(prior) candidates (untempered, strength 1), scored by the LightGBM fit, and the
    mean of the k with the lowest predicted loss (averaging the top-k damps a noisy fit's extreme argmin)."""
    model = regmix_lightgbm(W, y, seed)
    rng = np.random.default_rng([seed, 0xC4])
    prior = np.asarray(prior, dtype=np.float64)
    cand = rng.dirichlet(np.maximum(prior / prior.sum(), 1e-12), size=candidates)
    pred = model.predict(cand)
    best = cand[np.argsort(pred, kind="stable")[: min(k, candidates)]]
    w = best.mean(axis=0)
    return w / w.sum()
