"""MixtureSampler: token shares, seeding, epochs, resume; systematic_counts; eval windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tandem.data.sampler import Batch, MixtureSampler, eval_windows, systematic_counts
from tandem.errors import InputError

SEQ = 8


def _arrays(sizes=(5000, 3001, 700)) -> list[np.ndarray]:
    # Each token is its own position plus a per-domain offset, so a row tells where (and from which domain) it came.
    return [np.arange(n, dtype=np.int64) + 1_000_000 * i for i, n in enumerate(sizes)]


def _draw(s: MixtureSampler, weights, batch_size: int, n: int) -> list[Batch]:
    return [s.sample(weights, batch_size) for _ in range(n)]


def test_batch_shapes_targets_and_domain_labels():
    arrays = _arrays()
    s = MixtureSampler(arrays, SEQ, seed=0, names=["a", "b", "c"])
    b = s.sample([0.5, 0.3, 0.2], 10)
    assert b.x.shape == b.y.shape == (10, SEQ) and b.x.dtype == torch.int64
    assert b.domain.shape == (10,)
    assert torch.equal(b.y[:, :-1], b.x[:, 1:])  # y is x shifted by one token
    assert torch.equal(b.y - b.x, torch.ones_like(b.x))  # consecutive tokens of the source
    assert torch.equal(b.x[:, 0] // 1_000_000, b.domain)  # each row comes from the domain it is labelled with
    parts = b.split(3)
    assert [len(p) for p in parts] == [3, 3, 3, 1]
    assert torch.equal(torch.cat([p.x for p in parts]), b.x)


def test_token_shares_follow_weights():
    w = np.array([0.55, 0.3, 0.15])
    s = MixtureSampler(_arrays(), SEQ, seed=1)
    counts = np.zeros(3)
    for b in _draw(s, w, 7, 300):
        counts += np.bincount(b.domain.numpy(), minlength=3)
    shares = counts / counts.sum()
    assert np.abs(shares - w).max() < 0.01, shares
    # Systematic allocation: per batch every domain gets floor or ceil of B * w.
    for b in _draw(s, w, 7, 50):
        c = np.bincount(b.domain.numpy(), minlength=3)
        assert c.sum() == 7 and np.all(np.abs(c - 7 * w) < 1)


def test_zero_weight_domain_is_never_drawn_and_weights_are_normalised():
    s = MixtureSampler(_arrays(), SEQ, seed=2)
    for b in _draw(s, [2.0, 0.0, 2.0], 9, 40):  # unnormalised weights are fine
        assert not (b.domain == 1).any()
        c = np.bincount(b.domain.numpy(), minlength=3)
        assert abs(c[0] - 4.5) < 1 and abs(c[2] - 4.5) < 1
    assert s.tokens_seen()[1] == 0
    for bad in ([0.5, 0.5], [-0.1, 0.6, 0.5], [float("nan"), 0.5, 0.5], [0, 0, 0]):
        with pytest.raises(ValueError):
            s.sample(bad, 4)


def test_same_seed_repeats_other_seed_differs():
    w = [0.4, 0.4, 0.2]
    a = _draw(MixtureSampler(_arrays(), SEQ, seed=5), w, 6, 20)
    b = _draw(MixtureSampler(_arrays(), SEQ, seed=5), w, 6, 20)
    c = _draw(MixtureSampler(_arrays(), SEQ, seed=6), w, 6, 20)
    assert all(torch.equal(p.x, q.x) and torch.equal(p.domain, q.domain) for p, q in zip(a, b))
    assert not all(torch.equal(p.x, q.x) for p, q in zip(a, c))


def test_epochs_and_tokens_seen():
    arrays = _arrays((5000, 3001, 100))  # domain 2: (100 - 1) // 8 = 12 windows
    s = MixtureSampler(arrays, SEQ, seed=3)
    rows = np.zeros(3, dtype=np.int64)
    starts = []
    for b in _draw(s, [0.2, 0.2, 0.6], 10, 10):
        rows += np.bincount(b.domain.numpy(), minlength=3)
        starts += b.x[b.domain == 2, 0].tolist()
    n_windows = np.array([(len(a) - 1) // SEQ for a in arrays])
    assert rows[2] == 60
    np.testing.assert_array_equal(s.tokens_seen(), rows * SEQ)
    np.testing.assert_allclose(s.epochs(), rows / n_windows)
    assert s.epochs()[2] == 5.0 and s.epochs()[0] < 1
    # Within an epoch every window is visited exactly once, never overlapping another.
    first = np.array(starts[:12]) - 2_000_000
    assert len(set(first)) == 12
    assert np.all(np.diff(np.sort(first)) == SEQ)
    # Each epoch is a different order (and offset) than the one before.
    assert starts[:12] != starts[12:24]


def test_state_dict_resumes_the_exact_stream():
    import json

    w = [0.3, 0.3, 0.4]
    ref = MixtureSampler(_arrays((5000, 3001, 60)), SEQ, seed=9)
    _draw(ref, w, 5, 7)
    state = json.loads(json.dumps(ref.state_dict()))  # must survive a JSON round trip (state.json)
    expected = _draw(ref, w, 5, 15)
    fresh = MixtureSampler(_arrays((5000, 3001, 60)), SEQ, seed=9)
    fresh.load_state_dict(state)
    got = _draw(fresh, w, 5, 15)
    assert all(torch.equal(p.x, q.x) and torch.equal(p.domain, q.domain) for p, q in zip(expected, got))
    np.testing.assert_array_equal(fresh.epochs(), ref.epochs())
    np.testing.assert_array_equal(fresh.tokens_seen(), ref.tokens_seen())


def test_systematic_counts():
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(1, 8))
        w = rng.dirichlet(np.ones(m))
        if m > 1 and rng.random() < 0.3:
            w[rng.integers(m)] = 0.0
            w = w / w.sum()
        n = int(rng.integers(1, 50))
        c = systematic_counts(w, n, rng)
        assert c.shape == (m,) and c.sum() == n
        assert np.all(np.abs(c - n * w) < 1), (w, n, c)
        assert np.all(c[w == 0] == 0)
    # Unbiased: the mean count converges to n * w.
    w = np.array([0.1, 0.25, 0.65])
    mean = np.mean([systematic_counts(w, 3, rng) for _ in range(20000)], axis=0)
    np.testing.assert_allclose(mean, 3 * w, atol=0.03)


def test_domain_shorter_than_one_sequence():
    with pytest.raises(InputError) as ei:
        MixtureSampler([np.arange(100), np.arange(8)], SEQ, seed=0, names=["big", "tiny_dom"])
    msg = str(ei.value)
    assert "tiny_dom" in msg and "8 tokens" in msg and "seq_len" in msg
    MixtureSampler([np.arange(SEQ + 1)], SEQ, seed=0)  # exactly one sequence is enough


def test_eval_windows_score_every_target_once():
    toks = np.arange(50, dtype=np.int64)
    wins = list(eval_windows(toks, 8))
    ys = np.concatenate([y for _, y in wins])
    np.testing.assert_array_equal(ys, np.arange(1, 50))
    assert all(np.array_equal(y, x + 1) for x, y in wins)
    assert [len(x) for x, _ in wins] == [8] * 6 + [1]
    capped = np.concatenate([y for _, y in eval_windows(toks, 8, max_tokens=20)])
    np.testing.assert_array_equal(capped, np.arange(1, 21))
    assert list(eval_windows(np.arange(1), 8)) == []


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4099])
def test_feistel_permutation_is_a_permutation(n):
    from tandem.data.sampler import FeistelPermutation

    p = FeistelPermutation(n, [11, 22, 33, 44])
    assert sorted(p[k] for k in range(n)) == list(range(n))
    assert [p[k] for k in range(n)] == [FeistelPermutation(n, [11, 22, 33, 44])[k] for k in range(n)]
    if n >= 64:  # a real shuffle, not the identity or a stride
        assert [p[k] for k in range(n)] != [FeistelPermutation(n, [12, 22, 33, 44])[k] for k in range(n)]
        assert sum(p[k] == k for k in range(n)) < n // 8


def test_large_domains_visit_every_window_once_per_epoch_without_an_order_array(monkeypatch):
    import tandem.data.sampler as sampler

    monkeypatch.setattr(sampler, "PERMUTATION_MAX_WINDOWS", 0)  # every domain takes the index-by-index order
    s = MixtureSampler(_arrays(), SEQ, seed=3)
    n0 = int(s.n_windows[0])
    starts = [int(b.x[0, 0]) for b in _draw(s, [1.0, 0, 0], 1, 2 * n0)]
    # A window starts at offset + k * SEQ with the epoch's offset below SEQ, so start // SEQ is its index k.
    epoch1, epoch2 = [x // SEQ for x in starts[:n0]], [x // SEQ for x in starts[n0:]]
    assert sorted(epoch1) == list(range(n0)) and sorted(epoch2) == list(range(n0))  # every window once per epoch
    assert epoch1 != epoch2  # each epoch has its own order
    assert isinstance(s._order(0)[0], sampler.FeistelPermutation)
    # Resuming mid-epoch continues the same order.
    s2 = MixtureSampler(_arrays(), SEQ, seed=3)
    _draw(s2, [1.0, 0, 0], 5, 3)
    s3 = MixtureSampler(_arrays(), SEQ, seed=3)
    s3.load_state_dict(s2.state_dict())
    assert torch.equal(s2.sample([1.0, 0, 0], 5).x, s3.sample([1.0, 0, 0], 5).x)
