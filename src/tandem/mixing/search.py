"""Search methods: train models at candidate mixtures and pick the best by validation loss.

`grid`: every point of a simplex grid trains the target (the oracle for few domains).
`regmix`: proxies trained on Dirichlet-sampled mixtures, a quadratic ridge regression of the
validation loss on the weights, and the mixture with the lowest predicted loss (RegMix uses
LightGBM on a larger sweep; the quadratic model keeps the minimiser inside the simplex with few samples).
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
    """RegMix's sampling: Dirichlet around the token distribution (prior); small domains keep a minimum spread."""
    rng = np.random.default_rng([seed, 0xD1])
    alpha = np.maximum(prior * len(prior) * concentration, 0.05)
    return rng.dirichlet(alpha, size=n)
