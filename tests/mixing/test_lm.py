"""LMProblem's held-out slice: Delta measured on train windows the twins never train on."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.data.sft import SFTExamples
from tandem.errors import InputError
from tandem.mixing.lm import LMProblem, hold_out


def test_hold_out_splits_text_and_sft_without_overlap():
    a = np.arange(1000)
    keep, held = hold_out(a, 0.1, 16, "d")
    assert len(keep) == 900 and len(held) == 100 and keep[-1] + 1 == held[0]
    tokens = np.arange(40)
    sft = SFTExamples(tokens, np.ones(40, dtype=np.uint8), np.array([0, 10, 20, 30, 40]), pad_id=0)
    keep, held = hold_out(sft, 0.25, 16, "t")
    assert keep.num_examples == 3 and held.num_examples == 1
    assert list(held.row(0, 16)[0][:9]) == list(range(30, 39))
    with pytest.raises(InputError, match=r"data\.domains\.d\.train: 20 tokens are too few"):
        hold_out(np.arange(20), 0.1, 16, "d")


def test_twins_never_train_on_the_held_windows(shared_cfg):
    cfg = load_config(shared_cfg, ["mixer.held_out_fraction=0.2"])
    data = prepare_data(cfg)
    problem = LMProblem(cfg, data, batch_size=8)
    seq = cfg.train.seq_len
    for i, name in enumerate(data.domains):
        full = np.asarray(data.tokens(name, "train"))
        cut = len(problem.train.arrays[i])
        assert cut + len(problem.held.arrays[i]) == len(full)
        assert cut <= len(full) - max(seq + 1, round(0.2 * len(full)))
    # Every training row (inputs and targets) lies before its domain's cut, every held row after it.
    def rows_on_side(batch, before_cut: bool):
        for r in range(len(batch)):
            d = int(batch.domain[r])
            full = np.asarray(data.tokens(data.domains[d], "train"))
            cut = len(problem.train.arrays[d])
            x = batch.x[r].numpy()
            starts = [s for s in range(len(full) - seq + 1) if np.array_equal(full[s : s + seq], x)]
            assert any((s + seq + 1 <= cut) if before_cut else (s >= cut) for s in starts), (d, starts, cut)

    for _ in range(3):
        batch, _ = problem.train_part(np.full(len(data.domains), 1 / len(data.domains)))
        rows_on_side(batch, True)
    halves = problem.held_batches()
    assert len(halves) == 2  # two independent sets: the episode's standard error of Delta
    for half in halves:
        for b in half:
            rows_on_side(b, False)


def test_delta_is_measured_on_the_rows_the_proxy_trains_on_by_default():
    """The penalty's gradient (Danskin) is the gap on the rows the inner problem trains on: no method holds out
    unless asked to."""
    from tandem.config import MixerConfig
    from tandem.mixing.methods import effective

    assert effective(MixerConfig(method="tandem")).held_out_fraction == 0.0
    assert effective(MixerConfig(method="tandem", held_out_fraction=0.15)).held_out_fraction == 0.15
    for m in ("doremi", "doge", "odm", "aioli", "skillit", "ado"):
        assert effective(MixerConfig(method=m)).held_out_fraction == 0.0
