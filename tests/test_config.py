"""Config loading: defaults, overrides, relative paths, and one-line errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tandem.config import Config, apply_overrides, check_weights, config_from_dict, load_config
from tandem.errors import InputError


def _raw(tmp_path: Path) -> dict:
    return {"data": {"domains": {"a": {"train": "a.jsonl"}, "b": {"train": ["b1.jsonl", "b2.jsonl"], "valid": "bv.jsonl"}}}}


def _write(tmp_path: Path, raw) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return p


def _error(tmp_path: Path, raw, overrides=None) -> str:
    with pytest.raises(InputError) as ei:
        load_config(_write(tmp_path, raw), overrides)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_defaults_order_and_relative_paths(tmp_path):
    cfg = load_config(_write(tmp_path, _raw(tmp_path)))
    assert cfg.domain_names == ["a", "b"]
    assert cfg.seed == 0 and cfg.train.steps == 200 and cfg.model.preset == "small"
    assert cfg.data.text_field == "text" and cfg.data.append_eos is True
    # Relative paths resolve against the config's folder, absolute ones stay.
    assert cfg.resolve("x/y.jsonl") == tmp_path.resolve() / "x/y.jsonl"
    assert cfg.resolve("/abs/z") == Path("/abs/z")
    assert cfg.resolve(cfg.data.cache_dir) == tmp_path.resolve() / ".tandem_cache"
    assert cfg.data.domains["b"].train == ["b1.jsonl", "b2.jsonl"]
    assert cfg.data.domains["a"].valid is None
    # base_dir is not part of the serialised config.
    assert "base_dir" not in cfg.to_dict()


def test_overrides_are_parsed_as_yaml(tmp_path):
    cfg = load_config(
        _write(tmp_path, _raw(tmp_path)),
        ["train.steps=7", "train.lr=0.5", "model.preset=tiny", "data.domains.a.valid=[v1.jsonl, v2.jsonl]", "seed=3",
         "train.device=cpu"],
    )
    assert cfg.train.steps == 7 and isinstance(cfg.train.steps, int)
    assert cfg.train.lr == 0.5
    assert cfg.model.preset == "tiny"
    assert cfg.data.domains["a"].valid == ["v1.jsonl", "v2.jsonl"]
    assert cfg.seed == 3
    assert cfg.train.device == "cpu"


def test_override_without_equals_and_bad_key():
    with pytest.raises(InputError, match="train.steps200.*KEY=VALUE"):
        apply_overrides({}, ["train.steps200"])
    with pytest.raises(InputError, match="bad override key"):
        apply_overrides({}, ["train..steps=1"])
    with pytest.raises(InputError, match="'seed' is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=1"])


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (["train.stpes=3"], ["unknown key 'train.stpes'", "did you mean 'steps'"]),
        (["tokenizer.vocab_sise=300"], ["unknown key 'tokenizer.vocab_sise'", "vocab_size"]),
        (["data.domains.a.trian=x"], ["unknown key 'data.domains.a.trian'", "did you mean 'train'"]),
        (["mixer.proxy.n_lyer=2"], ["mixer.proxy.n_lyer", "n_layer"]),
        (["trian.steps=3"], ["unknown key 'trian'"]),
        (["train.steps=abc"], ["train.steps", "integer", "'abc'"]),
        (["train.steps=0"], ["train.steps", "greater than or equal to 1"]),
        (["train.lr=-1"], ["train.lr", "greater than 0"]),
        (["train.micro_batch_size=64", "train.batch_size=8"], ["micro_batch_size must be <= batch_size"]),
        (["model.preset=huge"], ["unknown preset 'huge'"]),
        (["model.preset=hf"], ["preset=hf needs exactly one of hf_path"]),
        (["mixer.floor=0.5"], ["mixer.floor=0.5", "too large"]),
        (["model.preset=hf", "model.hf_path=some/model"], ["model.hf_path", "its own tokenizer", "tokenizer.kind=hf"]),
        (["mixer.proxy.preset=hf", "mixer.proxy.hf_path=m"], ["mixer.proxy.hf_path", "its own tokenizer"]),
        (["mixer.method=odm", "mixer.odm.smoothing=1.5"], ["mixer.odm.smoothing"]),
        (["mixer.aioli.sweeps=0"], ["mixer.aioli.sweeps"]),
        (["mixer.horizon=both"], ["mixer.horizon"]),
        (["mixer.skillit.graph={a: {zz: 1.0}}"], ["mixer.skillit.graph", "unknown skill", "zz"]),
        (["mixer.update=sgd"], ["mixer.update"]),
        (["mixer.initial={a: 0.5, zz: 0.5}"], ["mixer.initial", "unknown domain", "zz"]),
        (["mixer.initial={a: 0.7, b: 0.7}"], ["mixer.initial", "sum to 1"]),
        (["mixer.target=[a, nope]"], ["mixer.target", "nope"]),
        (["data.domains={}"], ["at least one domain"]),
        (["data.domains.a.source=s.jsonl"], ["data.domains.a", "not both"]),
        (["data.domains.a.split={train: 0.9, valid: 0.1}"], ["data.domains.a", "`split` applies only to `source`"]),
        (["train=5"], ["train:"]),
        (["base_dir=/tmp"], ["unknown key 'base_dir'"]),
    ],
)
def test_invalid_fields_name_file_and_field(tmp_path, overrides, needles):
    msg = _error(tmp_path, _raw(tmp_path), overrides)
    assert msg.startswith(str(tmp_path / "cfg.yaml"))
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize(
    "domain, needle",
    [
        ({"source": "s.jsonl"}, "needs `split` fractions"),
        ({"source": "s.jsonl", "split": {"train": 0.5, "valid": 0.2}}, "sum to 1"),
        ({"source": "s.jsonl", "split": {"train": 0.9, "dev": 0.1}}, "unknown split"),
        ({"source": "s.jsonl", "split": {"train": 1.5, "valid": -0.5}}, "non-negative"),
        ({"text_field": "body"}, "needs `train`"),
        ({"train": "t.jsonl", "format": "xml"}, "format"),
    ],
)
def test_domain_layouts(tmp_path, domain, needle):
    msg = _error(tmp_path, {"data": {"domains": {"d": domain}}})
    assert "data.domains.d" in msg and needle in msg, msg


def test_target_only_domains(tmp_path):
    """A domain with valid/test alone is target-only: allowed beside a trained domain, weight 0 in any mixture."""
    ood = {"ood": {"source": "s.jsonl", "split": {"valid": 0.5, "test": 0.5}}, "ev": {"test": "t.jsonl"}}
    raw = {"data": {"domains": {"a": {"train": "a.jsonl"}, **ood}},
           "mixer": {"method": "fixed", "weights": {"a": 1.0}, "target": ["ood"], "floor": 0.9}}
    cfg = load_config(_write(tmp_path, raw))
    assert [cfg.data.domains[d].has_train for d in ("a", "ood", "ev")] == [True, False, False]
    assert cfg.mixer.weights == {"a": 1.0, "ood": 0.0, "ev": 0.0}  # left out means 0; the floor counts domain a only
    assert "no domain has a train split" in _error(tmp_path, {"data": {"domains": ood}})
    raw["mixer"]["weights"] = {"a": 0.5, "ood": 0.5}
    msg = _error(tmp_path, raw)
    assert "mixer.weights.ood" in msg and "no train split" in msg and "must be 0" in msg, msg


def test_source_layout_and_bad_domain_name(tmp_path):
    cfg = load_config(_write(tmp_path, {"data": {"domains": {"d": {"source": "s/*.jsonl", "split": {"train": 0.8, "valid": 0.2}}}}}))
    assert cfg.data.domains["d"].split == {"train": 0.8, "valid": 0.2}
    msg = _error(tmp_path, {"data": {"domains": {"bad name": {"train": "t"}}}})
    assert "'bad name'" in msg


def test_missing_data_section(tmp_path):
    assert "missing required field 'data'" in _error(tmp_path, {"seed": 1})


def test_file_level_errors(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path)  # a folder
    msg = _error(tmp_path, "data:\n  domains: [\n")
    assert "invalid YAML" in msg and "line" in msg
    assert "empty config file" in _error(tmp_path, "")
    assert "mapping at the top level" in _error(tmp_path, "- a\n- b\n")
    (tmp_path / "cfg.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        load_config(tmp_path / "cfg.yaml")


def test_config_from_dict():
    cfg = config_from_dict({"data": {"domains": {"x": {"train": "x.txt"}}}}, base_dir="/base")
    assert isinstance(cfg, Config) and cfg.resolve("x.txt") == Path("/base/x.txt")
    with pytest.raises(InputError, match="mapping"):
        config_from_dict(["not", "a", "dict"])
    with pytest.raises(InputError, match="base_dir"):
        config_from_dict({"base_dir": "x", "data": {"domains": {"x": {"train": "x.txt"}}}})


def test_check_weights():
    names = ["a", "b", "c"]
    assert check_weights({"a": 0.5, "b": 0.25, "c": 0.25}, names, "w") == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert check_weights({"a": 1, "b": 0, "c": 0}, names, "w") == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert check_weights({"a": 1.0}, names, "w", allow_missing=True) == {"a": 1.0}
    cases = [
        ({"a": -0.5, "b": 1.0, "c": 0.5}, "w.a: expected a finite non-negative number"),
        ({"a": float("nan"), "b": 0.5, "c": 0.5}, "w.a"),
        ({"a": float("inf"), "b": 0.5, "c": 0.5}, "w.a"),
        ({"a": True, "b": 0.0, "c": 0.0}, "w.a"),
        ({"a": "0.5", "b": 0.25, "c": 0.25}, "w.a"),
        ({"a": 0.2, "b": 0.2, "c": 0.2}, "sum to 1, got 0.6"),
        ({"a": 0.5, "b": 0.5}, "missing domain(s) ['c']"),
        ({"a": 0.5, "b": 0.25, "c": 0.25, "d": 0.0}, "unknown domain(s) ['d']"),
        ({}, "expected a mapping"),
        ([0.5, 0.5], "expected a mapping"),
    ]
    for w, needle in cases:
        with pytest.raises(ValueError) as ei:
            check_weights(w, names, "w")
        assert needle in str(ei.value), (w, str(ei.value))


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")))
def test_every_shipped_config_loads(name):
    """The configs the README and scripts run are valid configs (their data need not be built for this)."""
    from tandem.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert cfg.data.domains


def test_proxy_target_is_the_targets_own_architecture(tmp_path):
    """mixer.proxy: target (in the mixer, from --set, or in a method's own section) is the config's model."""
    from conftest import tiny_config
    from tandem.config import ModelConfig
    from tandem.mixing.methods import resolve_mixer

    path = tiny_config(tmp_path, model={"preset": "tiny", "n_layer": 2, "n_embd": 48})
    cfg = load_config(path, ["mixer.proxy=target"])
    assert isinstance(cfg.mixer.proxy, ModelConfig) and cfg.mixer.proxy == cfg.model
    assert cfg.mixer.proxy is not cfg.model  # a copy: editing one never edits the other
    plain = load_config(path)
    assert plain.mixer.proxy != plain.model  # the default stays the small proxy
    raw = yaml.safe_load(path.read_text())
    raw["methods"] = {"doremi": {"proxy": "target"}}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert resolve_mixer(cfg, "doremi").proxy == cfg.model
    assert resolve_mixer(cfg, "tandem").proxy != cfg.model
    with pytest.raises(InputError, match="mixer.proxy"):
        load_config(path, ["mixer.proxy=targett"])
