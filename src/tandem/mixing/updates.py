"""The mixture math as pure functions on arrays: signals, updates, projections. No model needed to test them."""

from __future__ import annotations

import math

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


UPDATE_RULES = ("standardized", "eg", "projected")


def standardize(delta: np.ndarray) -> np.ndarray:
    """Each episode's (last axis: domains) centred Delta divided by its root mean square over domains; an episode
    whose centred Delta is all zero (or not finite in its spread) gives zeros. The quantity TANDEM's step adds up,
    and the one its evidence (tandem.mixing.evidence) is measured in."""
    c = np.asarray(delta, dtype=np.float64)
    c = c - c.mean(axis=-1, keepdims=True)
    rms = np.sqrt(np.mean(c * c, axis=-1, keepdims=True))
    return np.divide(c, rms, out=np.zeros_like(c), where=rms > 0)


def standardized_update(alpha: np.ndarray, delta: np.ndarray, eta: float, episodes: int) -> np.ndarray:
    """TANDEM's default mixture step: mirror descent on this episode's Delta measured in its own units.

    The centred Delta (minus its mean over domains: every rule ignores a shift common to all) is divided by its
    root mean square over domains, z = c / rms(c), and log alpha_i <- log alpha_i - (eta / sqrt(episodes)) z_i,
    renormalised.

    Why this form:
    - Each episode is standardised by its own scale, so episodes whose Delta is larger (early in the twins' cosine
      schedule, a larger proxy or learning rate) do not outvote later ones, and the step does not change when Delta
      is rescaled.
    - Increments, not a test: every episode moves the mixture by its own evidence, so a consistent signal of
      moderate size (per-episode signal-to-noise 0.3-0.6, as measured on real domains) adds up over the episodes,
      while noise, which points elsewhere each episode, adds up only as a random walk. No gate opens or stays shut.
    - The 1/sqrt(episodes) factor fixes how far pure noise moves the mixture whatever the episode count: with
      z_i of unit variance, the final log-weight's spread under pure noise is about eta, while a consistent signal
      moves it about eta times its t-statistic over the episodes (sqrt(episodes) x signal-to-noise).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    step = (eta / math.sqrt(max(int(episodes), 1))) * standardize(delta)
    logits = np.log(np.maximum(alpha, 1e-300)) - step
    logits -= logits.max()
    w = np.exp(logits)
    return w / w.sum()


def update_mixture(alpha: np.ndarray, delta: np.ndarray, rule: str, eta: float, smoothing: float = 0.0, floor: float = 0.0,
                   episodes: int = 1) -> np.ndarray:
    """One mixture step against Delta, then smoothing and floor. Invariant to adding a constant to every Delta_i.

    `standardized` steps on this episode's Delta in its own units (`episodes`: how many steps the run takes, which
    sets the step size); `eg` and `projected` step on the raw Delta with the raw step size eta.
    """
    delta = np.asarray(delta, dtype=np.float64)
    if not np.all(np.isfinite(delta)):
        raise FloatingPointError(f"non-finite Delta {delta}")
    if rule == "standardized":
        new = standardized_update(alpha, delta, eta, episodes)
    elif rule == "eg":
        new = eg_update(alpha, delta, eta)
    elif rule == "projected":
        new = projected_update(alpha, delta, eta)
    else:
        raise ValueError(f"unknown update rule {rule!r}; expected one of {', '.join(UPDATE_RULES)}")
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


def project_capped_simplex(alpha: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """The mixture closest to alpha in KL divergence with alpha_i <= caps_i: domains over their cap are set to it
    and the rest keep their ratios, rescaled to fill the simplex (water-filling, at most M rounds).

    If the caps sum to less than 1 no mixture respects them all; then every domain is scaled to the same share of
    its cap (alpha proportional to caps), the least uneven overrun.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    caps = np.asarray(caps, dtype=np.float64)
    if np.any(caps < 0) or caps.sum() <= 0 or not np.all(np.isfinite(alpha)) or np.any(alpha < 0) or alpha.sum() <= 0:
        raise ValueError(f"cannot project {alpha} under caps {caps}")
    alpha = alpha / alpha.sum()
    if caps.sum() < 1.0:
        return caps / caps.sum()
    fixed = np.zeros(len(alpha), dtype=bool)
    out = alpha.copy()
    for _ in range(len(alpha) + 1):
        over = ~fixed & (out > caps * (1 + 1e-12))
        if not over.any():
            break
        fixed |= over
        free = ~fixed
        room = 1.0 - caps[fixed].sum()
        mass = alpha[free].sum()
        out = np.where(fixed, caps, 0.0)
        if free.any():
            out[free] = room * (alpha[free] / mass) if mass > 0 else room / free.sum()
    return out / out.sum()
