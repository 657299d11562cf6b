"""Search methods: the simplex grid, resumable point evaluation, RegMix's regression; grid on the convex bed."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from conftest import tiny_config
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.mixing import search as S
from tandem.mixing.optimize import optimize
from tandem.mixing.toy import ConvexBed


@pytest.mark.parametrize("m,r", [(2, 4), (3, 10), (4, 5)])
def test_simplex_grid(m, r):
    g = S.simplex_grid(m, r)
    assert len(g) == comb(r + m - 1, m - 1)  # 3 domains at step 0.1: 66 mixtures
    assert np.allclose(g.sum(1), 1) and (g >= 0).all()
    assert len({tuple(x) for x in np.round(g * r).astype(int)}) == len(g)


def test_grid_finds_convex_optimum():
    bed = ConvexBed.make(optimum=np.array([0.55, 0.3, 0.15]), seed=0, misfit=0.3)
    a_star, l_star = bed.brute_force(100)
    pts = S.simplex_grid(3, 20)
    vals = S.evaluate_points(pts, bed.outer_loss, None)
    best = pts[np.argmin(vals)]
    assert np.abs(best - a_star).max() <= 1 / 20 + 1e-9
    assert vals.min() <= min(bed.outer_loss(p) for p in pts) + 1e-15
    assert vals.min() / l_star - 1 < 0.01


def test_evaluate_points_resumes(tmp_path):
    pts = S.simplex_grid(3, 3)
    calls = []

    def f(w):
        calls.append(w)
        return float(w @ np.arange(3))

    log = tmp_path / "points.jsonl"
    S.evaluate_points(pts[:4], f, log)
    with open(log, "a") as fh:
        fh.write('{"weights": [0.1')  # a torn line from a killed run
    calls.clear()
    vals = S.evaluate_points(pts, f, log)
    assert len(calls) == len(pts) - 4
    np.testing.assert_allclose(vals, pts @ np.arange(3))


def test_regmix_regression_recovers_quadratic_minimum():
    rng = np.random.default_rng(0)
    W = rng.dirichlet(np.ones(3), 60)
    target = np.array([0.5, 0.3, 0.2])
    y = ((W - target) ** 2).sum(1)
    cand = S.simplex_grid(3, 50)
    best = S.regmix_choose(W, y, cand, ridge=1e-8)
    assert np.abs(best - target).max() <= 0.03


def test_regmix_sweep_follows_the_released_sampler():
    """RegMix's sampler: every weight within 15x the untempered prior's share, zero or at least 2e-4, on multiples of
    2e-4; distinct mixtures; the same seed gives the same sweep."""
    prior = np.array([0.6, 0.3, 0.08, 0.02])
    W = S.regmix_sweep(64, prior, seed=3)
    assert W.shape == (64, 4) and np.allclose(W.sum(1), 1.0)
    assert np.all(W <= np.minimum(15 * prior, 1.0) + 1e-9)
    assert np.all((W == 0) | (W >= 2e-4 - 1e-12))
    assert np.allclose(np.round(W / 2e-4) * 2e-4, W, atol=1e-9)
    assert len({tuple(np.round(w, 6)) for w in W}) == 64
    assert np.array_equal(W, S.regmix_sweep(64, prior, seed=3))
    # tempering (prior^0.5) spreads the sweep towards the small domains: their mean share is above the prior's
    assert W[:, 3].mean() > prior[3]


def test_regmix_default_is_the_mean_of_the_top_k_predicted_not_the_argmin():
    """RegMix's released choice, by hand: 100,000 Dirichlet(prior) candidates scored by the fit, the mean of the 128
    lowest; the argmin of the same fit (the earlier choice, k = 1) is a different mixture."""
    from tandem.config import MixerConfig

    rng = np.random.default_rng(0)
    prior = np.array([0.5, 0.3, 0.2])
    W = S.regmix_sweep(48, prior, seed=0)
    y = ((W - [0.2, 0.5, 0.3]) ** 2).sum(1) + rng.normal(0, 0.01, len(W))
    model = S.regmix_lightgbm(W, y, seed=0)
    cand = np.random.default_rng([0, 0xC4]).dirichlet(prior, size=100_000)
    order = np.argsort(model.predict(cand), kind="stable")
    by_hand = cand[order[:128]].mean(axis=0)
    got = S.regmix_choose_topk(W, y, prior, seed=0)
    assert got == pytest.approx(by_hand / by_hand.sum(), abs=1e-12)
    argmin = S.regmix_choose_topk(W, y, prior, seed=0, k=1)
    assert np.abs(argmin - got).sum() > 0.05
    assert S.REGMIX_TOP_K == 128 and MixerConfig().regmix_regression == "lightgbm"


def test_regmix_lightgbm_finds_a_known_minimum():
    prior = np.full(3, 1 / 3)
    W = S.regmix_sweep(96, prior, seed=1)
    target = np.array([0.6, 0.3, 0.1])
    y = ((W - target) ** 2).sum(1)
    best = S.regmix_choose_topk(W, y, prior, seed=1)
    assert np.abs(best - target).sum() < 0.25


@pytest.mark.parametrize("method", ["grid", "regmix", "odm"])
def test_methods_on_lm(tmp_path, method):
    path = tiny_config(tmp_path, mixer={"episodes": 3, "probe_steps": 1, "free_steps": 1, "grid_resolution": 2,
                                        "regmix_samples": 3, "eval_sequences": 2, "batch_size": 4},
                       train={"steps": 3})
    cfg = load_config(path, [f"mixer.method={method}"])
    res = optimize(cfg, prepare_data(cfg), tmp_path / "o", progress=False, log=lambda s: None)
    w = json.loads((tmp_path / "o" / "weights.json").read_text())
    assert abs(sum(w["domain_weights"].values()) - 1) < 1e-9 and w["method"] == method
    assert abs(res.recommended.sum() - 1) < 1e-9
    if method == "grid":
        assert len((tmp_path / "o" / "points.jsonl").read_text().splitlines()) == 6
