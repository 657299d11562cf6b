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


UPDATE_RULES = ("normalized", "eg", "projected")


def delta_evidence(deltas: np.ndarray, memory: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """How sure the episodes so far are of each domain's Delta: the exponentially weighted (factor `memory` per
    episode back; 1 = all episodes alike) mean of the centred Delta (each episode's Delta minus its mean over
    domains: every update rule ignores a constant shift), its standard error across episodes, and the effective
    number of episodes. The standard error is inf until there are two episodes."""
    d = np.atleast_2d(np.asarray(deltas, dtype=np.float64))
    d = d - d.mean(axis=1, keepdims=True)
    w = float(memory) ** np.arange(len(d) - 1, -1, -1, dtype=np.float64)
    total = w.sum()
    mean = w @ d / total
    n_eff = float(total**2 / (w**2).sum())
    if len(d) < 2:
        return mean, np.full_like(mean, np.inf), n_eff
    var = (w @ (d - mean) ** 2) / total * n_eff / (n_eff - 1.0)  # unbiased for weighted i.i.d. draws
    return mean, np.sqrt(var / n_eff), n_eff


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def student_t_tail(t: float, dof: float) -> float:
    """P(T > t) for Student's t with `dof` (real, > 0) degrees of freedom, t >= 0."""
    return 0.5 * _betainc(dof / 2.0, 0.5, dof / (dof + t * t))


def student_t_critical(z: float, dof: float) -> float:
    """The quantile of Student's t with `dof` degrees of freedom at the upper-tail probability of z standard
    normal deviations (exact, by bisection on the t distribution's tail)."""
    if dof <= 0:
        return float("inf")
    if z <= 0:
        return 0.0
    p = 0.5 * math.erfc(z / math.sqrt(2.0))
    lo, hi = z, z
    while student_t_tail(hi, dof) > p:
        hi *= 2.0
        if hi > 1e12:
            return float("inf")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_tail(mid, dof) > p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * hi:
            break
    return 0.5 * (lo + hi)


def normalized_update(alpha: np.ndarray, deltas: np.ndarray, eta: float, memory: float = 0.95,
                      threshold: float = 3.0, max_step: float = 0.2, min_episodes: int = 3) -> np.ndarray:
    """TANDEM's default mixture step: mirror descent on the evidence in Delta, not on its raw size.

    `deltas` holds this episode's Delta and every earlier one (rows). Each domain's centred Delta is turned into
    a t-statistic over the recent episodes (`delta_evidence`); only the part of |t| beyond `threshold` moves the
    weights: log alpha_i <- log alpha_i - eta * sign(t_i) max(|t_i| - threshold, 0), renormalised, with no
    log-weight moving more than `max_step` per episode (a trust region). The step is dimensionless, so it does
    not change when Delta is rescaled (learning rate, probe length, model, loss scale, phase of training);
    a domain whose Delta is within noise keeps its weight instead of taking a random walk.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    d = np.atleast_2d(np.asarray(deltas, dtype=np.float64))
    if not np.all(np.isfinite(d)):
        raise FloatingPointError(f"non-finite Delta {d[-1]}")
    if len(d) < max(min_episodes, 2):
        return alpha / alpha.sum()
    mean, se, n_eff = delta_evidence(d, memory)
    # The standard error comes from few episodes: measure |t| against Student's t with n_eff - 1 degrees of
    # freedom at the same tail probability as `threshold` standard errors of a normal.
    threshold = student_t_critical(threshold, n_eff - 1.0)
    # A noiseless Delta (an exact problem) has se = 0: its evidence is unbounded and the trust region sets the step.
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / se, np.where(mean == 0, 0.0, np.sign(mean) * np.inf))
    z = np.sign(t) * np.maximum(np.abs(t) - threshold, 0.0)
    if not np.any(z):
        return alpha / alpha.sum()
    with np.errstate(invalid="ignore", over="ignore"):
        step = eta * z
    if not np.all(np.isfinite(step)):  # unbounded evidence: the largest allowed step in its direction
        step = np.where(np.isfinite(step), 0.0, np.sign(step))
    biggest = np.abs(step).max()
    if biggest > max_step:
        step = step * (max_step / biggest)
    logits = np.log(np.maximum(alpha, 1e-300)) - step
    logits -= logits.max()
    w = np.exp(logits)
    return w / w.sum()


def update_mixture(alpha: np.ndarray, delta: np.ndarray, rule: str, eta: float, smoothing: float = 0.0, floor: float = 0.0,
                   past: np.ndarray | None = None, memory: float = 0.95, threshold: float = 3.0,
                   max_step: float = 0.2) -> np.ndarray:
    """One mixture step against Delta, then smoothing and floor. Invariant to adding a constant to every Delta_i.

    `normalized` also reads `past` (the Delta of earlier episodes, rows) to weigh the evidence; `eg` and
    `projected` step on this episode's Delta with the raw step size eta.
    """
    delta = np.asarray(delta, dtype=np.float64)
    if not np.all(np.isfinite(delta)):
        raise FloatingPointError(f"non-finite Delta {delta}")
    if rule == "normalized":
        rows = delta[None] if past is None or len(past) == 0 else np.vstack([np.asarray(past, dtype=np.float64), delta])
        new = normalized_update(alpha, rows, eta, memory, threshold, max_step)
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
