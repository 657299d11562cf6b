"""How sure stage one is of its mixture: Delta's signal-to-noise over episodes and an interval for every weight.

Pure functions on the episode records, so `tandem optimize`, the Trainer callback and the report all say the same.

- `episode_statistics`: per domain, the mean over episodes of the standardised centred Delta (each episode's Delta
  minus its mean over domains, divided by its root mean square over domains: the quantity TANDEM's step adds up,
  comparable across episodes whatever the twins' learning rate did to Delta's scale), its standard error and
  t = mean / se. Consecutive episodes are correlated (the proxy carries its state from one to the next), so the
  standard error is Newey-West's (Bartlett weights up to lag `block_length - 1`), not the i.i.d. one.
- `weight_intervals`: a circular block bootstrap over episodes. Blocks of consecutive episodes' Delta are drawn with
  replacement (so the autocorrelation within a block is kept) and replayed through the same update rule from the
  same initial mixture (tandem.mixing.loop.next_mixture); the spread of the recommended weights over the replays is
  the interval. A replay does not retrain the proxy, so it ignores how a different mixture would have changed later
  Delta; it measures how much of the answer the noise in Delta decides. A domain whose interval contains its
  initial weight moved within noise.
"""

from __future__ import annotations

import numpy as np

from tandem.mixing.loop import EpisodeRecord, LoopSpec, next_mixture


def _deltas(history: list[EpisodeRecord]) -> tuple[np.ndarray, np.ndarray]:
    """The Delta of the episodes that updated the mixture (rows), and which domains they measured: a domain without
    a train split (target-only) has no Delta in any episode."""
    rows = np.array([r.delta for r in history if not r.skipped], dtype=np.float64)
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=bool)
    measured = np.all(np.isfinite(rows), axis=0)
    return rows[np.all(np.isfinite(rows[:, measured]), axis=1)], measured


def block_length(episodes: int) -> int:
    """Episodes per bootstrap block and the Newey-West lag window: ceil(sqrt(T)), at least 1. Long enough to hold
    the correlation measured between consecutive episodes (sign flips 20-32% where independence gives 40-47%)."""
    return max(1, int(np.ceil(np.sqrt(max(episodes, 1)))))


def standardized(rows: np.ndarray) -> np.ndarray:
    """Each episode's centred Delta divided by its root mean square over domains (a row of zeros stays zero)."""
    c = rows - rows.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.mean(c * c, axis=1, keepdims=True))
    return np.divide(c, rms, out=np.zeros_like(c), where=rms > 0)


def newey_west_se(x: np.ndarray, lags: int) -> np.ndarray:
    """Standard error of the column means of x (episodes x domains) allowing for autocorrelation up to `lags`."""
    n = len(x)
    e = x - x.mean(axis=0)
    var = (e * e).sum(axis=0) / n
    for k in range(1, min(lags, n - 1) + 1):
        var = var + 2.0 * (1.0 - k / (lags + 1.0)) * (e[k:] * e[:-k]).sum(axis=0) / n
    return np.sqrt(np.maximum(var, 0.0) / max(n - 1, 1))


def episode_statistics(history: list[EpisodeRecord]) -> dict[str, np.ndarray]:
    """Per-domain mean, standard error (Newey-West) and t of the standardised centred Delta over the (not skipped)
    episodes, and each domain's share of sign flips between consecutive episodes; NaN for a domain whose Delta was
    never measured."""
    rows, on = _deltas(history)
    if len(rows) == 0:
        return {}
    z = standardized(rows[:, on])
    mean = np.full(rows.shape[1], np.nan)
    se = np.full(rows.shape[1], np.nan)
    flips = np.full(rows.shape[1], np.nan)
    mean[on] = z.mean(axis=0)
    if len(z) > 1:
        se[on] = newey_west_se(z, block_length(len(z)) - 1)
        flips[on] = np.mean(np.sign(z[1:]) != np.sign(z[:-1]), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / se, np.nan)
    return {"mean": mean, "se": se, "t": t, "sign_flips": flips, "episodes": np.array(len(z))}


def replay(spec: LoopSpec, alpha0: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The final and average mixtures that the update rule makes of a sequence of Delta."""
    alpha = np.asarray(alpha0, dtype=np.float64)
    path = []
    for d in deltas:
        alpha = next_mixture(spec, alpha, d)
        path.append(alpha)
    return alpha, (np.mean(path, axis=0) if path else alpha)


def weight_intervals(spec: LoopSpec, alpha0: np.ndarray, history: list[EpisodeRecord], report: str = "final",
                     replays: int = 200, level: float = 0.9, seed: int = 0) -> dict[str, np.ndarray] | None:
    """Block-bootstrap interval (central `level`) of each recommended weight, and whether its move is within noise.

    None when fewer than 3 episodes ran (too few to resample)."""
    d, _ = _deltas(history)
    n = len(d)
    if n < 3:
        return None
    rng = np.random.default_rng([seed, 0xB007])
    b = block_length(n)
    pick = 1 if report == "average" else 0  # replay returns (final, average)

    def resample() -> np.ndarray:
        starts = rng.integers(0, n, -(-n // b))
        idx = (starts[:, None] + np.arange(b)[None, :]).ravel()[:n] % n  # circular blocks, n episodes in all
        return d[idx]

    draws = np.array([replay(spec, alpha0, resample())[pick] for _ in range(replays)])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    alpha0 = np.asarray(alpha0, dtype=np.float64)
    within = (lo <= alpha0 + 1e-12) & (alpha0 - 1e-12 <= hi)
    return {"low": lo, "high": hi, "within_noise": within, "level": np.array(level), "replays": np.array(replays),
            "block_length": np.array(b)}
