"""Mixture methods behind one interface: `mixer.method` picks a static mixture or a setting of the one loop.

| method  | reference            | sync | probe            | Delta                          |
|---------|----------------------|------|------------------|--------------------------------|
| tandem  | L_train + L_val/gamma| yes  | K steps of both  | gamma (L_i(w) - L_i(u))        |
| doremi  | frozen, pre-trained  | no   | 1 proxy step     | -mean_t max(l_t(u) - l_t(ref), 0) per domain |
| doge    | L_val only (no moment.)| yes| 1 reference step | L_i(u - step on L_val) - L_i(u)|
| odm     | none                 | -    | 1 proxy step     | -L_i(u) (loss as bandit reward)|

Search methods (tandem.mixing.search) train models at candidate mixtures instead: `grid` (every point of a
simplex grid trains the target), `regmix` (a Dirichlet sweep of proxies, a regression, the best predicted mixture).
"""

from __future__ import annotations

import numpy as np

from tandem.config import MixerConfig
from tandem.errors import InputError
from tandem.mixing.loop import LoopSpec

STATIC_METHODS = ("uniform", "natural", "fixed")
LOOP_METHODS = ("tandem", "doremi", "doge", "odm")
SEARCH_METHODS = ("grid", "regmix")
METHODS = STATIC_METHODS + LOOP_METHODS + SEARCH_METHODS

# Published defaults of each method, used for mixer fields the config does not set explicitly.
METHOD_DEFAULTS = {
    # Delta on train windows the twins never see: measured on the proxy's own (memorised) windows it pushes small,
    # repeated domains down (BENCHMARKS.md, scenarios 2 and 4).
    "tandem": {"held_out_fraction": 0.15, "update": "normalized"},
    # DoReMi's proxy minimises the alpha-reweighted per-domain losses (its minimax objective), not resampled batches.
    "doremi": {"probe_steps": 1, "free_steps": 0, "eta_alpha": 1.0, "smoothing": 1e-3, "gamma": 1.0,
               "sampling": "reweight"},
    "doge": {"probe_steps": 1, "gamma": 1.0},
    # ODM: one step per round, exploration mixing of 1/M-scale (its epsilon) as smoothing.
    "odm": {"probe_steps": 1, "free_steps": 0, "eta_alpha": 0.1, "smoothing": 0.05, "gamma": 1.0},
}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError(f"mixer.method: unknown method {method!r}; expected one of {', '.join(METHODS)}")


def effective(mc: MixerConfig) -> MixerConfig:
    """The mixer settings with the method's defaults filled in where the config is silent."""
    defaults = {k: v for k, v in METHOD_DEFAULTS.get(mc.method, {}).items() if k not in mc.model_fields_set}
    mc = mc.model_copy(update=defaults) if defaults else mc
    if mc.eta_alpha is None:  # its meaning depends on the rule: a step per standard error, or per unit of Delta
        mc = mc.model_copy(update={"eta_alpha": 0.1 if mc.update == "normalized" else 1.0})
    return mc


def loop_spec(mc: MixerConfig) -> LoopSpec:
    """The loop settings of a loop-based method."""
    mc = effective(mc)
    common = dict(
        episodes=mc.episodes, probe_steps=mc.probe_steps, free_steps=mc.free_steps, warmup_steps=mc.warmup_steps,
        gamma=mc.gamma, eta_alpha=mc.eta_alpha, update=mc.update, smoothing=mc.smoothing, floor=mc.floor,
        memory=mc.memory, threshold=mc.threshold, max_step=mc.max_step,
    )
    if mc.method == "tandem":
        return LoopSpec(**common, reference="twin", sync=mc.sync, probe_proxy=True, clip=False)
    if mc.method == "doremi":
        return LoopSpec(**common, reference="frozen", sync=False, probe_proxy=True, clip=True)
    if mc.method == "doge":
        return LoopSpec(**common, reference="valid", sync=True, probe_proxy=False, clip=False)
    if mc.method == "odm":
        return LoopSpec(**common, reference="none", sync=False, probe_proxy=True, clip=False)
    raise InputError(f"mixer.method: {mc.method!r} is not a loop method")


def mixture_array(spec: str | dict[str, float], names: list[str], natural: dict[str, float]) -> np.ndarray:
    """`uniform`, `natural` or a {domain: weight} map, as an array in the order of `names`."""
    if spec == "uniform":
        return np.full(len(names), 1.0 / len(names))
    source = natural if spec == "natural" else spec
    return np.array([source[d] for d in names])


def static_weights(mc: MixerConfig, names: list[str], natural: dict[str, float]) -> np.ndarray:
    return mixture_array(mc.weights if mc.method == "fixed" else mc.method, names, natural)


def initial_weights(mc: MixerConfig, names: list[str], natural: dict[str, float]) -> np.ndarray:
    return mixture_array(mc.initial, names, natural)
