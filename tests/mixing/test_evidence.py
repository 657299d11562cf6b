"""How sure stage one is (tandem.mixing.evidence): statistics in each episode's own units, intervals that allow for
correlated episodes."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.mixing.evidence import episode_correlation, episode_statistics, weight_intervals
from tandem.mixing.updates import standardize
from tandem.mixing.loop import EpisodeRecord, LoopSpec


def records(deltas: np.ndarray) -> list[EpisodeRecord]:
    n = deltas.shape[1]
    return [EpisodeRecord(k, k, np.full(n, 1 / n), d, 0.0, np.zeros(n), np.zeros(n)) for k, d in enumerate(deltas)]


def ar1(rng: np.random.Generator, T: int, M: int, rho: float) -> np.ndarray:
    x = np.empty((T, M))
    x[0] = rng.standard_normal(M)
    for t in range(1, T):
        x[t] = rho * x[t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(M)
    return x


def test_rescaling_or_shifting_one_episode_changes_no_statistic_and_no_interval():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(12, 4)) + np.array([0.5, -0.5, 0.0, 0.0])
    spec = LoopSpec(episodes=12, probe_steps=1, free_steps=1, update="standardized", eta_alpha=0.08)
    base_s, base_i = episode_statistics(records(d)), weight_intervals(spec, np.full(4, 0.25), records(d))
    d2 = d.copy()
    d2[3] = d2[3] * 1e3 + 7.0  # one episode 1000 times larger (early in a cosine schedule) and shifted
    d2[8] *= 1e-4
    s, i = episode_statistics(records(d2)), weight_intervals(spec, np.full(4, 0.25), records(d2))
    for k in ("mean", "se", "t", "sign_flips"):
        np.testing.assert_allclose(s[k], base_s[k], rtol=1e-9)
    np.testing.assert_allclose(i["low"], base_i["low"], rtol=1e-9)
    np.testing.assert_allclose(i["high"], base_i["high"], rtol=1e-9)


def test_standard_error_allows_for_correlated_episodes():
    """Under AR(1) episodes (rho 0.5) the i.i.d. standard error of the mean is too small; the one reported is closer
    to the true spread of the mean over many replays, and with independent episodes it stays near the i.i.d. one."""
    rng = np.random.default_rng(1)
    T, M = 30, 4
    for rho, lo, hi in ((0.5, 0.8, 1.25), (0.0, 0.85, 1.3)):
        draws = [ar1(rng, T, M, rho) for _ in range(600)]
        true_sd = np.std([standardize(x).mean(axis=0)[0] for x in draws])
        iid = np.mean([standardize(x).std(axis=0, ddof=1)[0] / np.sqrt(T) for x in draws])
        ours = np.mean([episode_statistics(records(x))["se"][0] for x in draws])
        if rho:
            assert iid < 0.75 * true_sd  # the i.i.d. formula understates it
        assert lo * true_sd < ours < hi * true_sd, (rho, ours, true_sd, iid)
    assert episode_correlation(np.zeros((2, 3))) == 0.0


def test_interval_covers_noise_nearly_as_often_as_it_claims():
    """Pure-noise Delta, correlated across episodes (rho 0.5): the 90% interval of a weight contains the initial
    weight in most runs, more often than an i.i.d. bootstrap's would (64% measured), and a consistent signal is not
    within noise."""
    rng = np.random.default_rng(2)
    T, M = 20, 4
    spec = LoopSpec(episodes=T, probe_steps=1, free_steps=1, update="standardized", eta_alpha=0.08)
    alpha0 = np.full(M, 1 / M)
    within = [weight_intervals(spec, alpha0, records(ar1(rng, T, M, 0.5)), replays=100, seed=s)["within_noise"]
              for s in range(60)]
    assert np.mean(within) >= 0.75
    d = rng.normal(size=(T, M)) + 3.0 * np.array([-1.0, 1.0, 0.0, 0.0])
    iv = weight_intervals(spec, alpha0, records(d))
    assert not iv["within_noise"][0] and not iv["within_noise"][1]
    assert iv["low"][0] > 0.25 and iv["high"][1] < 0.25


def test_statistics_skip_a_domain_never_measured():
    d = np.array([[0.1, np.nan, -0.1], [0.2, np.nan, -0.3], [0.0, np.nan, 0.1]])
    s = episode_statistics(records(d))
    assert np.isnan(s["mean"][1]) and np.isfinite(s["mean"][[0, 2]]).all()
    assert s["mean"][[0, 2]].sum() == pytest.approx(0.0)
