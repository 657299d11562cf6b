"""Mixture methods behind one interface: `mixer.method` picks a static mixture or a setting of the one loop."""

from __future__ import annotations

import numpy as np

from tandem.config import MixerConfig
from tandem.errors import InputError
from tandem.mixing.loop import LoopSpec

STATIC_METHODS = ("uniform", "natural", "fixed")
LOOP_METHODS = ("tandem",)
METHODS = STATIC_METHODS + LOOP_METHODS


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError(f"mixer.method: unknown method {method!r}; expected one of {', '.join(METHODS)}")


def loop_spec(mc: MixerConfig) -> LoopSpec:
    """The loop settings of a loop-based method."""
    common = dict(
        episodes=mc.episodes, probe_steps=mc.probe_steps, free_steps=mc.free_steps, warmup_steps=mc.warmup_steps,
        gamma=mc.gamma, eta_alpha=mc.eta_alpha, update=mc.update, smoothing=mc.smoothing, floor=mc.floor,
    )
    if mc.method == "tandem":
        return LoopSpec(**common, reference="twin", sync=mc.sync, probe_proxy=True, clip=False)
    raise InputError(f"mixer.method: {mc.method!r} is not a loop method")


def static_weights(mc: MixerConfig, names: list[str], natural: dict[str, float]) -> np.ndarray:
    if mc.method == "uniform":
        return np.full(len(names), 1.0 / len(names))
    if mc.method == "natural":
        return np.array([natural[d] for d in names])
    return np.array([mc.weights[d] for d in names])


def initial_weights(mc: MixerConfig, names: list[str], natural: dict[str, float]) -> np.ndarray:
    if mc.initial == "uniform":
        return np.full(len(names), 1.0 / len(names))
    if mc.initial == "natural":
        return np.array([natural[d] for d in names])
    return np.array([mc.initial[d] for d in names])
