"""A convex bed with a finite, MEMORISED domain: TANDEM's default path held to the brute-force bi-level optimum.

`ConvexBed.make_memorised` has three linear-regression domains of 400, 400 and 12 train rows in 30 dimensions
(the third has fewer rows than dimensions: the inner problem can fit it exactly, noise and all), a small ridge,
validation data drawn from every domain's distribution (uniform target), and fresh held-out rows of every domain.

Why the place of measurement decides the answer (ALGORITHM.md, "Where Delta is measured"): the penalty form

    H(alpha, w) = L_val(w) + gamma (L_train(alpha, w) - min_u L_train(alpha, u)),  L_train = sum_i alpha_i l_i + ridge

depends on alpha only through L_train, and the min term is concave in alpha, so by Danskin's theorem
dH/dalpha_i = gamma (l_i(w) - l_i(u*)) with l_i the loss on the rows the inner problem TRAINS on. With the twins at
their minimisers, w - u* ~ -H^-1 g_val / gamma, so that gap tends, as gamma grows, to the exact hypergradient
-g_val^T H^-1 g_i of the bi-level problem. The same gap on held-out rows differentiates another problem (unlimited
fresh data per domain): for the memorised domain it credits fresh data that more weight cannot supply (more weight
only repeats its 12 rows), so it asks for more of that domain where the bi-level answer asks for less.

The loop here is the library's own `run_loop` with TANDEM's default mixture step (`standardized`, eta_alpha =
STANDARDIZED_ETA) and exact (full-batch) losses, so Delta has no sampling noise: what is checked is the mechanism.
"""

from __future__ import annotations

import numpy as np
import pytest

from tandem.mixing.loop import LoopSpec, LoopState, run_loop
from tandem.mixing.methods import STANDARDIZED_ETA
from tandem.mixing.toy import ConvexBed, ConvexProblem, LinearTwin

UNIFORM = np.full(3, 1.0 / 3.0)
MEMORISED = 2  # index of the 12-row domain

# gamma for the whole-loop test. On the train rows Delta = gamma (l_i(w*) - l_i(u*)) = hypergradient_i
# + (1 / (2 gamma)) v^T H_i v + O(1/gamma^2), v = H^-1 g_val, so the loop settles where the centred Delta vanishes:
# the penalty problem's stationary point, O(1/gamma) from the bi-level optimum. Solved with exact minimisers on these
# beds that point is L1 0.004-0.005 from the optimum at gamma 10 (0.006-0.010 at gamma 5), an order of magnitude
# inside the tolerance below; 10 is also the gamma of ALGORITHM.md's table. A larger gamma costs nothing more here
# (the step size below is stable for every gamma >= 1 and the reference's curvature H + H_val / gamma only gets
# better conditioned), but brings nothing the tolerance could see.
GAMMA = 10.0
# Long probes: the twins come within ~1e-3 of their minimisers in each probe (per-step contraction 1 - mu/L ~ 0.93 on
# these beds), so Delta is the penalty gradient at the twins' optima, not a few-step (DoGE-like) first-order signal.
PROBE_STEPS = 100
FREE_STEPS = 20  # the mixture moves by at most ~1% per episode: a few steps keep the proxy on theta*(alpha)
WARMUP_STEPS = 2000  # the proxy starts from theta = 0; 2000 steps put it on theta*(uniform) to machine precision
# The standardized step moves log-weights by eta / sqrt(T) per episode, so a consistent signal travels at most
# eta sqrt(T) in all (1.4 at eta = STANDARDIZED_ETA = 0.08, T = 300): the optimum is ~1.2 away in centred log-weights
# and the path is not straight. Measured at eta 0.08: within L1 0.05 of the optimum by episode 136 and 145, within
# 0.01 by 155 and 165 (seeds 0 and 3); at eta 0.06 by episode 181 (seed 0). A much smaller default eta would need
# more episodes here.
EPISODES = 300

# Tolerances of the whole-loop test, met by the mechanism with an order of magnitude to spare (measured final L1 0.004
# and 0.006, relative excess loss 3e-6 and 1e-5) and failed by uniform (L1 0.445 / 0.494, relative excess 5.0% / 7.9%).
TOL_L1 = 0.05  # L1 distance between the final mixture and the brute-force optimum
TOL_REL = 0.005  # relative excess outer loss, (L(alpha) - L*) / L*


def centred(v: np.ndarray) -> np.ndarray:
    """What every mixture rule sees: each rule ignores a constant added to all Delta_i."""
    v = np.asarray(v, dtype=np.float64)
    return v - v.mean()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def step_size(bed: ConvexBed) -> float:
    """1 / L, L the largest eigenvalue of sum_i H_i + lam I + sum_j t_j H_val,j.

    Since alpha_i <= 1 and 1 / gamma <= 1 for gamma >= 1, L bounds the curvature of the proxy's objective
    (sum_i alpha_i H_i + lam I) and of the reference's (the same + H_val / gamma) for every mixture: plain gradient
    descent at 1 / L contracts monotonically toward each twin's minimiser.
    """
    A = sum(X.T @ X / len(X) for X in bed.Xtr) + bed.lam * np.eye(bed.dim)
    A = A + sum(t * X.T @ X / len(X) for t, X in zip(bed.target, bed.Xva))
    return 1.0 / float(np.linalg.eigvalsh(A).max())


def tandem_spec(episodes: int, gamma: float) -> LoopSpec:
    """TANDEM's default path: the standardized step at the library's default eta, a twin reference, synchronised."""
    return LoopSpec(
        episodes=episodes, probe_steps=PROBE_STEPS, free_steps=FREE_STEPS, warmup_steps=WARMUP_STEPS, gamma=gamma,
        eta_alpha=STANDARDIZED_ETA, update="standardized", reference="twin", sync=True,
    )


def run(bed: ConvexBed, spec: LoopSpec, measure: str) -> LoopState:
    lr = step_size(bed)
    return run_loop(spec, ConvexProblem(bed, measure), LinearTwin(bed, lr), LinearTwin(bed, lr), LoopState(UNIFORM.copy()))


def first_delta(bed: ConvexBed, gamma: float, measure: str) -> np.ndarray:
    """Centred Delta of one episode of the loop at uniform (after the warm-up), measured on `measure` rows."""
    state = run(bed, tandem_spec(1, gamma), measure)
    return centred(state.history[0].delta)


def penalty_gap(bed: ConvexBed, alpha: np.ndarray, gamma: float, measure: str) -> np.ndarray:
    """gamma (l_i(w*) - l_i(u*)) with both twins at their exact minimisers (closed form): u* = theta*(alpha),
    w* = argmin L_train(alpha, w) + L_val(w) / gamma (ridge included in both)."""
    u = bed.inner_solution(alpha)
    A = bed.hessian(alpha) + sum(t * X.T @ X / len(X) for t, X in zip(bed.target, bed.Xva)) / gamma
    b = sum(a * X.T @ y / len(y) for a, X, y in zip(alpha, bed.Xtr, bed.ytr))
    b = b + sum(t * X.T @ y / len(y) for t, X, y in zip(bed.target, bed.Xva, bed.yva)) / gamma
    w = np.linalg.solve(A, b)
    losses = bed.train_losses if measure == "train" else bed.held_losses
    return gamma * (losses(w) - losses(u))


# Two beds (seeds) with different sign patterns of the hypergradient at uniform: seed 0 (+, -, +), seed 3 (-, -, +),
# the pattern of ALGORITHM.md's table. In both the memorised domain's centred hypergradient is positive.
@pytest.fixture(scope="module", params=[0, 3])
def memorised(request):
    bed = ConvexBed.make_memorised(seed=request.param)
    a_star, l_star = bed.brute_force(60, refine=2)  # grid step 1/60, refined twice: ~2e-4
    return bed, a_star, l_star


@pytest.fixture(scope="module")
def loops(memorised):
    """The whole default loop from uniform, with Delta on the train rows (the default) and on held-out rows."""
    bed = memorised[0]
    spec = tandem_spec(EPISODES, GAMMA)
    return {measure: run(bed, spec, measure) for measure in ("train", "held")}


# ---------------------------------------------------------------- the bed itself


def test_bed_has_a_memorised_domain_and_an_interior_optimum(memorised):
    bed, a_star, l_star = memorised
    assert [len(y) for y in bed.ytr] == [400, 400, 12] and bed.dim == 30 and bed.lam > 0
    assert all(len(y) == 2000 for y in bed.yho)
    # memorised: with all the weight the inner solution fits the 12 rows (nearly) exactly, noise and all, and does
    # far worse on fresh rows of the same domain
    theta = bed.inner_solution(np.array([0.0, 0.0, 1.0]))
    assert bed.train_losses(theta)[MEMORISED] < 1e-3
    assert bed.held_losses(theta)[MEMORISED] > 100 * bed.train_losses(theta)[MEMORISED]
    # the optimum is interior, gives the memorised domain a clearly finite share below uniform, and is a real one
    assert np.all(a_star > 0.03) and a_star[MEMORISED] < 1 / 3 - 0.1
    assert bed.outer_loss(a_star) == pytest.approx(l_star)
    rng = np.random.default_rng(0)
    for _ in range(30):
        d = centred(rng.normal(size=3))
        assert bed.outer_loss(a_star + 1e-3 * d / np.abs(d).max()) >= l_star - 1e-12
    # more weight on the memorised domain helps only up to its optimum share, then hurts, monotonically
    shares = np.linspace(a_star[MEMORISED], 0.9, 12)
    rest = a_star[:2] / a_star[:2].sum()
    losses = [bed.outer_loss(np.array([*(1 - s) * rest, s])) for s in shares]
    assert np.all(np.diff(losses) > 0)
    # uniform is clearly off: outside both tolerances of the whole-loop test
    assert np.abs(UNIFORM - a_star).sum() > 5 * TOL_L1
    assert bed.outer_loss(UNIFORM) / l_star - 1 > 5 * TOL_REL


def test_ridge_enters_the_inner_solution_and_the_twins_alike():
    """The proxy's gradient descent converges to inner_solution (ridge included) and the reference to the penalty
    minimiser; with a ridge large enough to matter, dropping it anywhere would move the answer visibly."""
    bed = ConvexBed.make_memorised(seed=1, lam=0.5, dim=12, sizes=(60, 60, 5), n_valid=200, n_held=200)
    alpha = np.array([0.1, 0.2, 0.7])
    lr = step_size(bed)
    proxy, reference = LinearTwin(bed, lr), LinearTwin(bed, lr)
    problem = ConvexProblem(bed)
    for _ in range(3000):
        proxy.step([problem.train_part(alpha)])
        reference.step([problem.train_part(alpha)], valid=[problem.valid_part()], valid_scale=1.0 / GAMMA)
    theta = bed.inner_solution(alpha)
    assert np.linalg.norm(proxy.theta - theta) < 1e-9 * np.linalg.norm(theta)
    bare = ConvexBed(bed.Xtr, bed.ytr, bed.Xva, bed.yva, bed.target)  # the same rows, no ridge
    assert np.linalg.norm(bare.inner_solution(alpha) - theta) > 1e-2 * np.linalg.norm(theta)
    # the reference's gap is the closed-form penalty gap, on train rows and on held-out rows
    for measure in ("train", "held"):
        measured = GAMMA * (reference.domain_losses(measure) - proxy.domain_losses(measure))
        np.testing.assert_allclose(measured, penalty_gap(bed, alpha, GAMMA, measure), rtol=1e-7, atol=1e-10)


def test_markers_and_defaults():
    """Train rows are the default place of measurement; held-out rows need a bed that has them."""
    bed = ConvexBed.make(seed=0)
    assert ConvexProblem(bed).held_batches() == ["train"] and bed.lam == 0 and not bed.Xho
    twin = LinearTwin(bed, 0.1, theta=np.ones(bed.dim))
    np.testing.assert_array_equal(twin.domain_losses("train"), bed.train_losses(twin.theta))
    np.testing.assert_array_equal(twin.domain_losses(None), bed.train_losses(twin.theta))
    with pytest.raises(ValueError):
        ConvexProblem(bed, "held")
    with pytest.raises(ValueError):
        twin.domain_losses("held")
    with pytest.raises(ValueError):
        twin.domain_losses("valid")
    mem = ConvexBed.make_memorised(seed=0)
    assert ConvexProblem(mem, "held").held_batches() == ["held"]


# ---------------------------------------------------------------- (a) the exact hypergradient


@pytest.mark.parametrize("alpha", [UNIFORM, np.array([0.45, 0.45, 0.10]), np.array([0.05, 0.05, 0.90])])
def test_hypergradient_matches_finite_differences(memorised, alpha):
    bed = memorised[0]
    eps = 1e-5
    fd = np.array([(bed.outer_loss(alpha + eps * e) - bed.outer_loss(alpha - eps * e)) / (2 * eps) for e in np.eye(3)])
    hyper = bed.hypergradient(alpha)
    np.testing.assert_allclose(hyper, fd, rtol=1e-5, atol=1e-8)
    assert np.linalg.norm(centred(hyper)) > 0.05  # not a trivially flat point


# ---------------------------------------------------------------- (b) train rows vs held-out rows at uniform


def test_train_row_delta_has_the_hypergradients_signs_held_out_delta_does_not(memorised):
    bed = memorised[0]
    hyper = centred(bed.hypergradient(UNIFORM))
    # the sign comparison means something: every entry clearly away from 0, and more weight on the memorised
    # domain hurts at uniform (as in ALGORITHM.md's table: its centred hypergradient is positive)
    assert np.all(np.abs(hyper) > 0.2 * np.sqrt(np.mean(hyper**2)))
    assert hyper[MEMORISED] > 0
    train = first_delta(bed, GAMMA, "train")
    held = first_delta(bed, GAMMA, "held")
    np.testing.assert_array_equal(np.sign(train), np.sign(hyper))
    assert cosine(train, hyper) > 0.99
    # the loop's probes reach the twins' minimisers: its Delta is the closed-form penalty gap
    np.testing.assert_allclose(train, centred(penalty_gap(bed, UNIFORM, GAMMA, "train")), rtol=1e-3, atol=1e-4)
    # the documented failure mode: held-out rows credit the memorised domain for fresh data that more weight on
    # its 12 rows cannot supply, so its Delta comes out negative (more weight) where the bi-level answer is less
    assert held[MEMORISED] < -0.1 * np.linalg.norm(held)
    assert cosine(held, hyper) < 0.5


# ---------------------------------------------------------------- (c) the whole default loop reaches the optimum


def test_default_loop_reaches_the_brute_force_optimum(memorised, loops):
    bed, a_star, l_star = memorised
    state = loops["train"]
    alpha = state.alpha  # the final mixture: the standardized step keeps moving at eta / sqrt(T) per episode and
    # hovers within ~0.01 of its fixed point; the episode average also remembers the road from uniform
    assert len(state.history) == EPISODES
    assert abs(alpha.sum() - 1) < 1e-12 and np.all(alpha >= 0)
    l1 = float(np.abs(alpha - a_star).sum())
    rel = (bed.outer_loss(alpha) - l_star) / l_star
    assert l1 < TOL_L1, (alpha, a_star, l1)
    assert rel < TOL_REL, (alpha, a_star, rel)
    # the test could fail: staying at uniform breaks both tolerances
    assert np.abs(UNIFORM - a_star).sum() > TOL_L1 and bed.outer_loss(UNIFORM) / l_star - 1 > TOL_REL
    # and it got there the right way: the memorised domain's weight went down from the first episode on
    assert state.history[0].alpha[MEMORISED] < 1 / 3
    assert np.abs(state.history[0].alpha - a_star).sum() < np.abs(UNIFORM - a_star).sum()


# ---------------------------------------------------------------- (d) the same loop on held-out rows


def test_held_out_delta_loop_moves_the_memorised_domain_the_wrong_way(memorised, loops):
    bed, a_star, l_star = memorised
    train, held = loops["train"].alpha, loops["held"].alpha
    # the memorised domain's optimum share is below uniform; the held-out loop raises it above uniform instead
    assert a_star[MEMORISED] < 1 / 3 < held[MEMORISED]
    assert held[MEMORISED] > train[MEMORISED] + 0.2
    # and ends farther from the optimum, with a worse outer loss than the train-row loop and even than uniform
    assert np.abs(held - a_star).sum() > 10 * np.abs(train - a_star).sum()
    assert np.abs(held - a_star).sum() > 5 * TOL_L1
    assert bed.outer_loss(held) > bed.outer_loss(UNIFORM) > bed.outer_loss(train)


# ---------------------------------------------------------------- (e) gamma matters the documented way


def test_larger_gamma_brings_train_row_delta_to_the_hypergradient(memorised):
    bed = memorised[0]
    hyper = centred(bed.hypergradient(UNIFORM))
    d1, d10, d20 = (first_delta(bed, g, "train") for g in (1.0, 10.0, 20.0))
    err = {g: float(np.linalg.norm(d - hyper)) for g, d in ((1, d1), (10, d10), (20, d20))}
    assert err[10] < 0.5 * err[1], err
    assert cosine(d10, hyper) > cosine(d1, hyper)
    # the gap closes as 1/gamma (the curvature term (1 / (2 gamma)) v^T H_i v): doubling gamma halves it
    assert 1.6 < err[10] / err[20] < 2.4, err
