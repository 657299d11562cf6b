"""Fuzz the config loader: whatever a user writes (a file, a mapping, --set overrides), the answer is a Config or
an InputError, never another exception."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tandem.config import Config, DomainConfig, apply_overrides, config_from_dict, load_config
from tandem.errors import InputError

BASE = {"data": {"domains": {"a": {"train": "a.jsonl"}, "b": {"source": "b.jsonl", "split": {"train": 0.8, "valid": 0.2}}}}}
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        if name == "base_dir":
            continue
        out.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _paths(ann, prefix + name + ".")
    return out


PATHS = _paths(Config) + [f"data.domains.{d}.{f}" for d in ("a", "b", "new") for f in DomainConfig.model_fields]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["uniform", "natural", "tandem", "eg", "hf", "tiny", "stop", "1e999", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8) | st.sampled_from(PATHS), inner, max_size=4)),
    max_leaves=12,
)
keys = st.one_of(st.sampled_from(PATHS), st.text(max_size=15))


def _outcome(load) -> None:
    try:
        cfg = load()
    except InputError as err:
        assert str(err)
        return
    assert isinstance(cfg, Config)


def _set(raw: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    cur = raw
    for p in parts[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=4))
def test_mappings_give_a_config_or_an_input_error(edits):
    import copy

    raw = copy.deepcopy(BASE)
    for path, value in edits:
        _set(raw, path, value)
    _outcome(lambda: config_from_dict(raw, source="fuzz.yaml"))


@FUZZ
@given(top=values)
def test_any_top_level_value(top):
    _outcome(lambda: config_from_dict(top, source="fuzz.yaml"))


@FUZZ
@given(overrides=st.lists(st.tuples(keys, st.text(max_size=25)).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=25),
                          min_size=1, max_size=4))
def test_set_overrides_give_a_config_or_an_input_error(overrides):
    import copy

    _outcome(lambda: config_from_dict(apply_overrides(copy.deepcopy(BASE), overrides), source="fuzz.yaml"))


@FUZZ
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                      values.map(lambda v: yaml.safe_dump({**BASE, "train": v}).encode())))
def test_files_give_a_config_or_an_input_error(body, tmp_path):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(body)
    _outcome(lambda: load_config(path))


def _with(override: str):
    return config_from_dict(apply_overrides(yaml.safe_load(yaml.safe_dump(BASE)), [override]), source="fuzz.yaml")


@pytest.mark.parametrize("key", ["train.lr", "mixer.gamma", "mixer.eta_alpha", "mixer.smoothing", "train.steps",
                                 "mixer.episodes", "mixer.probe_steps", "mixer.floor", "train.grad_clip"])
def test_nan_is_refused_where_a_number_is_expected(key):
    for text in ("nan", ".nan", "NaN"):
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            _with(f"{key}={text}")


# Found by fuzzing; in tandem/config.py (reported): an infinite step size passes validation and only fails later
# as a numeric fault. Fix: ConfigDict(allow_inf_nan=False) on the sections, or finite checks on these fields.
@pytest.mark.parametrize("key", ["train.lr", "mixer.gamma", "mixer.eta_alpha", "mixer.lr"])
def test_infinite_step_sizes_are_refused(key):
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        _with(f"{key}=.inf")


# Found by fuzzing; in tandem/config.py (reported): YAML values that PyYAML fails to construct raise ValueError,
# and very deep nesting raises RecursionError, both escaping load_config / apply_overrides as tracebacks.
@pytest.mark.parametrize("text", ["seed: 2020-99-99\n", "[" * 1500 + "\n"], ids=["bad-date", "deep-nesting"])
def test_yaml_construction_errors_are_input_errors(text, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError):
        load_config(path)


def test_override_with_an_impossible_date_is_an_input_error():
    # The value is kept as text, so validation names the field instead of PyYAML raising a traceback.
    with pytest.raises(InputError, match="seed"):
        _with("seed=2020-99-99")


@pytest.mark.parametrize("override", ["=\n", "train.ste\nps=1"])
def test_messages_stay_on_one_line_for_keys_with_newlines(override):
    with pytest.raises(InputError) as err:
        config_from_dict(apply_overrides(yaml.safe_load(yaml.safe_dump(BASE)), [override]), source="fuzz.yaml")
    assert "\n" not in str(err.value)
