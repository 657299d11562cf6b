"""Every file tandem reads back (its own outputs, a user's weights, checkpoint state, model metadata) goes through
here: parsed with bounded size and depth, then held to a schema, so a hand-edited or damaged file ends as one
InputError naming the file and the field, never as a KeyError three calls later.

A schema is plain data:
- `NUM` a finite number (bools are not numbers), `INT` an integer, `STR`, `BOOL`, `ANY`;
- `{"key": S, ...}` an object with these keys (others allowed); a key wrapped in `opt(...)` may be absent;
- `mapping(S)` an object of any keys whose values are S; `[S]` a list of S; `(S1, S2)` a list of exactly these;
- `maybe(S)` S or null; `one_of(*values)` one of the given values.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tandem.errors import InputError

# The largest file read back as JSON: tandem's own are kilobytes to a few megabytes (a long trajectory).
MAX_JSON_BYTES = 256 << 20


class _Kind:
    def __init__(self, name: str, test):
        self.name, self.test = name, test

    def __repr__(self) -> str:
        return self.name


def _finite(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float (hundreds of digits)
        return False


NUM = _Kind("a finite number", _finite)
INT = _Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63)
STR = _Kind("a string", lambda v: isinstance(v, str))
BOOL = _Kind("true or false", lambda v: isinstance(v, bool))
ANY = _Kind("anything", lambda v: True)


class opt(str):
    """A key that may be absent."""


class mapping:
    def __init__(self, values):
        self.values = values


class maybe:
    def __init__(self, inner):
        self.inner = inner


class one_of:
    def __init__(self, *values):
        self.values = values


def _describe(s) -> str:
    if isinstance(s, _Kind):
        return s.name
    if isinstance(s, maybe):
        return f"{_describe(s.inner)} or null"
    if isinstance(s, one_of):
        return "one of " + ", ".join(repr(v) for v in s.values)
    if isinstance(s, (dict, mapping)):
        return "an object"
    if isinstance(s, (list, tuple)):
        return "a list" if isinstance(s, list) else f"a list of {len(s)}"
    return repr(s)


def _short(v) -> str:
    try:
        r = repr(v)
    except ValueError:  # an integer over Python's digit limit
        r = "a number of thousands of digits"
    return r if len(r) <= 40 else r[:37] + "..."


def check(value, schema, where: str, field: str = "") -> Any:
    """Hold `value` to `schema`; raise InputError(`where: field: expected ..., got ...`) at the first mismatch."""
    def fail(expected: str, got=value):
        at = f"{where}: {field}: " if field else f"{where}: "
        raise InputError(f"{at}expected {expected}, got {_short(got) if not isinstance(got, (dict, list)) else type(got).__name__}")

    def sub(key) -> str:
        return f"{field}.{key}" if field else str(key)

    if isinstance(schema, _Kind):
        if not schema.test(value):
            fail(schema.name)
    elif isinstance(schema, maybe):
        if value is not None:
            check(value, schema.inner, where, field)
    elif isinstance(schema, one_of):
        if isinstance(value, bool) or value not in schema.values:
            fail(_describe(schema))
    elif isinstance(schema, mapping):
        if not isinstance(value, dict):
            fail("an object")
        for k, v in value.items():
            check(v, schema.values, where, sub(k))
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            fail("an object")
        for k, s in schema.items():
            if k not in value:
                if isinstance(k, opt):
                    continue
                at = f"{where}: {field}: " if field else f"{where}: "
                raise InputError(f"{at}missing field '{k}'")
            check(value[k], s, where, sub(k))
    elif isinstance(schema, list):
        if not isinstance(value, list):
            fail("a list")
        for i, v in enumerate(value):
            check(v, schema[0], where, f"{field}[{i}]")
    elif isinstance(schema, tuple):
        if not isinstance(value, list) or len(value) != len(schema):
            fail(_describe(schema))
        for i, (v, s) in enumerate(zip(value, schema)):
            check(v, s, where, f"{field}[{i}]")
    else:
        raise TypeError(f"not a schema: {schema!r}")
    return value


def same_domains(obj: dict, names: list[str], fields: list[str], where: str) -> None:
    """Each of `fields` (those present) maps exactly the domains `names`."""
    for f in fields:
        if f in obj and isinstance(obj[f], dict) and set(obj[f]) != set(names):
            raise InputError(f"{where}: {f}: expected the domains {sorted(names)}, got {sorted(obj[f])}")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs):
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"key {k!r} is given twice")
        out[k] = v
    return out


def parse_json(text: str, where: str):
    """JSON text as tandem reads it: a repeated key, nesting deeper than Python can follow, and integers too long
    to convert are input errors (naming `where`), not exceptions from deep inside."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise InputError(f"{where}: not valid JSON ({err.msg}, line {err.lineno})") from None
    except _DuplicateKey as err:
        raise InputError(f"{where}: {err}") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply") from None
    except ValueError as err:  # an integer literal over Python's digit limit
        raise InputError(f"{where}: not valid JSON ({str(err).splitlines()[0]})") from None


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> str:
    """The UTF-8 text of a regular file, bounded in size; anything else is an InputError naming it."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: expected a regular file ({what}), got "
                         f"{'a folder' if _stat.S_ISDIR(st.st_mode) else 'a pipe, socket or device'}")
    if st.st_size > max_bytes:
        raise InputError(f"{path}: {st.st_size:,} bytes; a {what} is at most {max_bytes:,}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a binary file?)") from None


def read_json(path: str | os.PathLike, schema=None, what: str = "JSON file"):
    """Read a JSON file (bounded size and depth) and hold it to `schema` when given."""
    obj = parse_json(read_text(path, what), str(path))
    return obj if schema is None else check(obj, schema, str(path))


def number(value, where: str) -> float:
    """A finite number as float (not a bool, not a string, not a float-overflowing integer)."""
    check(value, NUM, where)
    return float(value)


# Schemas of the files tandem writes and reads back.
WEIGHTS = {"domain_weights": mapping(NUM), opt("method"): maybe(STR), opt("initial"): mapping(NUM),
           opt("final"): mapping(NUM), opt("average"): mapping(NUM), opt("uncapped"): mapping(NUM),
           opt("interval"): mapping((NUM, NUM)), opt("interval_level"): NUM, opt("within_noise"): mapping(BOOL),
           opt("delta_over_episodes"): mapping({opt("t"): maybe(NUM)}), opt("epochs"): mapping(mapping(NUM)),
           opt("max_epochs"): mapping(maybe(NUM)), opt("target_rows"): NUM,
           opt("rows_per_document"): mapping(NUM)}
WEIGHT_FIELDS = ["initial", "final", "average", "uncapped", "interval", "within_noise", "max_epochs", "rows_per_document"]
TEST_LOSS = {"per_domain": mapping(maybe(NUM)), "average": NUM, "worst": NUM}
EVAL = {"weights": mapping(NUM), "test_loss": TEST_LOSS}
COMPARE_RUN = {"method": STR, "seed": INT, "weights": mapping(NUM), "test_loss": TEST_LOSS,
               opt("valid_loss"): TEST_LOSS, "stage1_wall_s": NUM, "stage1_tokens": NUM,
               opt("config_fingerprint"): STR}
COMPARE = {"runs": [COMPARE_RUN], opt("methods"): [STR], opt("rows_per_document"): mapping(NUM)}
RUN_IDENTITY = {"command": STR, "identity": mapping(maybe(STR))}


def read_weights_json(path: str | os.PathLike) -> dict:
    """A weights.json: the schema, then every per-domain field naming the same domains."""
    w = read_json(path, WEIGHTS, "weights file")
    if "interval" in w and "within_noise" not in w:
        raise InputError(f"{path}: missing field 'within_noise' (it goes with 'interval')")
    same_domains(w, list(w["domain_weights"]), WEIGHT_FIELDS, str(path))
    for lab, ep in (w.get("epochs") or {}).items():
        same_domains({f"epochs.{lab}": ep}, list(w["domain_weights"]), [f"epochs.{lab}"], str(path))
    return w


def read_eval_json(path: str | os.PathLike) -> dict:
    ev = read_json(path, EVAL, "evaluation file")
    # a two-stage run evaluates its fine-tuning tasks beside the pretraining domains the weights mix
    tasks = ev.get("sft_examples")
    evaluated = list(ev["weights"]) + (list(tasks) if isinstance(tasks, dict) else [])
    same_domains({"test_loss.per_domain": ev["test_loss"]["per_domain"]}, evaluated,
                 ["test_loss.per_domain"], str(path))
    return ev


def read_compare_json(path: str | os.PathLike, full: bool = True) -> dict:
    """A compare results.json: every run's losses too when `full` (the report), else its method and weights."""
    res = read_json(path, COMPARE if full else {"runs": [{"method": STR, "weights": mapping(NUM)}],
                                                 opt("rows_per_document"): mapping(NUM)}, "comparison results file")
    runs = res["runs"]
    if not runs:
        raise InputError(f"{path}: runs: expected at least one run, got none")
    names = list(runs[0]["weights"])
    for i, r in enumerate(runs):
        fields = {f"runs[{i}].weights": r["weights"]}
        if full:
            fields[f"runs[{i}].test_loss.per_domain"] = r["test_loss"]["per_domain"]
        same_domains(fields, names, list(fields), str(path))
    return res


# Weights files in every layout tandem writes or reads.


def _mixture_of(obj, path: Path) -> dict:
    """The {domain: weight} map in any of the layouts tandem writes or reads: its own weights.json
    (`domain_weights`), DoReMi's domain config (`train_domain_weights`), the `datasets` export (`domains` and
    `weights`), or a plain {domain: weight} map (JSON or the YAML export)."""
    if isinstance(obj, dict):
        for key in ("domain_weights", "train_domain_weights"):
            if key in obj:
                return obj[key]
        if isinstance(obj.get("domains"), list) and isinstance(obj.get("weights"), list):
            if len(obj["domains"]) != len(obj["weights"]) or not all(isinstance(d, str) for d in obj["domains"]):
                raise InputError(f"{path}: domains and weights: expected two lists of the same length")
            return dict(zip(obj["domains"], obj["weights"]))
        if obj and all(isinstance(k, str) for k in obj):
            return obj
    raise InputError(f'{path}: expected {{"domain_weights": {{domain: weight}}}}, DoReMi\'s '
                     f'{{"train_domain_weights": ...}}, or a plain {{domain: weight}} map')


def read_mixture_file(path: Path | str) -> tuple[dict, object]:
    """(the {domain: weight} map, unchecked, and the whole parsed file) of a weights file: JSON, or YAML by its
    extension, in any layout `_mixture_of` knows."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        from tandem.config import parse_yaml

        text = read_text(path, "weights file")
        try:
            obj = parse_yaml(text)
        except yaml.YAMLError as err:
            raise InputError(f"{path}: invalid YAML ({getattr(err, 'problem', None) or err})") from None
    else:
        text = read_text(path, "weights file")
        blend = _megatron_blend(text)
        if blend is not None:
            return blend, {"megatron_blend": blend}
        obj = parse_json(text, str(path))
    return _mixture_of(obj, path), obj


def _megatron_blend(text: str) -> dict | None:
    """Megatron-LM's blend (`WEIGHT PREFIX` pairs, tandem's `megatron` export) as {prefix: weight}; None when the
    text is not one (JSON, say). Megatron normalises the weights itself, so they need not sum to 1 here."""
    parts = text.split()
    if not parts or len(parts) % 2 or text.lstrip().startswith(("{", "[")):
        return None
    out: dict = {}
    for w, prefix in zip(parts[::2], parts[1::2]):
        try:
            x = float(w)
        except ValueError:
            return None
        if prefix in out:
            return None
        out[prefix] = x
    return out


def blend_domains(blend: dict, names: list[str], where: str) -> dict:
    """A Megatron blend's prefixes as the config's domains: a prefix that is a domain's name, or whose last path
    component is (or starts with `NAME_`, as in `code_text_document`); a domain the blend leaves out weighs 0 (the
    export leaves out zero weights); weights renormalised. Of several names a component starts with (`code` and
    `code_py` in `code_py_text_document`) the longest is the one it names."""
    out = {d: 0.0 for d in names}
    for prefix, w in blend.items():
        if not NUM.test(w) or w < 0:
            raise InputError(f"{where}: the blend's weight of {prefix!r}: expected a finite non-negative number, "
                             f"got {w}")
        base = prefix.rstrip("/").rsplit("/", 1)[-1]
        match = [d for d in names if prefix == d or base == d]
        if not match:
            starts = [d for d in names if base.startswith(d + "_")]
            match = [d for d in starts if len(d) == max(map(len, starts))]
        if len(match) != 1:
            raise InputError(f"{where}: the blend's prefix {prefix!r} names {'no' if not match else 'more than one'} "
                             f"domain of {names}")
        out[match[0]] += float(w)
    total = sum(out.values())
    if not total > 0:
        raise InputError(f"{where}: the blend's weights sum to {total}; expected a positive sum")
    return {d: v / total for d, v in out.items()}
