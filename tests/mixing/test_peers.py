"""The peers' updates, each checked against an independent route from its paper's equations, and each method run
end to end (resumable, on the simplex) on a tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.mixing import online, peers
from tandem.mixing.optimize import optimize

# --- ODM --------------------------------------------------------------------------------------------------------------


def test_odm_exp3_probabilities_match_the_papers_formula():
    """EXP3 written out by hand: w_i = exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j), pi = (1 - K eps_t) w + eps_t."""
    K = 4
    R = np.array([3.0, 10.0, -2.0, 0.5])
    for t in (1, 2, 7, 100, 10_000):
        eps_t = min(1 / K, math.sqrt(math.log(K) / (K * t)))
        eps_prev = min(1 / K, math.sqrt(math.log(K) / (K * max(t - 1, 1))))
        num = [math.exp(eps_prev * r) for r in R]
        expected = [(1 - K * eps_t) * x / sum(num) + eps_t for x in num]
        assert peers.odm_epsilon(K, t) == pytest.approx(eps_t)
        got = peers.odm_probabilities(R, eps_prev, eps_t)
        assert got == pytest.approx(expected, rel=1e-12)
        assert got.sum() == pytest.approx(1.0) and got.min() >= eps_t - 1e-15


def test_odm_rewards_are_importance_weighted_moving_averages():
    R = np.array([1.0, 2.0, 3.0])
    pi = np.array([0.5, 0.25, 0.25])
    observed = np.array([4.0, np.nan, 2.0])  # domain 1 not drawn this step
    got = peers.odm_rewards(R, observed, pi, smoothing=0.9)
    assert got[0] == pytest.approx(0.9 * 1.0 + 0.1 * 4.0 / 0.5)
    assert got[1] == 2.0  # unobserved: unchanged
    assert got[2] == pytest.approx(0.9 * 3.0 + 0.1 * 2.0 / 0.25)


def test_odm_equalises_loss_per_probability_under_constant_losses():
    """With constant losses the importance-weighted rewards settle where L_i / pi_i is equal, i.e. pi ~ L: an ODM-style
    update stays near the loss-proportional mixture instead of running to one domain (what a Hedge on cumulative
    losses did)."""
    rng = np.random.default_rng(0)
    L = np.array([2.0, 3.0, 4.0, 5.0])
    K, R, pi = 4, np.zeros(4), np.full(4, 0.25)
    for t in range(1, 3000):
        picks = rng.choice(K, size=8, p=pi)
        observed = np.where(np.bincount(picks, minlength=K) > 0, L, np.nan)
        R = peers.odm_rewards(R, observed, pi, 0.9)
        pi = peers.odm_probabilities(R, peers.odm_epsilon(K, max(t - 1, 1)), peers.odm_epsilon(K, t))
    assert pi.max() < 0.45 and pi.min() > 0.1


def test_odm_released_updater_by_hand():
    """ODM's released SmoothedMeanWeightUpdater, written out: est_i <- s est_i + (1 - s) exp(L_i) for each sampled
    domain (no importance weight), p = (1 - K eps_t) est / sum(est) + eps_t."""
    K, s = 3, 0.9
    est = np.array([0.0, 5.0, 0.0])
    observed = np.array([2.0, np.nan, 1.0])  # domain 1 not drawn this step
    got = peers.odm_smoothed_rewards(est, observed, s)
    expected = [0.1 * math.exp(2.0), 5.0, 0.1 * math.exp(1.0)]
    assert got == pytest.approx(expected, rel=1e-12)
    eps = min(1 / K, math.sqrt(math.log(K) / (K * 2001)))
    total = sum(expected)
    p = [(1 - K * eps) * e / total + eps for e in expected]
    assert peers.odm_smoothed_probabilities(got, eps) == pytest.approx(np.array(p) / sum(p), rel=1e-12)
    assert peers.odm_smoothed_probabilities(np.zeros(K), eps) == pytest.approx(np.full(K, 1 / K))


def _odm_under_fixed_losses(updater: str, L: np.ndarray, steps: int = 300) -> np.ndarray:
    """The ODM policy's probabilities after `steps` steps in which every domain is drawn and has a fixed loss."""
    K, est, pi = len(L), np.zeros(len(L)), np.full(len(L), 1 / len(L))
    for t in range(1, steps + 1):
        if updater == "smoothed_mean":
            est = peers.odm_smoothed_rewards(est, L, 0.9)
            pi = peers.odm_smoothed_probabilities(est, peers.odm_epsilon(K, t + 1))
        else:
            est = peers.odm_rewards(est, L, pi, 0.9)
            pi = peers.odm_probabilities(est, peers.odm_epsilon(K, t), peers.odm_epsilon(K, t + 1))
    return pi


def test_odm_default_is_the_released_updater_where_it_differs_from_the_papers():
    """Fixed losses 5.5-7.0 over 300 steps: the released updater ends at (1 - K eps) exp(L) / sum exp(L) + eps
    (0.09-0.28), far from uniform; the paper's importance-weighted form feeds back towards uniform (its reward L / p
    grows as p shrinks: 0.157-0.176)."""
    from tandem.config import ODMConfig

    L = np.linspace(5.5, 7.0, 6)
    released = _odm_under_fixed_losses("smoothed_mean", L)
    paper = _odm_under_fixed_losses("exp3", L)
    eps = math.sqrt(math.log(6) / (6 * 301))
    by_hand = (1 - 6 * eps) * np.exp(L) / np.exp(L).sum() + eps
    assert released == pytest.approx(by_hand, abs=1e-6)
    assert released.min() < 0.09 and released.max() > 0.28
    assert paper.max() - paper.min() < 0.05
    assert ODMConfig().updater == "smoothed_mean"


# --- Aioli -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("one_hot_factor", [1.0, 0.75, 0.5])
def test_aioli_recovers_a_known_interaction_matrix_from_a_linear_toy(one_hot_factor):
    """A linear mixing law: training on mixture p lowers the losses by exactly A_true p per step. Aioli's probes
    (smoothed one-hot mixtures, chained before/after losses, averaged sweeps) then unmix to A_true."""
    M = 4
    rng = np.random.default_rng(1)
    A_true = rng.uniform(0.0, 1.0, size=(M, M)) + np.eye(M)
    losses = np.full(M, 10.0)
    P = peers.aioli_probe_mixtures(M, one_hot_factor)
    assert np.allclose(P.sum(axis=0), 1.0) and np.allclose(np.diag(P), one_hot_factor)
    B = np.zeros((M, M))
    sweeps = 2
    for _ in range(sweeps):
        for j in rng.permutation(M):
            before = losses.copy()
            losses = losses - A_true @ P[:, j] * 0.01  # one probe: lp_steps of a linear law
            B[:, j] += before - losses
    A = peers.aioli_unmix(B / sweeps, one_hot_factor) / 0.01
    assert np.allclose(A, A_true, atol=1e-9)
    # normalised as Aioli does, the update follows the column sums
    An = peers.aioli_normalise(A)
    assert An.sum() == pytest.approx(1.0) and An.min() >= 0
    p = peers.aioli_update(np.full(M, 1 / M), An, eta=1.0)
    expected = np.exp(An.sum(axis=0))
    assert p == pytest.approx(expected / expected.sum())


def test_aioli_normalise_shifts_negatives_then_divides_by_the_total():
    A = np.array([[1.0, -1.0], [0.5, 2.0]])
    shifted = A + 1.0
    assert peers.aioli_normalise(A) == pytest.approx(shifted / shifted.sum())


# --- Skill-It --------------------------------------------------------------------------------------------------------


def test_skillit_update_with_a_given_graph():
    """p_i = p0_i exp(eta sum_j A_ij sum_{last W} L_j), by hand, for a given graph."""
    A = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 1.0]])
    p0 = np.array([0.2, 0.3, 0.5])
    window = np.array([[3.0, 2.0, 1.0], [2.5, 1.8, 1.0], [2.0, 1.7, 0.9]])
    eta = 0.2
    drive = [sum(A[i, j] * window[:, j].sum() for j in range(3)) for i in range(3)]
    w = [p0[i] * math.exp(eta * drive[i]) for i in range(3)]
    assert peers.skillit_mixture(p0, A, window, eta) == pytest.approx(np.array(w) / sum(w), rel=1e-12)


def test_skillit_graph_is_the_relative_loss_drop():
    before = np.array([4.0, 5.0])
    after = np.array([[3.0, 4.5], [3.8, 4.0]])  # row i: after training on skill i alone
    assert peers.skillit_graph(before, after) == pytest.approx(np.array([[0.25, 0.1], [0.05, 0.2]]))


def test_skillit_reads_a_given_graph_by_name(shared_cfg, tmp_path):
    cfg = load_config(shared_cfg)
    data = prepare_data(cfg)
    names = data.domains
    graph = {names[0]: {names[1]: 1.0}}
    mcfg = cfg.model_copy(update={"mixer": cfg.mixer.model_copy(update={
        "method": "skillit", "episodes": 3, "free_steps": 2, "warmup_steps": 1, "eval_sequences": 2,
        "skillit": cfg.mixer.skillit.model_copy(update={"graph": graph})})})
    res = optimize(mcfg, data, tmp_path, progress=False, log=lambda s: None)
    # only domain 0 feeds a skill with loss, so it gains weight; the rest keep equal shares
    assert res.final[0] > res.final[1] and np.allclose(res.final[1:], res.final[1])
    assert res.proxy_steps == 1 + 3 * 2  # no graph steps when the graph is given


def test_skillit_estimates_its_graph_from_the_runs_start(shared_cfg, tmp_path, monkeypatch):
    """As Skill-It's authors measure it: separate runs per skill from the initial model (not a warmed-up copy), so the
    graph holds the early, large relative drops."""
    from tandem.mixing import online

    cfg = load_config(shared_cfg)
    data = prepare_data(cfg)
    seen = {}
    real = online.peers.skillit_graph

    def spy(before, after):
        seen["before"], seen["graph"] = np.array(before), real(before, after)
        return seen["graph"]

    monkeypatch.setattr(online.peers, "skillit_graph", spy)
    mcfg = cfg.model_copy(update={"mixer": cfg.mixer.model_copy(update={
        "method": "skillit", "episodes": 2, "free_steps": 1, "warmup_steps": 6, "eval_sequences": 2,
        "skillit": cfg.mixer.skillit.model_copy(update={"graph_steps": 3})})})
    res = optimize(mcfg, data, tmp_path, progress=False, log=lambda s: None)
    vocab = data.tokenizer.vocab_size
    # the start losses are those of an untrained model (about ln V), and training on a skill lowers its own loss
    assert np.all(np.abs(seen["before"] - np.log(vocab)) < 0.5)
    assert np.all(np.diag(seen["graph"]) > 0.01)
    assert res.proxy_steps == 3 * len(data.domains) + 6 + 2 * 1
    import json

    graph = json.loads((tmp_path / "weights.json").read_text())["skills_graph"]  # the measured graph, by name
    names = data.domains
    np.testing.assert_allclose([[graph[a][b] for b in names] for a in names], seen["graph"], rtol=1e-12)


# --- ADO -------------------------------------------------------------------------------------------------------------


def test_ado_recovers_a_synthetic_power_law():
    n = np.arange(1, 400) * 32.0
    E, A, alpha = np.log(2.0), np.log(30.0), 0.35
    clean = np.exp(E) + np.exp(A) * n**-alpha
    noisy = clean * np.exp(np.random.default_rng(0).normal(0, 0.002, size=n.shape))
    got = peers.ado_fit(n, noisy)
    assert got[2] == pytest.approx(alpha, abs=0.02)
    assert np.exp(got[0]) == pytest.approx(2.0, rel=0.05)
    fitted = np.exp(got[0]) + np.exp(got[1]) * n**-got[2]
    assert np.max(np.abs(fitted / clean - 1)) < 0.01


def test_savgol_preserves_a_cubic_and_smooths_noise():
    x = np.linspace(-1, 1, 301)
    cubic = 1 + x - 2 * x**2 + 0.5 * x**3
    assert peers.savgol_smooth(cubic) == pytest.approx(cubic, abs=1e-9)
    noisy = cubic + np.random.default_rng(0).normal(0, 0.1, x.shape)
    assert np.std(peers.savgol_smooth(noisy) - cubic) < 0.5 * np.std(noisy - cubic)


def test_ado_scores_follow_slope_prior_and_credit():
    params = np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 0.01], [0.0, 2.0, 0.5]])  # E, A, alpha
    n = 100.0
    prior = np.array([0.5, 0.3, 0.2])
    h = np.array([0.4, 0.4, 0.2])
    raw = [max(a, 0.05) * math.exp(A) * n**-a / n * mu * math.sqrt(hh) for (E, A, a), mu, hh in zip(params, prior, h)]
    expected = np.array(raw) / sum(raw)
    expected = np.maximum(expected, 0.01) / np.maximum(expected, 0.01).sum()
    assert peers.ado_scores(params, n, prior, h, floor=0.01) == pytest.approx(expected, rel=1e-12)


# --- end to end -------------------------------------------------------------------------------------------------------

MIXER = {"episodes": 3, "probe_steps": 1, "free_steps": 2, "warmup_steps": 3, "eval_sequences": 2, "batch_size": 8,
         "skillit": {"graph_steps": 1}, "ado": {"warmup_steps": 4, "fit_interval": 2}, "aioli": {"sweeps": 1}}


@pytest.fixture(scope="module")
def online_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    cfg = load_config(tiny_config(root, mixer=MIXER, train={"steps": 6}))
    return cfg, prepare_data(cfg)


@pytest.mark.parametrize("method", online.ONLINE_METHODS)
def test_online_methods_run_count_their_steps_and_resume_identically(online_setup, tmp_path, method, monkeypatch):
    cfg, data = online_setup
    mcfg = cfg.model_copy(update={"mixer": cfg.mixer.model_copy(update={"method": method})})
    M = len(data.domains)
    res = optimize(mcfg, data, tmp_path / "a", progress=False, log=lambda s: None)
    assert len(res.history) == 3
    for r in res.history:
        assert r.alpha.min() >= 0 and r.alpha.sum() == pytest.approx(1.0)
    assert res.proxy_steps == online.proxy_steps(mcfg.mixer, M)
    w = json.loads((tmp_path / "a" / "weights.json").read_text())
    assert w["proxy_steps"] == res.proxy_steps and w["method"] == method
    # a run killed in round 3 (after round 2's checkpoint) and resumed gives the same weights as the uninterrupted run
    policy = online.POLICIES[method]
    original = policy.after_step

    def killed(self, ctx, meter, alpha, t):
        if t == 2:  # mid-round where a round has several steps
            raise KeyboardInterrupt
        return original(self, ctx, meter, alpha, t)

    monkeypatch.setattr(policy, "after_step", killed)
    with pytest.raises(KeyboardInterrupt):
        optimize(mcfg, data, tmp_path / "b", progress=False, log=lambda s: None)
    monkeypatch.setattr(policy, "after_step", original)
    again = optimize(mcfg, data, tmp_path / "b", resume=True, progress=False, log=lambda s: None)
    assert len(again.history) == 3
    assert np.allclose(again.final, res.final, atol=1e-12) and np.allclose(again.average, res.average, atol=1e-12)


# --- DoGE ------------------------------------------------------------------------------------------------------------


def test_doge_score_is_normalised_by_the_mean_training_gradient_norm_and_clipped():
    """DoGE's released score W_i = lr <g_i, g_val> / mean_k ||g_k||, clipped to [0, 5 lr]; the probe measures
    -lr <g_i, g_val> as the loss change after a step along g_val, so Delta = -W: by hand on fake twins."""
    from tandem.mixing.loop import LoopSpec, measure_delta

    class Proxy:
        def domain_losses(self, held):
            return np.array([3.0, 3.0, 3.0])

        def domain_grad_norms(self, batches, max_norm):
            assert max_norm == 5.0
            return np.array([2.0, 4.0, 6.0])

    class Reference:
        valid_norm = 100.0  # not used: the training gradients' mean norm is

        def domain_losses(self, held):
            return np.array([2.9, 3.1, 0.0])  # domain 1 got worse (clipped to 0), domain 2 far better (clipped)

        def lr(self):
            return 0.01

    spec = LoopSpec(episodes=1, probe_steps=1, free_steps=1, gamma=1.0, reference="valid", clip=True,
                    per_valid_norm=True)
    delta, _, _, _ = measure_delta(spec, [[object()], [object()]], Proxy(), Reference())
    assert delta == pytest.approx([-0.1 / 4.0, 0.0, -5 * 0.01])
