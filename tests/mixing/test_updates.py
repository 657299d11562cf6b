"""The pure mixture math (tandem.mixing.updates) on small arrays: projections, update rules, signals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tandem.mixing.updates import (
    apply_floor,
    doge_update,
    doremi_update,
    eg_update,
    project_simplex,
    projected_update,
    smooth,
    twin_gap,
    update_mixture,
)

RULES = ["eg", "projected"]


def slow_projection(v: np.ndarray) -> np.ndarray:
    """Reference Euclidean projection onto the simplex by enumerating every support set.

    For a support S the only candidate is x_S = v_S - tau with tau = (sum v_S - 1) / |S|, x = 0 elsewhere;
    it is the projection iff x_S > 0 and v_j <= tau off S (the KKT conditions). Among all candidates
    that are feasible we also keep the one nearest to v, which must agree.
    """
    M = len(v)
    best, best_d = None, np.inf
    for r in range(1, M + 1):
        for S in itertools.combinations(range(M), r):
            S = list(S)
            tau = (v[S].sum() - 1.0) / len(S)
            x = np.zeros(M)
            x[S] = v[S] - tau
            if np.any(x[S] < 0):
                continue
            d = np.sum((x - v) ** 2)
            if d < best_d:
                best, best_d = x, d
    return best


def assert_kkt(x: np.ndarray, v: np.ndarray, tol: float = 1e-9) -> None:
    """x = Proj(v) iff x on the simplex and x_i = max(v_i - tau, 0) for one tau."""
    assert np.all(x >= 0)
    assert abs(x.sum() - 1.0) < tol
    support = x > 0
    taus = (v - x)[support]
    tau = taus.mean()
    assert np.allclose(taus, tau, atol=tol)
    assert np.all(v[~support] <= tau + tol)


def on_simplex(x: np.ndarray, floor: float = 0.0, tol: float = 1e-9) -> None:
    assert np.all(np.isfinite(x)), x
    assert np.all(x >= 0), x
    assert abs(x.sum() - 1.0) <= tol, x.sum()
    assert np.all(x >= floor), (x, floor)


# ---------------------------------------------------------------- project_simplex


@pytest.mark.parametrize("seed", range(30))
def test_projection_matches_slow_reference_and_kkt(seed):
    rng = np.random.default_rng(seed)
    M = int(rng.integers(1, 7))
    v = rng.normal(0, [0.1, 1.0, 5.0][seed % 3], M) + rng.normal()
    x = project_simplex(v)
    on_simplex(x)
    assert_kkt(x, v)
    np.testing.assert_allclose(x, slow_projection(v), atol=1e-12)


def test_projection_known_values():
    np.testing.assert_allclose(project_simplex(np.array([0.5, 0.2, 0.1])), [0.5 + 0.2 / 3, 0.2 + 0.2 / 3, 0.1 + 0.2 / 3])
    np.testing.assert_allclose(project_simplex(np.array([2.0, 0.0, -1.0])), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(project_simplex(np.array([1.0, 1.0, -5.0])), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(project_simplex(np.array([7.0])), [1.0])


@pytest.mark.parametrize("seed", range(10))
def test_projection_idempotent_on_simplex(seed):
    rng = np.random.default_rng(seed)
    a = rng.dirichlet(np.full(5, 0.5))
    a[rng.integers(5)] = 0.0
    a /= a.sum()
    np.testing.assert_allclose(project_simplex(a), a, atol=1e-15)
    once = project_simplex(a + rng.normal(size=5))
    np.testing.assert_allclose(project_simplex(once), once, atol=1e-15)


@pytest.mark.parametrize("seed", range(10))
def test_projection_invariant_to_constant_shift(seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=6)
    ref = project_simplex(v)
    for c in (-1e3, 1e3):
        np.testing.assert_allclose(project_simplex(v + c), ref, atol=1e-9)


def test_projection_huge_values():
    # Values spread far beyond double precision of the sums: the result is still exact.
    big = np.array([1e17 + 8.0, 1e17, 0.0, -1e300, -np.inf])
    np.testing.assert_allclose(project_simplex(big), [0.5, 0.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(project_simplex(np.array([1e308, -1e308, 1e308])), [0.5, 0.0, 0.5])


def test_projection_rejects_nan_and_inf():
    for bad in ([np.nan, 0.0], [np.inf, 0.0], [-np.inf, -np.inf]):
        with pytest.raises(FloatingPointError):
            project_simplex(np.array(bad))


# ---------------------------------------------------------------- update rules


@pytest.mark.parametrize("seed", range(10))
def test_rules_invariant_to_constant_delta(seed):
    rng = np.random.default_rng(seed)
    alpha = rng.dirichlet(np.ones(4))
    delta = rng.normal(size=4)
    eta = float(rng.uniform(0.01, 2.0))
    for c in (-100.0, -1.0, 0.5, 37.0):
        np.testing.assert_allclose(eg_update(alpha, delta + c, eta), eg_update(alpha, delta, eta), atol=1e-12)
        np.testing.assert_allclose(projected_update(alpha, delta + c, eta), projected_update(alpha, delta, eta), atol=1e-12)


def test_eg_update_matches_formula():
    alpha = np.array([0.2, 0.3, 0.5])
    delta = np.array([0.4, -0.1, 0.0])
    w = alpha * np.exp(-0.7 * delta)
    np.testing.assert_allclose(eg_update(alpha, delta, 0.7), w / w.sum(), rtol=1e-14)
    # Moving against Delta: the domain with the most negative Delta gains weight, the largest loses.
    new = eg_update(alpha, delta, 0.7)
    assert new[1] > alpha[1] and new[0] < alpha[0]


def test_projected_update_matches_formula():
    alpha = np.array([0.2, 0.3, 0.5])
    delta = np.array([0.4, -0.1, 0.0])
    # alpha - 0.5 delta = [0, 0.35, 0.5] sums to 0.85: the projection adds 0.05 to each entry (all stay > 0).
    np.testing.assert_allclose(projected_update(alpha, delta, 0.5), [0.05, 0.4, 0.55], atol=1e-15)


def test_eg_update_huge_step_no_overflow():
    alpha = np.full(3, 1 / 3)
    with np.errstate(invalid="raise", divide="raise"):  # NaN would need inf - inf or 0 / 0
        for eta, delta in [(1e6, [1e3, 0.0, -1e3]), (1.0, [1e300, 0.0, -1e300]), (10.0, [1e308, 0.0, -1e308]), (1e10, [1e300, 1e300, 0.0])]:
            new = eg_update(alpha, np.array(delta), eta)
            on_simplex(new)
            idx = int(np.argmin(delta))
            assert new[idx] == pytest.approx(1.0)
        # a tie at the minimum splits in proportion to alpha
        new = eg_update(np.array([0.1, 0.3, 0.6]), np.array([-1e300, -1e300, 1e300]), 1e5)
        np.testing.assert_allclose(new, [0.25, 0.75, 0.0])
        new = projected_update(alpha, np.array([1e308, 0.0, -1e308]), 10.0)
        np.testing.assert_allclose(new, [0.0, 0.0, 1.0])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_update_mixture_stays_on_simplex(data):
    M = data.draw(st.integers(2, 8), label="M")
    raw = data.draw(arrays(np.float64, M, elements=st.floats(0.0, 1.0)), label="alpha_raw")
    alpha = raw / raw.sum() if raw.sum() > 0 else np.full(M, 1.0 / M)
    magnitude = data.draw(st.sampled_from([1e-6, 1.0, 1e3, 1e12, 1e300]), label="scale")
    delta = data.draw(arrays(np.float64, M, elements=st.floats(-1.0, 1.0)), label="delta_unit") * magnitude
    eta = data.draw(st.floats(1e-6, 1e4), label="eta")
    smoothing = data.draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0)), label="smoothing")
    floor = data.draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0 / M)), label="floor")
    rule = data.draw(st.sampled_from(RULES), label="rule")
    new = update_mixture(alpha, delta, rule, eta, smoothing, floor)
    on_simplex(new, floor)
    # once more, from the new point (repeated updates stay put on the simplex too)
    on_simplex(update_mixture(new, -delta, rule, eta, smoothing, floor), floor)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_update_mixture_rejects_nonfinite(rule, bad):
    with pytest.raises(FloatingPointError):
        update_mixture(np.full(3, 1 / 3), np.array([0.1, bad, 0.0]), rule, 1.0)


def test_update_mixture_rejects_unknown_rule_and_bad_settings():
    a = np.full(4, 0.25)
    with pytest.raises(ValueError):
        update_mixture(a, np.zeros(4), "sgd", 1.0)
    with pytest.raises(ValueError):
        update_mixture(a, np.zeros(4), "eg", 1.0, floor=0.3)  # 4 * 0.3 > 1: no simplex point has it
    with pytest.raises(ValueError):
        update_mixture(a, np.zeros(4), "eg", 1.0, smoothing=1.5)


def test_update_mixture_zero_delta_is_fixed_point_and_composition():
    a = np.array([0.1, 0.2, 0.7])
    for rule in RULES:
        np.testing.assert_allclose(update_mixture(a, np.zeros(3), rule, 3.0), a, atol=1e-15)
    delta = np.array([0.3, -0.2, 0.1])
    expected = apply_floor(smooth(eg_update(a, delta, 0.5), 0.1), 0.05)
    np.testing.assert_allclose(update_mixture(a, delta, "eg", 0.5, 0.1, 0.05), expected, rtol=1e-15)
    np.testing.assert_allclose(smooth(a, 0.1), 0.9 * a + 0.1 / 3)
    np.testing.assert_allclose(apply_floor(a, 0.05), 0.05 + 0.85 * a)


# ---------------------------------------------------------------- signals


@pytest.mark.parametrize("seed", range(5))
def test_twin_gap(seed):
    rng = np.random.default_rng(seed)
    lw, lu = rng.normal(size=5), rng.normal(size=5)
    gamma = float(rng.uniform(0.1, 10))
    np.testing.assert_allclose(twin_gap(lw, lu, gamma), gamma * (lw - lu), rtol=1e-15)
    np.testing.assert_allclose(twin_gap(lw, lu, gamma, clip=True), np.minimum(gamma * (lw - lu), 0.0), rtol=1e-15)
    assert np.all(twin_gap(lw, lu, gamma, clip=True) <= 0)


def test_doremi_update_hand_computation():
    alpha = np.array([0.5, 0.3, 0.2])
    proxy = np.array([2.0, 1.5, 3.0])
    ref = np.array([1.5, 1.8, 2.0])
    # excess = max(proxy - ref, 0) = [0.5, 0, 1.0]
    w = np.array([0.5 * np.exp(0.5), 0.3, 0.2 * np.exp(1.0)])
    w /= w.sum()
    expected = (1 - 1e-3) * w + 1e-3 / 3
    np.testing.assert_allclose(doremi_update(alpha, proxy, ref, 1.0, 1e-3), expected, rtol=1e-14)
    # eta scales the exponent
    w2 = alpha * np.exp(2.0 * np.array([0.5, 0.0, 1.0]))
    np.testing.assert_allclose(doremi_update(alpha, proxy, ref, 2.0, 0.0), w2 / w2.sum(), rtol=1e-14)
    # the same step through the generic rule: Delta = clipped twin gap, EG with eta, smoothing
    via_rule = update_mixture(alpha, twin_gap(ref, proxy, 1.0, clip=True), "eg", 1.0, smoothing=1e-3)
    np.testing.assert_allclose(via_rule, expected, rtol=1e-14)
    # huge excess does not overflow
    on_simplex(doremi_update(alpha, np.array([1e4, 0.0, 0.0]), np.zeros(3)))


def test_doge_update_hand_computation():
    alpha = np.array([0.25, 0.25, 0.5])
    scores = np.array([1.0, -2.0, 0.5])
    w = alpha * np.exp(0.3 * scores)
    np.testing.assert_allclose(doge_update(alpha, scores, 0.3), w / w.sum(), rtol=1e-14)


# ---------------------------------------------------------------- update=standardized (TANDEM's default)


def test_standardized_step_by_hand():
    from tandem.mixing.updates import standardized_update

    alpha = np.array([0.5, 0.3, 0.2])
    delta = np.array([0.03, -0.01, 0.01])  # centred: (0.02, -0.02, 0); rms sqrt(0.0008/3)
    c = np.array([0.02, -0.02, 0.0])
    z = c / np.sqrt(np.mean(c**2))
    w = alpha * np.exp(-(0.2 / np.sqrt(16)) * z)
    np.testing.assert_allclose(standardized_update(alpha, delta, eta=0.2, episodes=16), w / w.sum(), rtol=1e-14)
    # a Delta equal across domains carries no information: nothing moves
    np.testing.assert_allclose(standardized_update(alpha, np.full(3, 0.7), eta=0.2, episodes=16), alpha)


def test_standardized_step_does_not_depend_on_any_episodes_scale():
    """Rescaling one episode's Delta (the twins' cosine schedule, another proxy size) or shifting it changes
    nothing: each episode is measured in its own units."""
    from tandem.mixing.evidence import replay
    from tandem.mixing.loop import LoopSpec

    spec = LoopSpec(episodes=12, probe_steps=1, free_steps=1, update="standardized", eta_alpha=0.1)
    rng = np.random.default_rng(0)
    deltas = rng.normal(size=(12, 5)) * 0.01 + np.array([0.01, 0.0, -0.01, 0.0, 0.003])
    alpha = np.full(5, 0.2)
    base_final, base_avg = replay(spec, alpha, deltas)
    assert np.abs(base_final - alpha).max() > 1e-3  # the signal moved the weights
    scaled = deltas * rng.uniform(1e-4, 1e3, size=(12, 1)) + rng.normal(size=(12, 1))  # each episode its own scale
    final, avg = replay(spec, alpha, scaled)
    np.testing.assert_allclose(final, base_final, rtol=1e-9)
    np.testing.assert_allclose(avg, base_avg, rtol=1e-9)


def test_standardized_step_moves_against_consistent_delta_and_noise_only_as_a_random_walk():
    from tandem.mixing.evidence import replay
    from tandem.mixing.loop import LoopSpec

    alpha0 = np.full(6, 1 / 6)
    rng = np.random.default_rng(1)
    for T in (12, 30):
        spec = LoopSpec(episodes=T, probe_steps=1, free_steps=1, update="standardized", eta_alpha=0.1)
        # pure noise: the largest change of any weight stays within 0.05 in at least 95% of 200 replays
        devs = np.array([np.abs(replay(spec, alpha0, rng.normal(size=(T, 6)))[0] - 1 / 6).max() for _ in range(200)])
        assert np.quantile(devs, 0.95) <= 0.05, np.quantile(devs, 0.95)
        assert np.median(devs) > 0.005  # and it is not a rule that never moves
        # a moderate consistent signal (per-episode signal-to-noise 0.6): the domain with negative Delta gains and
        # the positive one loses, in most replays
        signal = np.array([-0.6, 0.6, 0, 0, 0, 0]) * np.sqrt(6 / 5)
        finals = np.array([replay(spec, alpha0, rng.normal(size=(T, 6)) + signal)[0] for _ in range(100)])
        assert np.mean((finals[:, 0] > 1 / 6) & (finals[:, 1] < 1 / 6)) > 0.9
        assert finals[:, 0].mean() > 0.19 and finals[:, 1].mean() < 0.15, finals.mean(axis=0)
    # noiseless evidence: every episode moves a log-weight by at most eta / sqrt(T) x sqrt(M - 1)
    spec = LoopSpec(episodes=12, probe_steps=1, free_steps=1, update="standardized", eta_alpha=0.1)
    from tandem.mixing.loop import next_mixture

    alpha = alpha0
    for _ in range(12):
        new = next_mixture(spec, alpha, 100 * np.array([-1.0, 1.0, 0, 0, 0, 0]))
        logs = np.log(new) - np.log(alpha)
        assert np.ptp(logs) <= 2 * 0.1 / np.sqrt(12) * np.sqrt(5) + 1e-12
        alpha = new
    assert alpha[0] > 0.25 and alpha[1] < 0.11


# ---------------------------------------------------------------- epoch caps


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 8).flatmap(lambda m: st.tuples(
    arrays(np.float64, m, elements=st.floats(0.0, 1.0)), arrays(np.float64, m, elements=st.floats(0.0, 2.0)))))
def test_capped_projection_stays_on_the_simplex_and_respects_every_cap(pair):
    from tandem.mixing.updates import project_capped_simplex

    alpha, caps = pair
    if alpha.sum() <= 0:
        alpha = alpha + 1.0
    if caps.sum() <= 0:
        with pytest.raises(ValueError):
            project_capped_simplex(alpha, caps)
        return
    out = project_capped_simplex(alpha, caps)
    assert np.all(out >= 0) and out.sum() == pytest.approx(1.0)
    if caps.sum() >= 1.0:
        assert np.all(out <= caps + 1e-9)
        # uncapped domains keep their ratios
        a = alpha / alpha.sum()
        free = out < caps - 1e-9
        if free.sum() >= 2:
            i, j = np.nonzero(free)[0][:2]
            if a[j] > 1e-9 and out[j] > 1e-12:
                assert out[i] / out[j] == pytest.approx(a[i] / a[j], rel=1e-6)
    else:
        np.testing.assert_allclose(out, caps / caps.sum())


def test_capped_projection_moves_the_excess_to_the_others():
    from tandem.mixing.updates import project_capped_simplex

    out = project_capped_simplex(np.array([0.5, 0.3, 0.2]), np.array([0.1, 1.0, 1.0]))
    np.testing.assert_allclose(out, [0.1, 0.9 * 0.6, 0.9 * 0.4])
    np.testing.assert_allclose(project_capped_simplex(np.array([0.2, 0.3, 0.5]), np.array([1.0, 1.0, 1.0])), [0.2, 0.3, 0.5])
