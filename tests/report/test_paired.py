"""Paired comparison over seeds: a method is better only beyond two standard errors of the paired difference."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.report.compare import markdown_table, paired, significant_best, summarize, verdict


def _runs(losses: dict[str, list[float]]) -> list[dict]:
    return [{"method": m, "seed": s, "weights": {"a": 0.5, "b": 0.5}, "stage1_wall_s": 1.0, "stage1_tokens": 1,
             "test_loss": {"average": v, "worst": v + 0.1, "per_domain": {"a": v, "b": v + 0.1}}}
            for m, vs in losses.items() for s, v in enumerate(vs)]


def test_pairing_removes_the_seed_effect():
    # seeds differ by a lot, but tandem is 0.01 below uniform on every seed: a clear paired win
    seed_effect = [0.0, 0.5, -0.3, 0.2, 0.9]
    runs = _runs({"uniform": [5 + e for e in seed_effect], "tandem": [5 + e - 0.01 + 1e-4 * i for i, e in enumerate(seed_effect)]})
    mean, se, n = paired(runs, "tandem", "uniform")
    assert n == 5 and mean == pytest.approx(-0.0098) and se < 1e-3
    assert verdict(mean, se) == "better" and significant_best(runs, ["uniform", "tandem"], "average") == "tandem"
    table = markdown_table(summarize(runs, ["uniform", "tandem"]), ["a", "b"], runs)
    assert "**" in table and "better" in table


def test_a_win_within_noise_is_not_bolded():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, size=5)
    runs = _runs({"uniform": list(5 + rng.normal(0, 0.05, size=5)), "tandem": list(4.99 + noise)})
    mean, se, _ = paired(runs, "tandem", "uniform")
    assert abs(mean) < 2 * se and verdict(mean, se) == "within noise"
    assert significant_best(runs, ["uniform", "tandem"], "average") is None
    table = markdown_table(summarize(runs, ["uniform", "tandem"]), ["a", "b"], runs)
    assert "**" not in table.split("\n\n")[0]


def test_only_common_seeds_are_paired():
    runs = _runs({"uniform": [5.0, 5.1, 5.2], "tandem": [4.9, 5.0]})
    mean, se, n = paired(runs, "tandem", "uniform")
    assert n == 2 and mean == pytest.approx(-0.1)
