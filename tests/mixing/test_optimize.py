"""TANDEM on language models: determinism, synchronisation, outputs, resume, the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import tiny_config
from tandem.cli.main import main
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.mixing.optimize import optimize

MIXER = {"episodes": 6, "probe_steps": 2, "free_steps": 3, "warmup_steps": 4, "eval_sequences": 2, "update": "eg", "eta_alpha": 20.0,
         "batch_size": 8}


# mixer.restart: every episode a whole run of probe_steps from a fresh initialisation (no warm-up, no free steps)
RESTART = {"restart": True, "episodes": 3, "probe_steps": 6, "eval_sequences": 2, "update": "eg", "eta_alpha": 20.0,
           "batch_size": 8}


def _setup(tmp_path_factory, mixer):
    root = tmp_path_factory.mktemp("opt")
    path = tiny_config(root, mixer=mixer)
    cfg = load_config(path)
    return root, path, cfg, prepare_data(cfg)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return _setup(tmp_path_factory, MIXER)


@pytest.fixture(scope="module")
def restart_setup(tmp_path_factory):
    return _setup(tmp_path_factory, RESTART)


@pytest.fixture(params=["setup", "restart_setup"])
def each_loop(request):
    """The warm loop (the defaults' episodes) and the restarted one: both keep the same guarantees."""
    return request.getfixturevalue(request.param)


def test_same_seed_same_weights(each_loop, tmp_path):
    _, _, cfg, data = each_loop
    a = optimize(cfg, data, tmp_path / "a", progress=False, log=lambda s: None)
    b = optimize(cfg, data, tmp_path / "b", progress=False, log=lambda s: None)
    assert np.array_equal(a.final, b.final)
    assert np.array_equal(np.stack([r.delta for r in a.history]), np.stack([r.delta for r in b.history]))
    # the weights moved: the test would pass vacuously if Delta were always 0
    assert np.abs(a.final - 1 / 3).max() > 1e-4


def test_outputs(setup, tmp_path):
    _, _, cfg, data = setup
    res = optimize(cfg, data, tmp_path, progress=False, log=lambda s: None)
    w = json.loads((tmp_path / "weights.json").read_text())
    for key in ("domain_weights", "final", "average", "train_domain_weights"):
        assert set(w[key]) == set(data.domains)
        assert abs(sum(w[key].values()) - 1) < 1e-9
    # TANDEM recommends its final mixture (under its step the last one holds all the evidence); others the average
    assert w["domain_weights"] == (w["final"] if cfg.mixer.method == "tandem" and "report" not in
                                   cfg.mixer.model_fields_set else w["average"])
    np.testing.assert_allclose([w["final"][d] for d in data.domains], res.final)
    rows = list(csv.DictReader((tmp_path / "trajectory.csv").open()))
    assert len(rows) == cfg.mixer.episodes
    assert {"episode", "step", "distance", "weight_code", "delta_code"} <= set(rows[0])
    assert (tmp_path / "weights.png").stat().st_size > 1000
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == cfg.mixer.episodes
    # proxy steps: warm-up + T (K + E)
    assert res.proxy_steps == 4 + 6 * (2 + 3)


def test_sync_keeps_twins_close(setup, tmp_path):
    """With synchronisation the twins' distance stays bounded; without it the reference drifts away."""
    _, path, _, _ = setup
    over = {"episodes": 12, "free_steps": 4}
    cfg_sync = load_config(path, [f"mixer.{k}={v}" for k, v in over.items()])
    cfg_nosync = load_config(path, [f"mixer.{k}={v}" for k, v in over.items()] + ["mixer.sync=false"])
    data = prepare_data(cfg_sync)
    d_sync = [r.distance for r in optimize(cfg_sync, data, tmp_path / "s", progress=False, log=lambda s: None).history]
    d_free = [r.distance for r in optimize(cfg_nosync, data, tmp_path / "n", progress=False, log=lambda s: None).history]
    assert max(d_sync) < 3 * d_sync[0]
    assert d_free[-1] > 2 * d_free[0]
    assert d_free[-1] > 3 * d_sync[-1]


def test_resume_matches_uninterrupted(each_loop, tmp_path, monkeypatch):
    _, _, cfg, data = each_loop
    full = optimize(cfg, data, tmp_path / "full", progress=False, log=lambda s: None)

    import tandem.mixing.optimize as opt

    real_loop = opt.run_loop

    def interrupted_loop(*args, on_episode=None, **kw):
        def hook(state, rec):
            on_episode(state, rec)  # checkpoint written here
            if state.episode == 2:
                raise KeyboardInterrupt

        return real_loop(*args, on_episode=hook, **kw)

    monkeypatch.setattr(opt, "run_loop", interrupted_loop)
    with pytest.raises(KeyboardInterrupt):
        optimize(cfg, data, tmp_path / "part", progress=False, log=lambda s: None)
    monkeypatch.setattr(opt, "run_loop", real_loop)
    resumed = optimize(cfg, data, tmp_path / "part", resume=True, progress=False, log=lambda s: None)
    assert np.array_equal(full.final, resumed.final)
    assert np.array_equal(full.average, resumed.average)
    assert np.array_equal(np.stack([r.delta for r in full.history]), np.stack([r.delta for r in resumed.history]))
    assert len((tmp_path / "part" / "metrics.jsonl").read_text().splitlines()) == cfg.mixer.episodes


def test_restart_runs_whole_episodes(restart_setup, tmp_path):
    _, _, cfg, data = restart_setup
    res = optimize(cfg, data, tmp_path, progress=False, log=lambda s: None)
    assert res.proxy_steps == 3 * 6 and [r.step for r in res.history] == [6, 12, 18]
    w = json.loads((tmp_path / "weights.json").read_text())
    assert w["restart"] is True and w["proxy_steps"] == 18 and w["free_steps"] == 0
    # each episode its own initialisation: the twins' distances differ, and none continues another (a warm proxy
    # would have trained 18 steps by the last episode; under restart each trains 6)
    assert len({round(r.distance, 9) for r in res.history}) == 3


def test_cli_refuses_free_steps_with_restart(restart_setup, tmp_path, capsys):
    _, path, _, _ = restart_setup
    out = tmp_path / "out"
    assert main(["optimize", str(path), "--set", "mixer.free_steps=4", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "free_steps" in err[0] and "restart" in err[0]
    assert not out.exists()


def test_reweight_and_projected_and_target(setup, tmp_path):
    _, path, _, _ = setup
    cfg = load_config(path, ["mixer.sampling=reweight", "mixer.update=projected", "mixer.eta_alpha=0.5",
                             "mixer.target=[prose]", "mixer.smoothing=0.01", "mixer.floor=0.05"])
    data = prepare_data(cfg)
    res = optimize(cfg, data, tmp_path, progress=False, log=lambda s: None)
    for r in res.history:
        assert r.alpha.min() >= 0.05 - 1e-12 and abs(r.alpha.sum() - 1) < 1e-9


def test_cli_optimize_and_run(setup, tmp_path, capsys):
    _, path, _, _ = setup
    rc = main(["optimize", str(path), "--out", str(tmp_path / "o"), "-q"])
    assert rc == 0
    assert (tmp_path / "o" / "weights.json").is_file()
    rc = main(["run", str(path), "--out", str(tmp_path / "r"), "-q", "--set", "train.steps=10"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "w:tandem" in out and "loss:uniform" in out
    ev = json.loads((tmp_path / "r" / "eval.json").read_text())
    w = json.loads((tmp_path / "r" / "weights.json").read_text())
    assert ev["weights"] == w["domain_weights"]
    assert (tmp_path / "r" / "baseline-uniform" / "eval.json").is_file()


@pytest.mark.parametrize("override,needle", [
    ("mixer.probe_steps=0", "mixer.probe_steps"),
    ("mixer.gamma=-1", "mixer.gamma"),
    ("mixer.eta_alpha=0", "mixer.eta_alpha"),
    ("mixer.method=nosuch", "mixer.method"),
    ("mixer.target=[nosuch]", "mixer.target"),
    ("mixer.floor=0.5", "mixer.floor"),
])
def test_bad_mixer_settings(setup, tmp_path, capsys, override, needle):
    _, path, _, _ = setup
    rc = main(["optimize", str(path), "--out", str(tmp_path / "o"), "-q", "--set", override])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]
    assert not (tmp_path / "o").exists()


def test_a_baseline_equal_to_the_learned_mixture_is_not_trained_twice(tmp_path, cli):
    """Two trainings of one mixture, seed and model are the same training: run reuses it for the baseline."""
    from conftest import tiny_config

    path = tiny_config(tmp_path, mixer={"method": "uniform"}, train={"steps": 4})
    out = tmp_path / "run"
    rc, _, err = cli("run", path, "--out", out, "--baseline", "uniform")
    assert rc == 0, err
    base = json.loads((out / "baseline-uniform" / "eval.json").read_text())
    learned = json.loads((out / "eval.json").read_text())
    assert "same_as" in base and base["test_loss"] == learned["test_loss"]
    assert not (out / "baseline-uniform" / "model").exists() and "not repeated" in err
