"""Per-domain loss accounting is exact across uneven micro-batches, and so is the Learner's gradient."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tandem.data.sampler import Batch
from tandem.models.gpt import GPT, GPTConfig
from tandem.training.learner import Learner, OptimConfig, lr_at
from tandem.training.loss import (
    IGNORE_INDEX,
    DomainLossMeter,
    domain_sums,
    domain_token_counts,
    objective_coefficients,
    token_losses,
)

M, B, T, V = 4, 8, 6, 11  # domains, rows, tokens per row, vocabulary


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[0, :3] = IGNORE_INDEX
    targets[4, :] = IGNORE_INDEX  # a row with no supervised token at all
    targets[6, 5] = IGNORE_INDEX
    domain = torch.tensor([0, 2, 0, 1, 2, 0, 1, 0])  # domain 3 is absent
    return logits, targets, domain


def _brute_force(logits, targets, domain):
    """Per-token Python loop: per-domain (sum, count) of -log softmax at the target."""
    sums, counts = np.zeros(M), np.zeros(M)
    logp = torch.log_softmax(logits.double(), dim=-1)
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            y = int(targets[b, t])
            if y == IGNORE_INDEX:
                continue
            sums[int(domain[b])] += -float(logp[b, t, y])
            counts[int(domain[b])] += 1
    return sums, counts


def test_token_losses_match_cross_entropy():
    logits, targets, _ = _problem()
    loss, mask = token_losses(logits, targets)
    assert loss.shape == mask.shape == (B, T)
    assert torch.equal(mask, targets != IGNORE_INDEX)
    assert torch.all(loss[~mask] == 0)
    ref = F.cross_entropy(logits[mask], targets[mask], reduction="none")
    torch.testing.assert_close(loss[mask].double(), ref.double(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunks", [(3, 1, 4), (8,), (1, 1, 1, 1, 1, 1, 1, 1), (5, 3)])
def test_domain_meter_is_exact_across_uneven_micro_batches(chunks):
    logits, targets, domain = _problem()
    ref_sums, ref_counts = _brute_force(logits, targets, domain)
    meter = DomainLossMeter(M)
    i = 0
    for c in chunks:
        loss, mask = token_losses(logits[i : i + c], targets[i : i + c])
        s, n = domain_sums(loss, mask, domain[i : i + c], M)
        assert s.dtype == n.dtype == torch.float64
        meter.add(s, n)
        i += c
    assert i == B
    np.testing.assert_allclose(meter.sums, ref_sums, rtol=1e-6)  # token losses are float32
    np.testing.assert_array_equal(meter.counts, ref_counts)
    losses = meter.losses()
    present = ref_counts > 0
    np.testing.assert_allclose(losses[present], ref_sums[present] / ref_counts[present], rtol=1e-6)
    assert np.isnan(losses[3])  # absent domain
    assert meter.mean() == pytest.approx(ref_sums.sum() / ref_counts.sum(), rel=1e-6)
    # A mean of per-chunk means would differ: the meter is not that.
    if len(chunks) > 1:
        per_chunk, i = [], 0
        for c in chunks:
            lo, ma = token_losses(logits[i : i + c], targets[i : i + c])
            if ma.sum() > 0:
                per_chunk.append(float(lo.sum() / ma.sum()))
            i += c
        assert abs(np.mean(per_chunk) - meter.mean()) > 1e-6


def test_domain_token_counts():
    _, targets, domain = _problem()
    _, ref_counts = _brute_force(torch.zeros(B, T, V), targets, domain)
    np.testing.assert_array_equal(domain_token_counts(targets, domain, M).numpy(), ref_counts)


def test_objective_coefficients_resampled_is_token_mean():
    logits, targets, domain = _problem()
    loss, mask = token_losses(logits, targets)
    coef = objective_coefficients(domain_token_counts(targets, domain, M))
    objective = float((loss * mask * coef[domain][:, None]).sum())
    ref_sums, ref_counts = _brute_force(logits, targets, domain)
    assert objective == pytest.approx(ref_sums.sum() / ref_counts.sum(), rel=1e-6)


def test_objective_coefficients_reweighted_is_weighted_domain_mean():
    logits, targets, domain = _problem()
    loss, mask = token_losses(logits, targets)
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.4])
    coef = objective_coefficients(domain_token_counts(targets, domain, M), alpha)
    assert coef[3] == 0
    objective = float((loss * mask * coef[domain][:, None]).sum())
    s, n = _brute_force(logits, targets, domain)
    # Domain 3 is absent: the others' weights renormalise to sum to 1.
    a = np.array([0.1, 0.2, 0.3]) / 0.6
    assert objective == pytest.approx(float(np.sum(a * s[:3] / n[:3])), rel=1e-6)
    # Empty batch: no NaN.
    assert torch.all(objective_coefficients(torch.zeros(M)) == 1.0)
    assert torch.all(objective_coefficients(torch.zeros(M), alpha) == 0.0)


def _gpt_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=37, block_size=12, n_layer=2, n_head=2, n_embd=16))
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randint(0, 37, (B, 12), generator=g)
    y = torch.randint(0, 37, (B, 12), generator=g)
    y[1, :4] = IGNORE_INDEX
    y[5, 7:] = IGNORE_INDEX
    dom = torch.tensor([0, 1, 1, 2, 0, 2, 2, 1])
    return model, Batch(x, y, dom)


def _learner(model, micro):
    oc = OptimConfig(lr=1e-3, total_steps=10, warmup_steps=0, grad_clip=0.0, micro_batch_size=micro)
    return Learner(copy.deepcopy(model), oc, 3, torch.device("cpu"), precision="fp32")


@pytest.mark.parametrize("alpha", [None, torch.tensor([0.5, 0.2, 0.3])])
def test_learner_gradient_does_not_depend_on_micro_batches(alpha):
    model, batch = _gpt_batch()
    coef = objective_coefficients(domain_token_counts(batch.y, batch.domain, 3), alpha)
    full, micro = _learner(model, None), _learner(model, 3)  # micro-batches of 3, 3, 2 rows
    m_full = full.step([(batch, coef)])
    m_micro = micro.step([(batch, coef)])
    grads = [(p.grad, q.grad) for p, q in zip(full.model.parameters(), micro.model.parameters())]
    assert grads and all(g is not None and h is not None for g, h in grads)
    assert max(float(g.abs().max()) for g, _ in grads) > 1e-4  # a real gradient, not zeros
    for g, h in grads:
        torch.testing.assert_close(h, g, rtol=0, atol=1e-5)
    np.testing.assert_allclose(m_micro.sums, m_full.sums, rtol=1e-6)
    np.testing.assert_array_equal(m_micro.counts, m_full.counts)
    # The objective's gradient equals autograd on the brute-force objective.
    ref = copy.deepcopy(model)
    logits = ref(batch.x)
    loss, mask = token_losses(logits, batch.y)
    (loss * mask * coef.float()[batch.domain][:, None]).sum().backward()
    for p, (g, _) in zip(ref.parameters(), grads):
        torch.testing.assert_close(g, p.grad, rtol=0, atol=1e-5)
    # And the parameters after the step agree.
    for p, q in zip(full.model.parameters(), micro.model.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5)
    assert full.step_count == micro.step_count == 1


def test_learner_domain_losses_exact_under_micro_batching():
    model, batch = _gpt_batch(3)
    a = _learner(model, None).domain_losses([batch, batch.split(5)[1]])
    b = _learner(model, 2).domain_losses([batch, batch.split(5)[1]])
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with torch.no_grad():
        loss, mask = token_losses(model(torch.cat([batch.x, batch.x[5:]])), torch.cat([batch.y, batch.y[5:]]))
    dom = torch.cat([batch.domain, batch.domain[5:]])
    for d in range(3):
        rows = dom == d
        ref = float(loss[rows].sum() / mask[rows].sum())
        assert a[d] == pytest.approx(ref, rel=1e-5)


def test_lr_schedule():
    assert lr_at(0, 1.0, 4, 20, 0.1) == pytest.approx(0.25)
    assert lr_at(3, 1.0, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_at(4, 1.0, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_at(12, 1.0, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(20, 1.0, 4, 20, 0.1) == pytest.approx(0.1)
    assert lr_at(50, 1.0, 4, 20, 0.1) == pytest.approx(0.1)
    vals = [lr_at(s, 1.0, 4, 20, 0.1) for s in range(4, 21)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_domain_gradient_norms_match_autograd_on_each_domains_mean_loss():
    """DoGE's ||g_k||: the gradient of domain k's token-mean loss, by hand with autograd, its norm clipped."""
    model, batch = _gpt_batch()
    learner = _learner(model, 3)
    got = learner.domain_grad_norms([batch])
    clipped = learner.domain_grad_norms([batch], max_norm=0.5)
    for k in range(3):
        ref = copy.deepcopy(model)
        loss, mask = token_losses(ref(batch.x), batch.y)
        sel = mask * (batch.domain == k).float()[:, None]
        ((loss * sel).sum() / sel.sum()).backward()
        norm = float(torch.sqrt(sum((p.grad ** 2).sum() for p in ref.parameters() if p.grad is not None)))
        assert got[k] == pytest.approx(norm, rel=1e-5)
        assert clipped[k] == pytest.approx(min(norm, 0.5), rel=1e-5)
    assert all(p.grad is None for p in learner.module.parameters())  # nothing left behind, nothing moved
