"""One meaning of a weight: the share of supervised (loss-bearing) tokens the optimizer steps on, for text and SFT
domains alike."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import make_domains, write_split_domains
from sft_tasks import write_sft_tasks
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.data.sampler import MixtureSampler, row_shares, token_shares
from tandem.training.loss import domain_token_counts, objective_coefficients


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    domains = {**write_split_domains(root, make_domains(root)), **write_sft_tasks(root)}
    cfg = {"seed": 0, "data": {"domains": domains}, "tokenizer": {"vocab_size": 384}, "model": {"preset": "tiny"},
           "train": {"steps": 10, "batch_size": 16, "seq_len": 96}}
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    c = load_config(root / "c.yaml")
    return c, prepare_data(c)


def test_objective_shares_equal_the_weights_with_text_and_sft_domains(mixed):
    cfg, data = mixed
    names = data.domains
    assert any(data.is_sft(d) for d in names) and not all(data.is_sft(d) for d in names)
    sampler = MixtureSampler(data.split_arrays("train"), cfg.train.seq_len, 0, names)
    w = np.linspace(1.0, 2.0, len(names))
    w /= w.sum()
    objective = np.zeros(len(names))
    for _ in range(300):
        b = sampler.sample(w, cfg.train.batch_size)
        counts = domain_token_counts(b.y, b.domain, len(names))
        coef = objective_coefficients(counts)  # the token mean over the batch: what the optimizer minimises
        objective += (coef * counts).numpy()
    objective /= objective.sum()
    np.testing.assert_allclose(objective, w, atol=0.02)
    # and uniform weights no longer give the text domains most of the objective
    u = np.full(len(names), 1 / len(names))
    per_row = sampler.tokens_per_row
    assert np.allclose(token_shares(row_shares(u, per_row), per_row), u)
    assert per_row.max() / per_row.min() > 3  # text rows hold many more supervised tokens than SFT rows


def test_epochs_in_weights_json_count_rows_the_sampler_draws(mixed, tmp_path):
    from tandem.mixing.optimize import epoch_fields, target_epochs

    cfg, data = mixed
    w = np.full(len(data.domains), 1 / len(data.domains))
    fields = epoch_fields(cfg, data, {"uniform": w})
    rows, budget, per_row = target_epochs(cfg, data)
    sampler = MixtureSampler(data.split_arrays("train"), cfg.train.seq_len, cfg.seed, data.domains)
    for _ in range(cfg.train.steps):
        sampler.sample(w, cfg.train.batch_size)
    for i, d in enumerate(data.domains):
        assert sampler.epochs()[i] == pytest.approx(fields["epochs"]["uniform"][d], abs=cfg.train.steps / rows[i])


def test_evaluation_sets_hold_every_domain_alike(mixed):
    """Held batches (Delta) and fixed validation sets draw the same number of rows of every domain, whatever the
    domain's tokens per row: a text domain next to short SFT rows must not go missing from them."""
    from tandem.mixing.lm import LMProblem
    from tandem.mixing.online import fixed_valid_sets

    cfg, data = mixed
    problem = LMProblem(cfg, data, batch_size=8)
    M = len(data.domains)
    for half in problem.held_batches():
        counts = np.bincount(np.concatenate([b.domain.numpy() for b in half]), minlength=M)
        assert np.all(counts == counts[0]) and counts[0] >= 1
    sets = fixed_valid_sets(problem, 3)
    counts = np.bincount(np.concatenate([b.domain.numpy() for b in sets]), minlength=M)
    assert np.all(counts == 3)
