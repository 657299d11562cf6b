"""Mixture weights as files and arguments: `{"domain_weights": {name: weight}}`, `uniform`, `natural`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.config import check_weights
from tandem.errors import InputError


def uniform(names: list[str]) -> dict[str, float]:
    return {d: 1.0 / len(names) for d in names}


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
    from tandem import schema

    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        from tandem.config import parse_yaml

        text = schema.read_text(path, "weights file")
        try:
            obj = parse_yaml(text)
        except yaml.YAMLError as err:
            raise InputError(f"{path}: invalid YAML ({getattr(err, 'problem', None) or err})") from None
    else:
        obj = schema.read_json(path, what="weights file")
    return _mixture_of(obj, path), obj


def read_weights_file(path: Path | str, names: list[str]) -> dict[str, float]:
    """Read and validate a weights file against the config's domains (order of `names`)."""
    w = check_weights(read_mixture_file(path)[0], names, f"{path}: domain_weights")
    return {d: w[d] for d in names}


def resolve_weights(spec: str | dict[str, float], names: list[str],
                    natural: dict[str, float] | None = None) -> dict[str, float]:
    """The one resolver of a mixture: `uniform`, `natural` (token-proportional; needs the train token counts), a
    weights file path, or a {domain: weight} map (already validated; a domain it leaves out gets 0). With the
    natural weights at hand, uniform leaves out the domains without a train split (target-only)."""
    if isinstance(spec, dict):
        return {d: float(spec.get(d, 0.0)) for d in names}
    if spec == "uniform":
        if natural is None:
            return uniform(names)
        k = sum(natural[d] > 0 for d in names)
        return {d: (1.0 / k if natural[d] > 0 else 0.0) for d in names}
    if spec == "natural":
        if natural is None:
            raise ValueError("natural weights need the prepared data")
        return {d: natural[d] for d in names}
    return read_weights_file(spec, names)


def as_array(weights: dict[str, float], names: list[str]) -> np.ndarray:
    return np.array([weights[d] for d in names], dtype=np.float64)
