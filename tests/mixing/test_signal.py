"""What makes Delta measure the data: the twins share their training rows, the reference's validation step does not
change how the train component is treated, and the order of domains in the config changes nothing but the order."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml

from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.mixing.lm import LMProblem
from tandem.mixing.loop import LoopSpec, LoopState, run_loop
from tandem.models import build_model
from tandem.training.learner import Learner, OptimConfig

from conftest import tiny_config


class Recording:
    """A Twin that records the batches it is given, then steps the real learner."""

    def __init__(self, learner: Learner):
        self.learner, self.calls = learner, []
        self.step_count = 0

    def step(self, parts, valid=None, valid_scale=1.0, valid_clip=None):
        self.calls.append((parts, valid, valid_scale))
        out = self.learner.step(parts, valid=valid, valid_scale=valid_scale)
        self.step_count = self.learner.step_count
        return out

    def domain_losses(self, held):
        return self.learner.domain_losses(held)

    def copy_from(self, other):
        self.learner.copy_from(other.learner)

    def distance(self, other):
        return self.learner.distance(other.learner)


def _learner(cfg, data, lr=3e-3):
    model = build_model(cfg.mixer.proxy, data.vocab_size, cfg.train.seq_len, cfg.seed, cfg.base_dir)
    return Learner(model, OptimConfig(lr=lr, total_steps=100), len(data.domains), torch.device("cpu"), "fp32")


def test_reference_steps_on_exactly_the_proxys_rows(shared_cfg):
    cfg = load_config(shared_cfg)
    data = prepare_data(cfg)
    problem = LMProblem(cfg, data, batch_size=8)
    proxy, reference = Recording(_learner(cfg, data)), Recording(_learner(cfg, data))
    spec = LoopSpec(episodes=2, probe_steps=3, free_steps=2, gamma=2.0, update="eg", eta_alpha=1.0)
    run_loop(spec, problem, proxy, reference, LoopState(np.full(3, 1 / 3)))
    probe_calls = [c for c in proxy.calls if c[1] is None]
    assert len(reference.calls) == 6
    # The proxy's calls go probe (3), free (2), probe (3), free (2); the reference steps beside each probe step.
    proxy_probe = probe_calls[0:3] + probe_calls[5:8]
    for (ref_parts, ref_valid, scale), (px_parts, _, _) in zip(reference.calls, proxy_probe):
        assert len(ref_parts) == 1 and ref_parts[0] is px_parts[0]  # the same rows, the same coefficients
        assert ref_valid is not None and len(ref_valid) == 1 and scale == pytest.approx(0.5)
        valid_batch, _ = ref_valid[0]
        assert len(valid_batch) == problem.valid_rows


def test_validation_step_leaves_the_train_component_alone(shared_cfg):
    """From the same state and on the same rows, the reference's step is the proxy's AdamW step plus a step along
    -g_val whose length is valid_scale times the AdamW step's: clipping and AdamW's normalisation never see the
    sum, and the optimizer states stay the proxy's bit for bit."""
    cfg = load_config(shared_cfg)
    data = prepare_data(cfg)
    problem = LMProblem(cfg, data, batch_size=8)
    proxy = _learner(cfg, data)
    proxy.oc.grad_clip = 0.05  # clipping active, as it is for most reference steps of a summed gradient
    for _ in range(3):
        proxy.step([problem.train_part(np.full(3, 1 / 3))])
    reference = _learner(cfg, data)
    reference.oc.grad_clip = 0.05
    reference.copy_from(proxy)
    part, valid = problem.train_part(np.full(3, 1 / 3)), problem.valid_part()

    # g_val as the reference computes it: at the shared starting point (its direction is all that matters).
    probe = copy.deepcopy(reference.module)
    from tandem.training.loss import token_losses

    vb, vc = valid
    loss, mask = token_losses(probe(vb.x), vb.y)
    (loss * mask * vc.float()[vb.domain][:, None]).sum().backward()
    g_val = [p.grad.clone() for p in probe.parameters()]
    g_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in g_val))

    start = [p.detach().clone() for p in proxy.module.parameters()]
    proxy.step([part])
    reference.step([part], valid=[valid], valid_scale=0.5)
    step_len = torch.sqrt(sum(((p.detach() - s).double() ** 2).sum() for p, s in zip(proxy.module.parameters(), start)))
    assert step_len > 0
    for p_ref, p_px, g in zip(reference.module.parameters(), proxy.module.parameters(), g_val):
        expected = p_px.detach() - (0.5 * step_len / g_norm).float() * g
        torch.testing.assert_close(p_ref.detach(), expected, rtol=1e-4, atol=1e-7)
    for q_ref, q_px in zip(reference.module.parameters(), proxy.module.parameters()):
        a, b = reference.optimizer.state[q_ref], proxy.optimizer.state[q_px]
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    # valid_scale 0: the reference's step is the proxy's, bit for bit
    twin = _learner(cfg, data)
    twin.copy_from(reference)
    other = _learner(cfg, data)
    other.copy_from(reference)
    part2, valid2 = problem.train_part(np.full(3, 1 / 3)), problem.valid_part()
    twin.step([part2], valid=[valid2], valid_scale=0.0)
    other.step([part2])
    assert all(torch.equal(a, b) for a, b in zip(twin.module.parameters(), other.module.parameters()))


def _permuted_config(path, order):
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["domains"] = {d: cfg["data"]["domains"][d] for d in order}
    out = path.parent / f"config-{'-'.join(order)}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def test_permuting_the_domains_permutes_the_weights_and_nothing_else(tmp_path, cli):
    path = tiny_config(tmp_path, mixer={"episodes": 4, "probe_steps": 2, "free_steps": 2, "warmup_steps": 2,
                                        "eval_sequences": 2, "update": "eg", "eta_alpha": 30.0})
    runs = {}
    for order in (["code", "docs", "prose"], ["prose", "code", "docs"]):
        cfg = _permuted_config(path, order)
        out = tmp_path / "-".join(order)
        rc, _, err = cli("optimize", cfg, "--out", out, "-q")
        assert rc == 0, err
        runs[tuple(order)] = json.loads((out / "weights.json").read_text())
    a, b = runs.values()
    assert list(a["domain_weights"]) == ["code", "docs", "prose"] and list(b["domain_weights"]) == ["prose", "code", "docs"]
    for key in ("domain_weights", "final"):
        for d in a[key]:
            assert abs(a[key][d] - b[key][d]) < 1e-9, (key, d, a[key][d], b[key][d])
    # the run moved the weights, so the property is not the trivial one of a mixture that stays uniform
    assert max(abs(x - 1 / 3) for x in a["final"].values()) > 1e-3


def test_weights_carry_their_uncertainty_and_the_report_shows_it(shared_cfg, tmp_path, cli):
    out = tmp_path / "opt"
    rc, stdout, err = cli("optimize", shared_cfg, "--out", out, "-q", "--set", "mixer.episodes=5",
                          "--set", "mixer.probe_steps=2", "--set", "mixer.free_steps=2", "--set", "mixer.eval_sequences=2")
    assert rc == 0, err
    w = json.loads((out / "weights.json").read_text())
    names = list(w["domain_weights"])
    assert w["update"] == "standardized"
    for d in names:
        lo, hi = w["interval"][d]
        assert 0 <= lo <= hi <= 1
        assert isinstance(w["within_noise"][d], bool)
        assert w["within_noise"][d] == bool(lo <= w["initial"][d] <= hi)
        stats = w["delta_over_episodes"][d]
        assert stats["se"] > 0 and stats["t"] == pytest.approx(stats["mean"] / stats["se"])
    assert "within noise" in stdout or "real" in stdout  # the printed table
    header = (out / "trajectory.csv").read_text().splitlines()[0].split(",")
    assert {f"delta_se_{d}" for d in names} <= set(header) and {f"t_{d}" for d in names} <= set(header)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["delta_se"][d] is not None and r["delta_se"][d] >= 0 for r in rows for d in names)
    rc, _, err = cli("report", out)
    assert rc == 0, err
    page = (out / "report.html").read_text()
    assert "How sure" in page and ("within noise" in page or "real" in page)


def test_doremi_excess_is_clipped_per_token(shared_cfg):
    """DoReMi's signal: the mean over a domain's tokens of max(l_u - l_ref, 0), never the clipped mean gap, which is
    0 as soon as the proxy is better on average although many tokens still have excess."""
    from tandem.training.loss import token_losses

    cfg = load_config(shared_cfg)
    data = prepare_data(cfg)
    problem = LMProblem(cfg, data, batch_size=8)
    proxy, ref = _learner(cfg, data), _learner(cfg, data)
    for _ in range(4):
        ref.step([problem.train_part(np.full(3, 1 / 3))])  # the reference is ahead: mean gaps are positive
    held = problem.held_batches()[0]
    got = proxy.excess_over(ref, held)
    sums, counts = np.zeros(3), np.zeros(3)
    with torch.no_grad():
        for b in held:
            lu, mask = token_losses(proxy.module(b.x), b.y)
            lw, _ = token_losses(ref.module(b.x), b.y)
            ex = ((lu - lw).clamp_min(0) * mask).sum(1).double().numpy()
            for r, d in enumerate(b.domain.numpy()):
                sums[d] += ex[r]
                counts[d] += mask[r].sum().item()
    np.testing.assert_allclose(got, sums / counts, rtol=1e-5)
    mean_gap = proxy.domain_losses(held) - ref.domain_losses(held)
    assert np.all(got >= np.maximum(mean_gap, 0) - 1e-6) and np.all(got > 0)


def test_doge_score_is_the_gradient_alignment_of_an_sgd_step(shared_cfg):
    """DoGE by an independent route: explicit per-domain gradients g_i (of each domain's held loss) and the validation
    gradient g_val by autograd; DoGE's released score W_i = lr <g_i, g_val> / mean_k min(|g_k|, 5), g_val clipped
    at norm 5, W clipped to [0, 5 lr]. The loop's DoGE episode (a plain step on validation data from the proxy, the
    loss change per domain over the mean gradient norm) must give Delta = -W."""
    from tandem.config import MixerConfig
    from tandem.mixing.methods import loop_spec
    from tandem.training.loss import token_losses

    cfg = load_config(shared_cfg)
    data = prepare_data(cfg)
    problem = LMProblem(cfg, data, batch_size=8)
    lr = 1e-4  # small enough that the first-order expansion holds to a few per cent
    proxy, reference = _learner(cfg, data, lr=lr), _learner(cfg, data, lr=lr)
    for _ in range(3):  # away from the initialisation, so that the gradients are not degenerate
        proxy.step([problem.train_part(np.full(3, 1 / 3))])
    seen = {}

    class Capture:
        num_domains = problem.num_domains

        def train_part(self, alpha):
            return problem.train_part(alpha)

        def valid_part(self):
            seen["valid"] = problem.valid_part()
            return seen["valid"]

        def held_batches(self):
            seen["held"] = problem.held_batches()
            return seen["held"]

    spec = loop_spec(MixerConfig(method="doge", episodes=1, free_steps=0))
    assert spec.reference == "valid" and spec.clip and spec.per_valid_norm and not spec.probe_proxy
    state = run_loop(spec, Capture(), proxy, reference, LoopState(alpha=np.full(3, 1 / 3), warmed_up=True))
    delta = state.history[0].delta

    params = [p for p in proxy.module.parameters() if p.requires_grad]

    def grad(loss):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).double()

    vb, vcoef = seen["valid"]
    tl, mask = token_losses(proxy.module(vb.x), vb.y)
    g_val = grad((tl * mask * vcoef[vb.domain][:, None]).sum())
    g_val = g_val * min(1.0, 5.0 / float(g_val.norm()))  # DoGE clips every gradient at norm 5
    gs = []
    for i in range(3):
        total, count = 0.0, 0
        for half in seen["held"]:
            for b in half:
                rows = b.domain == i
                if rows.any():
                    tl, mask = token_losses(proxy.module(b.x[rows]), b.y[rows])
                    total = total + (tl * mask).sum()
                    count += int(mask.sum())
        gs.append(grad(total / count))
    mean_norm = np.mean([min(float(g.norm()), 5.0) for g in gs])
    expected = np.array([-lr * float(g @ g_val) / mean_norm for g in gs])
    expected = np.clip(expected, -5 * lr, 0.0)  # DoGE clips W to [0, 5 lr]: Delta = -W
    assert np.all(delta <= 0)
    np.testing.assert_allclose(delta, expected, rtol=0.05, atol=1e-7)
    assert np.any(expected < -1e-6)  # the check is not vacuous
