"""The one mixture loop (tandem.mixing.loop.run_loop) on the convex test bed, where the answer is known.

ConvexProblem + LinearTwin stand in for the language-model problem and twins, so these tests check the
same code path that mixes LM data: TANDEM reaches the brute-force bi-level optimum, stays at uniform
when there is no generalisation gap, and reduces to DoReMi / DoGE under the corresponding settings.
"""

from __future__ import annotations

import numpy as np
import pytest

from tandem.mixing.loop import LoopSpec, LoopState, run_loop
from tandem.mixing.toy import ConvexBed, ConvexProblem, LinearTwin
from tandem.mixing.updates import doremi_update

ETA = {"eg": 0.5, "projected": 0.1}
OPTIMUM = np.array([0.55, 0.3, 0.15])


def lam_max(bed: ConvexBed) -> float:
    """Largest curvature of any domain's train loss: max eigenvalue of X^T X / n."""
    return max(float(np.linalg.eigvalsh(X.T @ X / len(X)).max()) for X in bed.Xtr)


def run(bed: ConvexBed, spec: LoopSpec, lr: float, alpha0: np.ndarray | None = None):
    proxy, reference = LinearTwin(bed, lr), LinearTwin(bed, lr)
    alpha0 = np.full(bed.num_domains, 1.0 / bed.num_domains) if alpha0 is None else alpha0
    state = run_loop(spec, ConvexProblem(bed), proxy, reference, LoopState(alpha0.copy()))
    return state, proxy, reference


def penalty_reference_solution(bed: ConvexBed, alpha: np.ndarray, gamma: float) -> np.ndarray:
    """argmin_w L_val(w) + gamma L_train(alpha, w), in closed form (what an unsynchronised reference tracks)."""
    A = sum(gamma * a * X.T @ X / len(X) for a, X in zip(alpha, bed.Xtr))
    A = A + sum(t * X.T @ X / len(X) for t, X in zip(bed.target, bed.Xva))
    b = sum(gamma * a * X.T @ y / len(X) for a, X, y in zip(alpha, bed.Xtr, bed.ytr))
    b = b + sum(t * X.T @ y / len(X) for t, X, y in zip(bed.target, bed.Xva, bed.yva))
    return np.linalg.solve(A, b)


@pytest.fixture(scope="module")
def bed_interior():
    bed = ConvexBed.make(optimum=OPTIMUM, seed=0, misfit=0.3)
    return bed, *bed.brute_force(100)


@pytest.fixture(scope="module")
def bed_boundary():
    bed = ConvexBed.make(optimum=OPTIMUM, seed=0, misfit=1.0)
    return bed, *bed.brute_force(100)


def tandem_spec(rule: str, gamma: float = 8.0, episodes: int = 60, **kw) -> LoopSpec:
    k = int(20 * (gamma + 1))
    return LoopSpec(episodes=episodes, probe_steps=k, free_steps=k, warmup_steps=2000, gamma=gamma, eta_alpha=ETA[rule], update=rule, **kw)


# ---------------------------------------------------------------- brute force itself


def test_brute_force_is_a_local_optimum(bed_interior):
    bed, a_star, l_star = bed_interior
    assert abs(a_star.sum() - 1) < 1e-12 and np.all(a_star >= 0)
    assert l_star == pytest.approx(bed.outer_loss(a_star))
    rng = np.random.default_rng(0)
    for _ in range(50):
        d = rng.normal(size=3)
        d -= d.mean()
        a = a_star + 1e-3 * d / np.abs(d).max()
        assert bed.outer_loss(a) >= l_star - 1e-12
    # the target mixture is genuinely away from uniform, so reaching it is not trivial
    uniform = np.full(3, 1 / 3)
    assert bed.outer_loss(uniform) > 1.05 * l_star
    assert np.abs(uniform - a_star).sum() > 0.2


# ---------------------------------------------------------------- acceptance: the bi-level optimum


@pytest.mark.parametrize("rule", ["eg", "projected"])
@pytest.mark.parametrize("which", ["interior", "boundary"])
def test_tandem_reaches_brute_force_optimum(rule, which, bed_interior, bed_boundary):
    bed, a_star, l_star = bed_interior if which == "interior" else bed_boundary
    gamma = 8.0
    lr = 1.0 / (lam_max(bed) * (gamma + 1))
    state, _, _ = run(bed, tandem_spec(rule, gamma), lr)
    alpha = state.alpha
    rel = (bed.outer_loss(alpha) - l_star) / l_star
    l1 = np.abs(alpha - a_star).sum()
    assert abs(alpha.sum() - 1) < 1e-9 and np.all(alpha >= 0)
    assert rel < 0.005, (alpha, a_star, rel)
    assert l1 < 0.05, (alpha, a_star, l1)
    assert len(state.history) == 60
    # it got there from uniform, and the first update already moved in the right direction
    first = state.history[0].alpha
    assert np.abs(first - a_star).sum() < np.abs(np.full(3, 1 / 3) - a_star).sum()


# ---------------------------------------------------------------- no generalisation gap: stay uniform


@pytest.mark.parametrize("rule", ["eg", "projected"])
def test_no_generalisation_gap_stays_uniform(rule):
    bed = ConvexBed.make(same_distribution=True, n_train=10000, n_valid=10000, seed=0)
    gamma = 1.0
    lr = 1.0 / (lam_max(bed) * (gamma + 1))
    state, _, _ = run(bed, tandem_spec(rule, gamma, episodes=30), lr)
    traj = np.array([r.alpha for r in state.history])
    assert np.abs(traj - 1 / 3).max() < 0.02, traj
    # Delta really is ~0 (not just a tiny step size): compare with the gap on a bed that has one
    deltas = np.array([r.delta for r in state.history])
    assert np.abs(deltas - deltas.mean(axis=1, keepdims=True)).max() < 0.05


# ---------------------------------------------------------------- synchronisation


def test_synchronisation_keeps_twins_close():
    """Sync keeps ||w - u|| at the probe scale; without it the reference drifts to its own optimum.

    In the convex bed the unsynchronised reference does not explode: it converges to
    argmin L_val + gamma L_train(alpha), so its distance to the proxy grows from the probe scale to that
    (bounded) gap and stays there. The divergence the paper reports is a non-convex (LM) phenomenon.
    """
    bed = ConvexBed.make(optimum=OPTIMUM, seed=0, misfit=0.3)
    gamma = 1.0
    lr = 0.1 / (lam_max(bed) * (gamma + 1))  # short probes that do not converge within an episode
    common = dict(episodes=100, probe_steps=2, free_steps=100, warmup_steps=20000, gamma=gamma, eta_alpha=0.5, update="eg")
    synced, _, _ = run(bed, LoopSpec(sync=True, **common), lr)
    unsynced, proxy, reference = run(bed, LoopSpec(sync=False, **common), lr)
    d_sync = np.array([r.distance for r in synced.history])
    d_free = np.array([r.distance for r in unsynced.history])
    assert d_sync[0] == pytest.approx(d_free[0])  # same start: both references were just copied from u
    assert d_sync.max() <= 2 * d_sync[0]
    assert d_free[-1] > 4 * d_free[0]
    assert d_free[-1] > 8 * d_sync[-1]
    # bounded: the unsynced reference sits at the penalty optimum for the current mixture
    alpha = unsynced.alpha
    w_star = penalty_reference_solution(bed, alpha, gamma)
    gap = np.linalg.norm(w_star - bed.inner_solution(alpha))
    assert d_free.max() <= 1.05 * gap
    assert np.linalg.norm(reference.theta - w_star) < 0.05 * gap


# ---------------------------------------------------------------- determinism


def test_same_bed_and_spec_give_identical_trajectories():
    spec = tandem_spec("eg", 8.0, episodes=15)
    trajs = []
    for _ in range(2):
        bed = ConvexBed.make(optimum=OPTIMUM, seed=0, misfit=0.3)
        lr = 1.0 / (lam_max(bed) * 9)
        state, proxy, _ = run(bed, spec, lr)
        trajs.append((np.array([r.alpha for r in state.history]), np.array([r.delta for r in state.history]), proxy.theta))
    for a, b in zip(*trajs):
        np.testing.assert_array_equal(a, b)
    assert np.abs(trajs[0][0][-1] - 1 / 3).max() > 0.05  # the trajectory is not trivially constant


# ---------------------------------------------------------------- DoReMi as a setting of the loop


def test_doremi_is_frozen_unsynced_clipped_loop(bed_interior):
    bed = bed_interior[0]
    lr = 1.0 / lam_max(bed)
    # the reference: trained beforehand (to convergence) on a fixed mixture, then frozen
    ref_mixture = np.array([0.7, 0.2, 0.1])
    theta_ref = bed.inner_solution(ref_mixture)
    proxy, reference = LinearTwin(bed, lr), LinearTwin(bed, lr, theta=theta_ref)
    spec = LoopSpec(episodes=40, probe_steps=1, free_steps=0, reference="frozen", sync=False, clip=True, gamma=1.0, eta_alpha=1.0, smoothing=1e-3, update="eg")
    alpha0 = np.full(3, 1 / 3)
    state = run_loop(spec, ConvexProblem(bed), proxy, reference, LoopState(alpha0.copy()))
    np.testing.assert_array_equal(reference.theta, theta_ref)  # frozen: never stepped, never synced
    prev = alpha0
    clipped = 0
    for rec in state.history:
        np.testing.assert_allclose(rec.reference_losses, bed.train_losses(theta_ref), rtol=1e-15)
        expected = doremi_update(prev, rec.proxy_losses, rec.reference_losses, 1.0, 1e-3)
        np.testing.assert_allclose(rec.alpha, expected, atol=1e-12, rtol=0)
        clipped += int(np.any(rec.proxy_losses < rec.reference_losses))
        prev = rec.alpha
    assert proxy.step_count == 40
    # non-trivial: the clip was active at some point (the proxy beat the reference on a domain) ...
    assert clipped > 0
    # ... and the weights moved: on a convex bed the minimax game drives the proxy onto the reference,
    # i.e. the mixture onto the one the reference was trained with.
    assert np.abs(state.alpha - ref_mixture).sum() < 0.02, state.alpha


# ---------------------------------------------------------------- DoGE to first order


def doge_probe(bed: ConvexBed, theta: np.ndarray, alpha0: np.ndarray, lr: float, variant: str):
    """One episode of the loop from proxy = theta; returns the new state."""
    if variant == "twin":  # TANDEM with K = 1, gamma = 1: both twins step, the gap isolates the validation step
        spec = LoopSpec(episodes=1, probe_steps=1, free_steps=0, gamma=1.0, reference="twin", probe_proxy=True, eta_alpha=1.0)
    else:  # DoGE's own probe: the reference takes one validation step from u, the proxy stays
        spec = LoopSpec(episodes=1, probe_steps=1, free_steps=0, gamma=1.0, reference="valid", probe_proxy=False, eta_alpha=1.0)
    proxy, reference = LinearTwin(bed, lr, theta=theta), LinearTwin(bed, lr)
    return run_loop(spec, ConvexProblem(bed), proxy, reference, LoopState(alpha0.copy()))


@pytest.mark.parametrize("variant", ["twin", "valid"])
@pytest.mark.parametrize("seed", [0, 1])
def test_doge_first_order(variant, seed, bed_interior):
    bed = bed_interior[0]
    rng = np.random.default_rng(seed)
    theta = bed.inner_solution(rng.dirichlet(np.ones(3))) + 0.5 * rng.normal(size=bed.dim)
    alpha0 = rng.dirichlet(np.ones(3))
    # DoGE's score at the point where the gradients are taken (theta itself)
    scores = bed.train_grads(theta) @ (bed.target @ bed.valid_grads(theta))

    def rel_error(lr: float) -> tuple[float, np.ndarray]:
        state = doge_probe(bed, theta, alpha0, lr, variant)
        delta, expected = state.history[0].delta, -lr * scores
        return float(np.linalg.norm(delta - expected) / np.linalg.norm(expected)), state

    lr = 1e-4
    err, state = rel_error(lr)
    delta, expected = state.history[0].delta, -lr * scores
    assert err < 0.05, (delta, expected)
    centred = lambda x: x - x.mean()  # noqa: E731 - what either rule actually sees
    assert np.linalg.norm(centred(delta) - centred(expected)) / np.linalg.norm(centred(expected)) < 0.05
    # the residual is second order: ten times the step, about ten times the relative error
    err10, _ = rel_error(10 * lr)
    assert 5 < err10 / err < 20, (err, err10)
    # so the mixture step is DoGE's step with eta_DoGE = eta_alpha * lr (EG rule)
    doge = alpha0 * np.exp(lr * scores)
    np.testing.assert_allclose(state.alpha, doge / doge.sum(), rtol=1e-3)
