"""How sure stage one is of its mixture: Delta's signal-to-noise over episodes and an interval for every weight.

Pure functions on the episode records, so `tandem optimize`, the Trainer callback and the report all say the same.

- `episode_statistics`: per domain, the mean of the centred Delta over the episodes, its standard error across
  episodes and t = mean / se. Centred, because every update rule ignores a shift common to all domains.
- `weight_intervals`: a bootstrap over episodes. The episodes' Delta are drawn with replacement and replayed through
  the same update rule from the same initial mixture (tandem.mixing.loop.next_mixture); the spread of the
  recommended weights over the replays is the interval. A replay does not retrain the proxy, so it ignores how a
  different mixture would have changed later Delta; it measures how much of the answer the noise in Delta decides.
  A domain whose interval contains its initial weight moved within noise.
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


def episode_statistics(history: list[EpisodeRecord]) -> dict[str, np.ndarray]:
    """Per-domain mean, standard error and t of the centred Delta over the (not skipped) episodes; NaN for a domain
    whose Delta was never measured."""
    rows, on = _deltas(history)
    if len(rows) == 0:
        return {}
    d = rows[:, on] - rows[:, on].mean(axis=1, keepdims=True)
    mean = np.full(rows.shape[1], np.nan)
    se = np.full(rows.shape[1], np.nan)
    mean[on] = d.mean(axis=0)
    if len(d) > 1:
        se[on] = d.std(axis=0, ddof=1) / np.sqrt(len(d))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / se, np.nan)
    return {"mean": mean, "se": se, "t": t, "episodes": np.array(len(d))}


def replay(spec: LoopSpec, alpha0: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The final and average mixtures that the update rule makes of a sequence of Delta."""
    alpha = np.asarray(alpha0, dtype=np.float64)
    path, past = [], []
    for d in deltas:
        alpha = next_mixture(spec, alpha, d, past)
        past.append(d)
        path.append(alpha)
    return alpha, (np.mean(path, axis=0) if path else alpha)


def weight_intervals(spec: LoopSpec, alpha0: np.ndarray, history: list[EpisodeRecord], report: str = "average",
                     replays: int = 200, level: float = 0.9, seed: int = 0) -> dict[str, np.ndarray] | None:
    """Bootstrap interval (central `level`) of each recommended weight, and whether its move is within noise.

    None when fewer than 3 episodes ran (too few to resample)."""
    d, _ = _deltas(history)
    if len(d) < 3:
        return None
    rng = np.random.default_rng([seed, 0xB007])
    pick = 1 if report == "average" else 0  # replay returns (final, average)
    draws = np.array([replay(spec, alpha0, d[rng.integers(0, len(d), len(d))])[pick] for _ in range(replays)])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    alpha0 = np.asarray(alpha0, dtype=np.float64)
    within = (lo <= alpha0 + 1e-12) & (alpha0 - 1e-12 <= hi)
    return {"low": lo, "high": hi, "within_noise": within, "level": np.array(level), "replays": np.array(replays)}
