"""A target-only domain (valid/test splits, no train split): weight 0, never trained on, evaluated, and the target."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import _docstrings, tiny_config, write_jsonl
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.errors import InputError
from tandem.mixing.loop import LoopSpec, next_mixture

MIXER = {"episodes": 4, "probe_steps": 1, "free_steps": 1, "eval_sequences": 2, "target": ["ood"]}


@pytest.fixture(scope="module")
def ood_cfg(tmp_path_factory):
    """The stdlib domains plus `ood`, docstrings of other modules split into valid and test only."""
    root = tmp_path_factory.mktemp("ood")
    path = tiny_config(root, mixer=MIXER, train={"steps": 6})
    raw = yaml.safe_load(path.read_text())
    write_jsonl(root / "data" / "ood" / "all.jsonl", _docstrings(["functools", "inspect"], 60))
    raw["data"]["domains"]["ood"] = {"source": "data/ood/all.jsonl", "split": {"valid": 0.5, "test": 0.5}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("rule", ["eg", "projected", "standardized"])
def test_the_update_leaves_a_domain_without_train_split_at_zero(rule):
    spec = LoopSpec(episodes=1, probe_steps=1, free_steps=0, update=rule, eta_alpha=5.0, smoothing=0.1, floor=0.05,
                    trainable=(True, False, True))
    alpha, past = np.array([0.5, 0.0, 0.5]), []
    for d in ([0.3, np.nan, -0.2], [0.2, np.nan, -0.4], [0.4, np.nan, -0.1], [0.1, np.nan, -0.3]):
        alpha = next_mixture(spec, alpha, np.array(d))
        past.append(np.array(d))
        assert alpha[1] == 0 and alpha.sum() == pytest.approx(1) and alpha[0] >= 0.05 and alpha[2] >= 0.05
    # the trainable part moves exactly as it would without the third domain
    alone = LoopSpec(**{**spec.__dict__, "trainable": None})
    ref = np.array([0.5, 0.5])
    for d in past:
        ref = next_mixture(alone, ref, d[[0, 2]])
    np.testing.assert_allclose(alpha[[0, 2]], ref, rtol=0, atol=1e-15)


def test_a_target_only_domain_is_prepared_with_valid_and_test_only(ood_cfg):
    data = prepare_data(load_config(ood_cfg))
    assert data.domains[-1] == "ood" and data.trainable.tolist() == [True, True, True, False]
    assert len(data.tokens("ood", "train")) == 0
    n = {s: data.index["entries"][f"ood/{s}"]["documents"] for s in ("valid", "test")}
    assert n == {"valid": 30, "test": 30}  # every document is in valid or test


@pytest.mark.parametrize("method", ["tandem", "doremi", "doge"])
def test_optimize_and_train_with_a_target_only_domain(ood_cfg, tmp_path, method, cli):
    import tandem
    from tandem.mixing.lm import LMProblem

    overrides = [f"mixer.method={method}"]
    cfg = load_config(ood_cfg, overrides)
    data = prepare_data(cfg)
    problem = LMProblem(cfg, data, batch_size=8)
    valid, _ = problem.valid_part()
    assert set(valid.domain.tolist()) == {3}  # the target's rows are the target-only domain's valid split
    w = tandem.optimize(ood_cfg, tmp_path / "opt", overrides=overrides)
    assert w["domain_weights"]["ood"] == 0 and w["initial"]["ood"] == 0 and w["target"]["ood"] == 1
    assert w["interval"]["ood"] == [0, 0] and w["delta_over_episodes"]["ood"]["mean"] is None
    assert w["epochs"]["natural"]["ood"] == 0 and w["epochs"]["uniform"]["ood"] == 0
    assert w["rows_per_document"]["ood"] == 0
    # the other domains' weights moved (Delta was measured on them) and stayed on the simplex
    others = [w["domain_weights"][d] for d in ("code", "docs", "prose")]
    assert sum(others) == pytest.approx(1) and max(others) - min(others) > 1e-6
    records = [json.loads(x) for x in (tmp_path / "opt" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["alpha"]["ood"] == 0 and r["delta"]["ood"] is None for r in records)
    assert not any(r["skipped"] for r in records)
    ev = tandem.train(ood_cfg, tmp_path / "train", weights=w["domain_weights"])
    assert ev["tokens_seen"]["ood"] == 0 and ev["epochs"]["ood"] == 0  # never sampled for training
    assert ev["test_loss"]["per_domain"]["ood"] > 0 and ev["valid_loss"]["per_domain"]["ood"] > 0  # evaluated
    rc, text, _ = cli("export", tmp_path / "opt", "--format", "datasets")
    exported = json.loads(text)
    assert rc == 0 and "ood" not in exported["domains"] and "ood" in exported["left_out"]
    rc, _, err = cli("report", tmp_path / "opt", "--out", tmp_path / "report.html")
    assert rc == 0 and "ood" in (tmp_path / "report.html").read_text(), err


def test_training_on_a_target_only_domain_is_refused(ood_cfg, tmp_path, cli):
    import tandem

    with pytest.raises(InputError, match="ood has weight 0.25 but no train split"):
        tandem.train(ood_cfg, tmp_path / "t", weights={"code": 0.25, "docs": 0.25, "prose": 0.25, "ood": 0.25})
    uniform = tandem.train(ood_cfg, tmp_path / "u", weights="uniform", overrides=["train.steps=2"])
    assert uniform["weights"]["ood"] == 0 and uniform["weights"]["code"] == pytest.approx(1 / 3)
    rc, _, err = cli("optimize", ood_cfg, "--out", tmp_path / "odm", "--set", "mixer.method=odm", "-q")
    assert rc == 2 and "target-only" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("method", ["tandem", "doge"])
def test_stage_one_flops_count_the_trainable_domains_only(ood_cfg, tmp_path, method):
    """Delta is measured on the trainable domains' held windows (DoGE: one gradient norm per trainable domain), so the
    FLOPs compare matches methods on count those, as the meter does."""
    from tandem.mixing import methods
    from tandem.mixing.budget import flops_inputs, predicted_flops
    from tandem.mixing.optimize import optimize
    from tandem.training.learner import flops_used

    cfg = load_config(ood_cfg)
    data = prepare_data(cfg)
    mc = methods.resolve_mixer(cfg, method).model_copy(update={"episodes": 2})
    run = cfg.model_copy(update={"mixer": mc})
    assert flops_inputs(run, mc, data)["trainable"] == 3 and len(data.domains) == 4
    predicted = predicted_flops(run, mc, data)
    before = flops_used()
    optimize(run, data, tmp_path, progress=False, log=lambda s: None)
    assert flops_used() - before == pytest.approx(predicted, rel=1e-9, abs=0)


def test_epoch_caps_and_the_target_scale_check_leave_a_target_only_domain_at_zero(ood_cfg, tmp_path, cli):
    """A target-only domain has no train window: its epoch cap is 0 (never negative), it stays at weight 0, and no cap
    is reported as binding for it; the check's capped candidates are built the same way."""
    from tandem.data.sampler import MixtureSampler

    data = prepare_data(load_config(ood_cfg))
    assert MixtureSampler(data.split_arrays("train"), 32, 0, data.domains).n_windows[-1] == 0
    for caps in ("mixer.max_epochs=1", "mixer.max_epochs={code: 1}"):  # every domain capped; one, the rest not
        out = tmp_path / caps.split("=")[1].strip("{}: ")
        rc, _, err = cli("optimize", ood_cfg, "--out", out, "-q", "--set", caps)
        assert rc == 0, err
        w = json.loads((out / "weights.json").read_text())
        assert w["domain_weights"]["ood"] == 0 and sum(w["domain_weights"].values()) == pytest.approx(1)
        assert "ood" not in w["caps_binding"] and w["caps_feasible"] is True, w
    out = tmp_path / "check"
    rc, _, err = cli("run", ood_cfg, "--out", out, "-q", "--check-seeds", "2", "--check-steps", "2",
                     "--set", "train.steps=2")
    assert rc == 0, err
    check = json.loads((out / "check.json").read_text())
    # (the capped candidates were computed, and dropped where no cap binds: that computation is what failed before)
    assert all(c["weights"]["ood"] == 0 for c in check["candidates"].values())
