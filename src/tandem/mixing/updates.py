"""The mixture math as pure functions on arrays: signals, updates, projections. No model needed to test them."""

from __future__ import annotations

import numpy as np


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {x >= 0, sum x = 1} (sort-based, O(M log M)).

    The projection commutes with adding a constant to every entry, so v is shifted to max 0 first; and
    entries more than 1 below the max always project to 0 (the threshold is at least max - 1), so only
    entries in (-1, 0] enter the sums. Huge |v| (even -inf) then neither overflows nor loses precision.
    """
    v = np.asarray(v, dtype=np.float64)
    if np.any(np.isnan(v) | (v == np.inf)) or np.all(v == -np.inf):
        raise FloatingPointError(f"cannot project {v} onto the simplex")
    with np.errstate(over="ignore"):
        x = v - v.max()
    keep = x > -1.0
    u = np.sort(x[keep])[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, len(u) + 1)
    rho = np.nonzero(u - css / k > 0)[0][-1]
    theta = css[rho] / (rho + 1)
    out = np.zeros_like(v)
    out[keep] = np.maximum(x[keep] - theta, 0.0)
    return out


def eg_update(alpha: np.ndarray, delta: np.ndarray, eta: float) -> np.ndarray:
    """Exponentiated gradient (mirror descent): alpha_i <- alpha_i exp(-eta Delta_i), renormalised.

    Computed in log space (shifted by the max) so large eta * Delta cannot overflow.
    """
    delta = np.asarray(delta, dtype=np.float64)
    if eta == 0:
        return np.asarray(alpha, dtype=np.float64) / np.sum(alpha)
    # Shift Delta so its smallest entry is 0 (the rule is invariant to it): eta * Delta may then overflow
    # only to +inf, whose weight is exactly 0, instead of making inf - inf = NaN.
    with np.errstate(over="ignore"):
        step = eta * (delta - delta.min())
    logits = np.log(np.maximum(alpha, 1e-300)) - step
    logits -= logits.max()
    w = np.exp(logits)
    return w / w.sum()


def projected_update(alpha: np.ndarray, delta: np.ndarray, eta: float) -> np.ndarray:
    """Projected gradient: alpha <- Proj_simplex(alpha - eta Delta)."""
    delta = np.asarray(delta, dtype=np.float64)
    # Shift Delta so its smallest entry is 0 (the projection is invariant to it): an overflowing eta * Delta
    # then gives -inf entries, which project to weight 0, never inf - inf = NaN.
    with np.errstate(over="ignore"):
        step = eta * (delta - delta.min())
    return project_simplex(np.asarray(alpha, dtype=np.float64) - step)


def smooth(alpha: np.ndarray, c: float) -> np.ndarray:
    """Mix toward uniform: (1 - c) alpha + c / M."""
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"smoothing must lie in [0, 1], got {c}")
    return (1.0 - c) * alpha + c / len(alpha)


def apply_floor(alpha: np.ndarray, floor: float) -> np.ndarray:
    """Guarantee alpha_i >= floor while staying on the simplex: floor + (1 - M floor) alpha."""
    if floor <= 0:
        return alpha
    if floor * len(alpha) > 1.0:
        raise ValueError(f"floor {floor} is infeasible for {len(alpha)} domains (needs floor <= 1/M)")
    return floor + (1.0 - len(alpha) * floor) * alpha


def update_mixture(alpha: np.ndarray, delta: np.ndarray, rule: str, eta: float, smoothing: float = 0.0, floor: float = 0.0) -> np.ndarray:
    """One mixture step against Delta, then smoothing and floor. Invariant to adding a constant to every Delta_i."""
    delta = np.asarray(delta, dtype=np.float64)
    if not np.all(np.isfinite(delta)):
        raise FloatingPointError(f"non-finite Delta {delta}")
    if rule == "eg":
        new = eg_update(alpha, delta, eta)
    elif rule == "projected":
        new = projected_update(alpha, delta, eta)
    else:
        raise ValueError(f"unknown update rule {rule!r}; expected eg or projected")
    return apply_floor(smooth(new, smoothing), floor)


def twin_gap(ref_losses: np.ndarray, proxy_losses: np.ndarray, gamma: float, clip: bool = False) -> np.ndarray:
    """Delta_i = gamma (L_i(w) - L_i(u)); with clip, min(Delta_i, 0) (DoReMi's clipped excess loss, negated)."""
    delta = gamma * (np.asarray(ref_losses, dtype=np.float64) - np.asarray(proxy_losses, dtype=np.float64))
    return np.minimum(delta, 0.0) if clip else delta


def doremi_update(alpha: np.ndarray, proxy_losses: np.ndarray, ref_losses: np.ndarray, eta: float = 1.0, smoothing: float = 1e-3) -> np.ndarray:
    """DoReMi's step as published: alpha_i <- alpha_i exp(eta max(L_i(u) - L_i(ref), 0)), normalised, smoothed."""
    excess = np.maximum(np.asarray(proxy_losses, dtype=np.float64) - np.asarray(ref_losses, dtype=np.float64), 0.0)
    return smooth(eg_update(alpha, -excess, eta), smoothing)  # in log space: a large excess cannot overflow


def doge_update(alpha: np.ndarray, scores: np.ndarray, eta: float) -> np.ndarray:
    """DoGE's step: alpha_i <- alpha_i exp(eta <grad L_i, grad L_val>), normalised."""
    return eg_update(alpha, -np.asarray(scores, dtype=np.float64), eta)
