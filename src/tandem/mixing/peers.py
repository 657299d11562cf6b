"""The mixture math of the online peers (ODM, Aioli, Skill-It, ADO) as pure functions on arrays.

Each is written from its paper's equations and checked in tests/mixing/test_peers.py against an independent
route (hand-computed probabilities, a known interaction matrix, a given skills graph, a synthetic power law).
The runner that feeds them losses is tandem.mixing.online.
"""

from __future__ import annotations

import math

import numpy as np


def _normalise_logits(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max()
    w = np.exp(z)
    return w / w.sum()


# --- ODM: EXP3 over domains (Albalak et al. 2023) -------------------------------------------------------------------

def odm_epsilon(num_domains: int, t: int) -> float:
    """epsilon_t = min(1/K, sqrt(ln K / (K t))): both the learning rate and the exploration rate at round t >= 1."""
    k = num_domains
    return min(1.0 / k, math.sqrt(math.log(k) / (k * max(t, 1))))


def odm_probabilities(rewards: np.ndarray, eps_prev: float, eps: float) -> np.ndarray:
    """EXP3's sampling distribution: (1 - K eps_t) softmax(eps_{t-1} R) + eps_t, R the estimated (importance-weighted,
    averaged) rewards: eps_t is the exploration floor, eps_{t-1} the learning rate."""
    k = len(rewards)
    return (1.0 - k * eps) * _normalise_logits(eps_prev * np.asarray(rewards, dtype=np.float64)) + eps


def odm_rewards(rewards: np.ndarray, observed: np.ndarray, probabilities: np.ndarray, smoothing: float) -> np.ndarray:
    """One round's reward estimates: for each domain sampled this round (finite `observed` loss), its loss divided by
    the probability it was drawn with (the importance weight keeps the estimate unbiased for rarely drawn domains),
    folded into a moving average R <- smoothing R + (1 - smoothing) loss / p; unobserved domains keep R."""
    r = np.asarray(rewards, dtype=np.float64).copy()
    seen = np.isfinite(observed)
    r[seen] = smoothing * r[seen] + (1.0 - smoothing) * observed[seen] / probabilities[seen]
    return r


def odm_smoothed_rewards(estimates: np.ndarray, observed: np.ndarray, smoothing: float) -> np.ndarray:
    """ODM's released updater (SmoothedMeanWeightUpdater, the update its training loop calls with mixed
    micro-batches): for each domain sampled this step, est <- s est + (1 - s) exp(loss), the loss its mean training
    loss over this step's micro-batches; no importance weight; unsampled domains keep their estimate."""
    est = np.asarray(estimates, dtype=np.float64).copy()
    seen = np.isfinite(observed)
    est[seen] = smoothing * est[seen] + (1.0 - smoothing) * np.exp(observed[seen])
    return est


def odm_smoothed_probabilities(estimates: np.ndarray, eps: float) -> np.ndarray:
    """The released updater's sampling distribution: (1 - K eps_t) est / sum(est) + eps_t, renormalised (a linear
    normalisation of the estimates, not a softmax); before any estimate, uniform."""
    est = np.asarray(estimates, dtype=np.float64)
    k = len(est)
    total = est.sum()
    share = est / total if total > 0 else np.full(k, 1.0 / k)
    p = (1.0 - k * eps) * share + eps
    return p / p.sum()


# --- Aioli: online estimation of the linear mixing law (Chen et al. 2024) ------------------------------------------

def aioli_probe_mixtures(num_domains: int, one_hot_factor: float) -> np.ndarray:
    """P[:, j]: the mixture trained on when probing group j, one_hot_factor on j and the rest spread evenly."""
    m = num_domains
    if m == 1:
        return np.ones((1, 1))
    rest = (1.0 - one_hot_factor) / (m - 1)
    return np.full((m, m), rest) + np.eye(m) * (one_hot_factor - rest)


def aioli_unmix(measured: np.ndarray, one_hot_factor: float) -> np.ndarray:
    """A from B = A P: column j of B is the loss drop after training on the smoothed mixture P[:, j]; the linear
    law makes it A P[:, j], so A = B P^-1 (P is invertible for one_hot_factor != 1/M)."""
    P = aioli_probe_mixtures(measured.shape[1], one_hot_factor)
    if one_hot_factor == 1.0:
        return np.asarray(measured, dtype=np.float64)
    return np.linalg.solve(P.T, np.asarray(measured, dtype=np.float64).T).T


def aioli_normalise(A: np.ndarray) -> np.ndarray:
    """Aioli's scale-free A: shifted up by its minimum if any entry is negative, then divided by its total."""
    A = np.asarray(A, dtype=np.float64)
    if A.min() < 0:
        A = A - A.min()
    total = A.sum()
    return A / total if total > 0 else np.zeros_like(A)


def aioli_update(p: np.ndarray, A: np.ndarray, eta: float, target: np.ndarray | None = None) -> np.ndarray:
    """p_j <- p_j exp(eta sum_i t_i A[i, j]), normalised: group j gains weight by how much training on it lowers every
    group's validation loss (A[i, j]: drop of group i's loss per unit of j), summed over groups (t uniform = Aioli's
    sum over rows, up to the scale M) or weighted by the target t."""
    m = len(p)
    t = np.ones(m) if target is None else np.asarray(target, dtype=np.float64) * m
    return _normalise_logits(np.log(np.maximum(p, 1e-300)) + eta * (t @ A))


# --- Skill-It: multiplicative weights over a skills graph (Chen et al. 2023) ---------------------------------------

def skillit_graph(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """A[i, j]: the relative drop of skill j's validation loss after training on skill i alone, from the losses
    before (shape [M]) and after (shape [M, M], row i: after training on i); 0 for a skill with no loss (outside the
    target). Kept as measured, diagonal included, as Skill-It's graph learning does."""
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        drop = np.where(before[None, :] > 0, (before[None, :] - after) / before[None, :], 0.0)
    return drop


def skillit_mixture(p0: np.ndarray, A: np.ndarray, recent_losses: np.ndarray, eta: float) -> np.ndarray:
    """p_i proportional to p0_i exp(eta sum_j A[i, j] sum_{tau in window} L_j(tau)): skills that feed skills whose
    validation loss is still high gain weight. `recent_losses`: [window, M] validation losses (a skill outside the
    target has L_j = 0)."""
    drive = A @ np.asarray(recent_losses, dtype=np.float64).sum(axis=0)
    return _normalise_logits(np.log(np.maximum(p0, 1e-300)) + eta * drive)


# --- ADO: per-domain scaling laws of the training loss (Jiang et al. 2025) -----------------------------------------

def savgol_smooth(y: np.ndarray, window: int = 101, order: int = 3) -> np.ndarray:
    """Savitzky-Golay smoothing (a local polynomial least-squares fit per point), the window shrunk to the largest odd
    length the series allows; ends use the fit of the first/last full window. Series shorter than order + 2 are
    returned as they are."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    w = min(window, n if n % 2 else n - 1)
    if w < order + 2:
        return y.copy()
    half = w // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    V = np.vander(x, order + 1, increasing=True)  # [w, order + 1]
    proj = V @ np.linalg.pinv(V)  # maps a window to its fitted values
    out = np.empty(n)
    for i in range(n):
        lo = min(max(i - half, 0), n - w)
        out[i] = proj[i - lo] @ y[lo : lo + w]
    return out


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def ado_fit(n: np.ndarray, loss: np.ndarray, delta: float = 1e-3) -> np.ndarray:
    """(E, A, alpha) of L(n) = exp(E) + exp(A) n^-alpha, fitted as ADO does in log space with a Huber loss: for every
    alpha on a grid over [0, 0.8] the linear coefficients (exp(E), exp(A)) >= 0 come from least squares, and the
    alpha whose fit has the lowest log-space Huber loss wins (ADO restarts L-BFGS from a grid; for a fixed alpha
    the law is linear, so the grid over alpha alone finds the same optimum without an optimiser)."""
    n = np.asarray(n, dtype=np.float64)
    y = np.asarray(loss, dtype=np.float64)
    keep = np.isfinite(y) & (y > 0) & (n > 0)
    n, y = n[keep], y[keep]
    if len(y) < 3:
        return np.array([np.log(max(float(np.mean(y)) if len(y) else 1.0, 1e-12)), -30.0, 0.0])
    best, best_obj = None, np.inf
    for alpha in np.linspace(0.0, 0.8, 161):
        X = np.column_stack([np.ones_like(n), n ** -alpha])
        c, *_ = np.linalg.lstsq(X, y, rcond=None)
        c = np.maximum(c, 1e-12)
        if c[0] <= 1e-12 or c[1] <= 1e-12:  # a bound is active: refit the other coefficient alone
            only = [np.array([y.mean(), 1e-12]), np.array([1e-12, float(X[:, 1] @ y / (X[:, 1] @ X[:, 1]))])]
            c = min((np.maximum(o, 1e-12) for o in only), key=lambda o: _huber(np.log(X @ o) - np.log(y), delta).sum())
        obj = _huber(np.log(X @ c) - np.log(y), delta).sum()
        if obj < best_obj:
            best, best_obj = np.array([np.log(c[0]), np.log(c[1]), alpha]), obj
    return best


def ado_fit_all(n: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """ado_fit per domain on its Savitzky-Golay-smoothed training-loss history ([steps, M]; a missing value carries
    the last one forward); n [steps] the sequences seen so far, shared by every domain. Returns [M, 3]."""
    losses = np.array(losses, dtype=np.float64)
    for j in range(losses.shape[1]):  # carry forward, then backward for a leading gap
        col = losses[:, j]
        for i in range(1, len(col)):
            if not np.isfinite(col[i]):
                col[i] = col[i - 1]
        finite = np.isfinite(col)
        if finite.any() and not finite[0]:
            col[: int(np.argmax(finite))] = col[int(np.argmax(finite))]
    out = []
    for j in range(losses.shape[1]):
        col = losses[:, j]
        ok = np.isfinite(col)
        out.append(ado_fit(np.asarray(n)[ok], savgol_smooth(col[ok])))
    return np.array(out)


def ado_scores(params: np.ndarray, n: float, prior: np.ndarray, history: np.ndarray, floor: float) -> np.ndarray:
    """ADO's preference: rho_k = max(alpha_k, 0.05) (L_k(n) - exp(E_k)) / n * mu_k * sqrt(h_k), normalised, then
    floored at `floor` and renormalised: domains still improving fast (per the fit), common in the data (mu) and
    credited for their own recent share (h) get more."""
    E, A, alpha = params[:, 0], params[:, 1], params[:, 2]
    reducible = np.exp(A) * float(n) ** -alpha
    rho = np.maximum(alpha, 0.05) * reducible / float(n) * np.asarray(prior) * np.sqrt(np.maximum(history, 0.0))
    if not np.all(np.isfinite(rho)) or rho.sum() <= 0:
        rho = np.asarray(prior, dtype=np.float64)
    rho = rho / rho.sum()
    if floor > 0:
        rho = np.maximum(rho, floor)
        rho = rho / rho.sum()
    return rho
