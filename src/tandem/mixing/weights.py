"""Mixture weights as files and arguments: `{"domain_weights": {name: weight}}`, `uniform`, `natural`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.config import check_weights
from tandem.errors import InputError


def uniform(names: list[str]) -> dict[str, float]:
    return {d: 1.0 / len(names) for d in names}


def read_weights_file(path: Path | str, names: list[str]) -> dict[str, float]:
    """Read and validate a weights file against the config's domains (order of `names`)."""
    from tandem.schema import blend_domains, read_mixture_file

    mixture, obj = read_mixture_file(path)
    if isinstance(obj, dict) and "megatron_blend" in obj:  # prefixes, and the zero-weight domains left out
        mixture = blend_domains(mixture, list(names), str(path))
    w = check_weights(mixture, names, f"{path}: domain_weights")
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
