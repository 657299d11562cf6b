"""Learned weights in the formats other trainers read (`tandem export`).

| format     | file                                             | read by                                                   |
|------------|--------------------------------------------------|-----------------------------------------------------------|
| `megatron` | one `WEIGHT PREFIX` pair per line                | Megatron-LM `--data-args-path FILE` (or `--data-path $(cat FILE)`) |
| `doremi`   | `{"train_domain_weights", "eval_domain_weights"}`| DoReMi's `--domain_config_path`                            |
| `datasets` | `{"domains": [...], "probabilities": [...]}`     | `datasets.interleave_datasets(probabilities=...)`          |
| `yaml`     | `domain: weight` per line                        | anything that reads YAML (also `mixer.weights` here)       |

Weights come from a `weights.json` (`tandem optimize` / `tandem run`), a `results.json` of `tandem compare`
(one method, averaged over seeds), or a folder holding either.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tandem.config import check_weights
from tandem.errors import InputError

FORMATS = ("megatron", "doremi", "datasets", "yaml")


def read_weights(path: str | Path, method: str | None = None) -> tuple[dict[str, float], dict]:
    """The mixture in a weights file (or a compare results file), validated; returns (weights, the file's JSON).

    For a compare results file `method` picks the run (mean over its seeds); for a folder, its weights.json or
    results.json is read.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("weights.json", "results.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise InputError(f"{path}: no weights.json or results.json in this folder")
    from tandem import schema
    from tandem.schema import read_mixture_file

    obj = None if path.suffix.lower() in (".yaml", ".yml") else schema.read_json(path, what="weights file")
    if isinstance(obj, dict) and isinstance(obj.get("runs"), list):
        schema.read_compare_json(path, full=False)  # the whole file to its schema, then the method's mean
        weights = _compare_weights(obj, path, method)
    else:
        weights, obj = read_mixture_file(path)
        if isinstance(obj, dict) and isinstance(obj.get("domain_weights"), dict):
            schema.check(obj, schema.WEIGHTS, str(path))
            if method is not None and obj.get("method") not in (None, method):
                raise InputError(f"{path}: holds the weights of method {obj.get('method')!r}, not --method {method!r}")
        if not isinstance(obj, dict):
            obj = {}
    checked = check_weights(weights, list(weights), f"{path}: domain_weights")
    return {d: float(checked[d]) for d in weights}, obj


def _compare_weights(obj: dict, path: Path, method: str | None) -> dict[str, float]:
    methods = list(dict.fromkeys(r.get("method") for r in obj["runs"] if isinstance(r, dict)))
    if method is None:
        if len(methods) != 1:
            raise InputError(f"{path}: a comparison of {methods}; pick one with --method")
        method = methods[0]
    runs = [r for r in obj["runs"] if isinstance(r, dict) and r.get("method") == method]
    if not runs:
        raise InputError(f"{path}: --method {method!r} not in this comparison; expected one of {methods}")
    names = list(runs[0].get("weights") or {})
    if not names or any(list(r.get("weights") or {}) != names for r in runs):
        raise InputError(f"{path}: runs of {method!r} lack weights or name different domains")
    mean = {d: sum(float(r["weights"][d]) for r in runs) / len(runs) for d in names}
    total = sum(mean.values())
    if not total > 0 or any(v < 0 for v in mean.values()):
        raise InputError(f"{path}: the weights of {method!r} must be non-negative with a positive sum, got {mean}")
    return {d: v / total for d, v in mean.items()}


def exact_probabilities(weights: list[float]) -> list[float]:
    """Renormalised in float64 so the sum is 1 to rounding: numpy's `choice(p=...)` (behind `interleave_datasets`)
    rejects sums off by more than ~1e-8, and weights files only promise 1e-6."""
    total = math.fsum(weights)
    p = [w / total for w in weights]
    # Put the last rounding residue on the largest entry, where it changes the mixture least.
    k = max(range(len(p)), key=p.__getitem__)
    p[k] += 1.0 - math.fsum(p)
    return p


def _order(weights: dict[str, float], order: list[str] | None, source: str) -> list[str]:
    if order is None:
        return list(weights)
    unknown = [d for d in order if d not in weights]
    missing = [d for d in weights if d not in order]
    if unknown or missing or len(set(order)) != len(order):
        raise InputError(f"--order: expected each of {list(weights)} exactly once (from {source}), got {order}")
    return order


def megatron_blend(weights: dict[str, float], prefix_template: str = "{domain}", prefixes: dict[str, str] | None = None,
                   order: list[str] | None = None) -> str:
    """Megatron-LM's blend: `WEIGHT PREFIX` pairs, one per line; Megatron splits the file on whitespace and reads
    alternating weights and data prefixes (the `.bin`/`.idx` pair without extension). Zero-weight domains are left
    out (Megatron would build an empty dataset for them)."""
    prefixes = dict(prefixes or {})
    unknown = sorted(set(prefixes) - set(weights))
    if unknown:
        raise InputError(f"--prefix: unknown domain(s) {unknown}; expected some of {list(weights)}")
    lines = []
    for d in _order(weights, order, "the weights file"):
        if weights[d] <= 0:
            continue
        if d in prefixes:
            prefix = prefixes[d]
        else:
            if "{domain}" not in prefix_template:
                raise InputError(f"--prefix-template {prefix_template!r}: needs '{{domain}}' (or a --prefix for domain {d})")
            prefix = prefix_template.replace("{domain}", d)
        if not prefix or any(c.isspace() for c in prefix):
            raise InputError(f"data prefix {prefix!r} of domain {d}: must be non-empty without whitespace (Megatron "
                             "splits the blend on whitespace)")
        lines.append(f"{weights[d]:.10g} {prefix}")
    return "\n".join(lines) + "\n"


def doremi_config(weights: dict[str, float], eval_weights: dict[str, float] | None = None) -> str:
    """DoReMi's domain config: the mixture to train on and the one to evaluate with (default: uniform)."""
    eval_weights = eval_weights or {d: 1.0 / len(weights) for d in weights}
    return json.dumps({"train_domain_weights": weights, "eval_domain_weights": eval_weights}, indent=2) + "\n"


def datasets_probabilities(weights: dict[str, float], order: list[str] | None = None,
                           rows_per_document: dict[str, float] | None = None, source: str = "the weights file") -> dict:
    """`{"domains": [...], "probabilities": [...]}` in an explicit order, the order the datasets must be passed in.

    `interleave_datasets` draws documents, while a weight is a share of training rows (sequences of train.seq_len
    tokens, or SFT examples): a domain's document probability is its weight divided by its rows per document,
    renormalised. Without rows_per_document the conversion cannot be made, and that is an error, not a guess."""
    if rows_per_document is None or any(d not in rows_per_document for d in weights):
        raise InputError(f"{source}: --format datasets needs each domain's rows_per_document (interleave_datasets "
                         f"samples documents, the weights are shares of tokens); export a weights.json written by "
                         f"tandem optimize or run, or a results.json of tandem compare (a comparison run before "
                         f"this field existed gets it by rerunning: its finished runs are kept)")
    from tandem.schema import number

    rows = {d: number(rows_per_document[d], f"{source}: rows_per_document.{d}") for d in weights}
    bad = [d for d in weights if rows[d] < 0 or (rows[d] == 0 and float(weights[d]) > 0)]
    if bad:
        raise InputError(f"{source}: rows_per_document.{bad[0]}: expected a positive number for a domain with weight "
                         f"{float(weights[bad[0]]):g}, got {rows[bad[0]]:g}")
    # A domain without a train split (target-only: weight 0, no documents to draw) has no dataset to interleave.
    absent = [d for d in weights if rows[d] == 0 and float(weights[d]) == 0]
    names = _order({d: w for d, w in weights.items() if d not in absent},
                   None if order is None else [d for d in order if d not in absent], source)
    per_doc = [float(weights[d]) / rows[d] for d in names]
    out = {"domains": names, "probabilities": exact_probabilities(per_doc),
           "weights": [float(weights[d]) for d in names],
           "note": "probabilities are per document (interleave_datasets, with stopping_strategy='all_exhausted': the "
                   "default first_exhausted stops when one domain runs out): each domain's weight divided by its mean "
                   "document length in training rows (rows_per_document), renormalised; weights are the mixture's "
                   "token shares"}
    if absent:
        out["left_out"] = {d: "no train split (a target-only domain)" for d in absent}
    return out


def plain_yaml(weights: dict[str, float], order: list[str] | None = None) -> str:
    import yaml

    names = _order(weights, order, "the weights file")
    return yaml.safe_dump({d: float(weights[d]) for d in names}, sort_keys=False)


def export(weights: dict[str, float], fmt: str, source: dict | None = None, order: list[str] | None = None,
           prefix_template: str = "{domain}", prefixes: dict[str, str] | None = None,
           where: str = "the weights file") -> str:
    """The text of `weights` in format `fmt` (one of FORMATS); `where` names the file they came from in errors."""
    if fmt == "megatron":
        return megatron_blend(weights, prefix_template, prefixes, order)
    if fmt == "doremi":
        target = (source or {}).get("target")
        names = _order(weights, order, "the weights file")
        ev = {d: float(target[d]) for d in names} if isinstance(target, dict) and set(target) == set(weights) else None
        return doremi_config({d: weights[d] for d in names}, ev)
    if fmt == "datasets":
        spec = datasets_probabilities(weights, order, (source or {}).get("rows_per_document"), where)
        # what the probabilities assume, in the file itself: they are per document for these rows and this tokenizer
        spec["assumes"] = {"stopping_strategy": "all_exhausted",
                           **((source or {}).get("rows_measured_with") or {})}
        return json.dumps(spec, indent=2) + "\n"
    if fmt == "yaml":
        return plain_yaml(weights, order)
    raise InputError(f"--format: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
