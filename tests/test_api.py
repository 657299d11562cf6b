"""The Python API runs the same jobs as the CLI and returns what they wrote."""

from __future__ import annotations

import json

import pytest

import tandem
from conftest import tiny_config
from tandem.errors import InputError

MIXER = {"episodes": 3, "probe_steps": 1, "free_steps": 1, "eval_sequences": 2}


def test_optimize_then_train_from_python(tmp_path):
    path = tiny_config(tmp_path, mixer=MIXER, train={"steps": 6})
    w = tandem.optimize(str(path), out=str(tmp_path / "opt"))  # a config path and an output folder, as strings
    assert w == json.loads((tmp_path / "opt" / "weights.json").read_text())
    names = {"code", "docs", "prose"}
    assert set(w["domain_weights"]) == names and sum(w["domain_weights"].values()) == pytest.approx(1)
    # every weight comes with its bootstrap interval over the episodes, and whether its move is within noise
    assert set(w["interval"]) == names and set(w["within_noise"]) == names and w["interval_level"] == 0.9
    assert all(0 <= lo <= hi <= 1 for lo, hi in w["interval"].values())
    ev = tandem.train(path, tmp_path / "train", weights=w["domain_weights"])
    assert ev["weights"] == w["domain_weights"] and set(ev["test_loss"]["per_domain"]) == {"code", "docs", "prose"}
    with pytest.raises(InputError, match="already holds"):
        tandem.optimize(path, tmp_path / "opt")
    again = tandem.optimize(path, tmp_path / "opt", resume=True)
    assert again["domain_weights"] == w["domain_weights"]


def test_compare_from_python(tmp_path):
    path = tiny_config(tmp_path, mixer=MIXER, train={"steps": 4})
    res = tandem.compare(path, tmp_path / "cmp", methods=["uniform", "odm"], seeds=2)
    assert {(r["method"], r["seed"]) for r in res["runs"]} == {(m, s) for m in ("uniform", "odm") for s in (0, 1)}
    assert res == json.loads((tmp_path / "cmp" / "results.json").read_text())
    with pytest.raises(InputError, match="--methods"):
        tandem.compare(path, tmp_path / "cmp2", methods=["uniform", "uniform"])


def test_a_config_given_as_a_dict_runs_as_its_file_does(tmp_path, monkeypatch):
    import yaml

    path = tiny_config(tmp_path, mixer=MIXER, train={"steps": 4})
    from_file = tandem.optimize(path, tmp_path / "file", overrides=["mixer.episodes=2"])
    raw = yaml.safe_load(path.read_text())
    monkeypatch.chdir(path.parent)  # a dict's relative paths are read from the working directory
    from_dict = tandem.optimize(raw, tmp_path / "dict", overrides=["mixer.episodes=2"])
    assert from_dict["domain_weights"] == from_file["domain_weights"] and from_dict["episodes"] == 2
    assert raw == yaml.safe_load(path.read_text())  # the caller's dict is not changed by the overrides
    with pytest.raises(InputError, match="mixer.episods"):
        tandem.optimize({**raw, "mixer": {"episods": 2}}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match="expected a path, a dict"):
        tandem.optimize(5, tmp_path / "bad")


def test_the_package_lists_its_api():
    import tandem

    public = [n for n in dir(tandem) if not n.startswith("_")]
    assert {"optimize", "train", "recommend", "compare", "InputError", "load_config"} <= set(public)
    assert tandem.InputError is InputError and callable(tandem.compare)


def test_relative_paths_resolve_against_the_configs_folder_for_a_file_and_a_dict_alike(tmp_path, monkeypatch):
    """One rule: a file's relative paths against the folder it lies in, a dict's against base_dir (default: the
    working directory)."""
    import os

    import yaml

    from tandem.api import _config
    from tandem.config import load_config

    raw = yaml.safe_load(tiny_config(tmp_path / "project").read_text())
    folder = tmp_path / "project" / "configs"
    folder.mkdir()
    for spec in raw["data"]["domains"].values():  # the data's paths relative to the config's folder
        for split, path in spec.items():
            spec[split] = os.path.relpath(tmp_path / "project" / path, folder)  # an absolute path stays itself
    raw["data"]["cache_dir"] = "../cache"
    shipped = folder / "config.yaml"
    shipped.write_text(yaml.safe_dump(raw))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def read(cfg):  # what the config reads (besides a config file) and where it caches
        return cfg.to_dict(), [p for p in cfg.input_paths() if p != shipped.resolve()], cfg.resolve(cfg.data.cache_dir)

    monkeypatch.chdir(elsewhere)  # a working directory unrelated to the config
    assert load_config(shipped).input_paths()[0] == shipped.resolve()  # the file is an input too
    from_file = read(load_config(shipped))
    assert from_file[2] == (tmp_path / "project" / "cache").resolve()
    assert read(_config(raw, None, base_dir=folder)) == from_file
    monkeypatch.chdir(folder)  # the default base of a dict
    assert read(_config(raw, None)) == from_file
    monkeypatch.chdir(elsewhere)
    moved = _config(raw, None)  # the same dict from elsewhere reads elsewhere
    assert moved.resolve(moved.data.cache_dir) == (tmp_path / "cache").resolve()
    with pytest.raises(InputError, match="base_dir: applies to a config given as a dict"):
        tandem.optimize(shipped, tmp_path / "out", base_dir=folder)
    with pytest.raises(InputError, match="base_dir: .* is not a folder"):
        tandem.optimize(raw, tmp_path / "out", base_dir=tmp_path / "missing")
    assert not (tmp_path / "out").exists()


def test_the_api_refuses_what_the_cli_refuses(tmp_path):
    """Bad input raises InputError with the CLI's message, before any work: an output folder that is a file, weights
    beside an online method (which chooses the mixture itself), a number of seeds that is not a whole number."""
    path = tiny_config(tmp_path, mixer=MIXER, train={"steps": 2})
    afile = tmp_path / "afile"
    afile.write_text("x")
    for call in (lambda: tandem.optimize(path, afile), lambda: tandem.train(path, afile)):
        with pytest.raises(InputError, match="exists and is not a folder"):
            call()
    assert afile.read_text() == "x"
    one_hot = {"code": 1.0, "docs": 0.0, "prose": 0.0}
    with pytest.raises(InputError, match="leave out weights"):
        tandem.train(path, tmp_path / "online", weights=one_hot, overrides=["mixer.method=odm"], online=True)
    assert not (tmp_path / "online").exists()
    for seeds in (1.5, True, "2"):
        with pytest.raises(InputError, match="--seeds"):
            tandem.compare(path, tmp_path / "cmp", methods=["uniform"], seeds=seeds)
    assert not (tmp_path / "cmp").exists()
