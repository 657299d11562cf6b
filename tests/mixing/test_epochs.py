"""Epoch accounting and mixer.max_epochs: what stage one promises is what stage two consumes."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_config

MIXER = {"episodes": 3, "probe_steps": 2, "free_steps": 2, "warmup_steps": 2, "eval_sequences": 2, "update": "eg",
         "eta_alpha": 10.0}


def test_epochs_written_match_what_stage_two_consumes_and_caps_bind(tmp_path, cli):
    # prose is the smallest domain: cap it at a tenth of an epoch, far below what uniform weights would give it
    path = tiny_config(tmp_path, mixer={**MIXER, "max_epochs": {"prose": 0.1}}, train={"steps": 40})
    out = tmp_path / "run"
    rc, stdout, err = cli("run", path, "--out", out, "--baseline", "")
    assert rc == 0, err
    w = json.loads((out / "weights.json").read_text())
    assert w["caps_binding"] == ["prose"] and w["max_epochs"] == {"code": None, "docs": None, "prose": 0.1}
    assert w["epochs"]["recommended"]["prose"] == pytest.approx(0.1)
    assert w["epochs"]["uncapped"]["prose"] > 0.1
    assert sum(w["domain_weights"].values()) == pytest.approx(1.0)
    # uncapped domains keep their ratio
    u, r = w["uncapped"], w["domain_weights"]
    assert r["code"] / r["docs"] == pytest.approx(u["code"] / u["docs"])
    # what the target then consumed: the same epochs, to the sampler's rounding (under one row per batch)
    ev = json.loads((out / "eval.json").read_text())
    rows = w["target_rows"]
    steps = 40
    for d, e in w["epochs"]["recommended"].items():
        per_epoch = rows * r[d] / e
        assert abs(ev["epochs"][d] - e) <= steps / per_epoch + 1e-9, (d, ev["epochs"][d], e)
    assert "epochs of each train split" in err or "epochs of each train split" in stdout


def test_static_methods_are_not_capped_but_report_epochs(tmp_path, cli):
    path = tiny_config(tmp_path, mixer={"method": "uniform", "max_epochs": 0.01})
    out = tmp_path / "opt"
    rc, stdout, err = cli("optimize", path, "--out", out)
    assert rc == 0, err
    w = json.loads((out / "weights.json").read_text())
    assert all(v == pytest.approx(1 / 3) for v in w["domain_weights"].values())
    assert set(w["epochs"]) == {"recommended", "uniform", "natural"}
    assert "epochs of each train split" in stdout


@pytest.mark.parametrize("value", ["0", "-1", ".inf", "{nope: 2}"])
def test_bad_max_epochs_is_an_input_error(tmp_path, cli, value):
    path = tiny_config(tmp_path)
    rc, _, err = cli("optimize", path, "--out", tmp_path / "o", "--set", f"mixer.max_epochs={value}")
    assert rc == 2 and "mixer.max_epochs" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("held_out", [0.0, 0.15])
def test_horizon_matching_gives_the_proxy_the_targets_epochs(shared_cfg, held_out):
    """mixer.horizon=target: at any mixture, the proxy repeats each domain as many epochs over its run as the target
    will over its own (to a window); the held-out windows stay out of training."""
    import numpy as np

    from tandem.config import load_config
    from tandem.data.cache import prepare_data
    from tandem.mixing.lm import LMProblem
    from tandem.mixing.optimize import target_epochs

    cfg = load_config(shared_cfg, ["train.steps=200", f"mixer.held_out_fraction={held_out}", "mixer.method=doremi"])
    data = prepare_data(cfg)
    rows_target_epoch, target_rows, _ = target_epochs(cfg, data)
    proxy_rows = 400
    off = LMProblem(cfg, data, 8, horizon_rows=proxy_rows)
    cfg_on = load_config(shared_cfg, ["train.steps=200", f"mixer.held_out_fraction={held_out}", "mixer.method=doremi",
                                      "mixer.horizon=target"])
    on = LMProblem(cfg_on, data, 8, horizon_rows=proxy_rows)
    alpha = np.array([0.5, 0.3, 0.2])
    proxy_epochs = alpha * proxy_rows / on.train.n_windows
    target = alpha * target_rows / rows_target_epoch
    assert np.allclose(proxy_epochs, target, rtol=0.15)
    assert np.all(on.train.n_windows < off.train.n_windows)
    if held_out:  # held windows are the same with and without horizon matching
        assert np.array_equal(on.held.n_windows, off.held.n_windows)
