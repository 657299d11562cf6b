"""Mixture methods behind one interface: `mixer.method` picks a static mixture, a setting of the one loop, an online
peer or a search.

| method  | reference            | sync | probe            | Delta                          |
|---------|----------------------|------|------------------|--------------------------------|
| tandem  | L_train + L_val/gamma| yes  | K steps of both  | gamma (L_i(w) - L_i(u))        |
| doremi  | frozen, pre-trained  | no   | 1 proxy step     | -mean_t max(l_t(u) - l_t(ref), 0) per domain |
| doge    | L_val only (no moment.)| yes| 1 reference step | min(L_i(u - lr g_val) - L_i(u), 0) / |g_val|, every step |

Online methods (tandem.mixing.online) train one proxy and move the mixture by what it observes, with no
reference: `odm` (EXP3 on training losses), `aioli` (probes estimate a linear mixing law), `skillit` (a skills
graph and validation losses), `ado` (per-domain power laws of the training loss).

Search methods (tandem.mixing.search) train models at candidate mixtures instead: `grid` (every point of a
simplex grid trains the target), `regmix` (a Dirichlet sweep of proxies, a regression, the best predicted mixture).
"""

from __future__ import annotations

import numpy as np

from tandem.config import METHOD_NAMES, MixerConfig
from tandem.errors import InputError
from tandem.mixing.loop import LoopSpec
from tandem.mixing.weights import as_array, resolve_weights

STATIC_METHODS = ("uniform", "natural", "fixed")
LOOP_METHODS = ("tandem", "doremi", "doge")
ONLINE_METHODS = ("odm", "aioli", "skillit", "ado")
SEARCH_METHODS = ("grid", "regmix")
METHODS = STATIC_METHODS + LOOP_METHODS + ONLINE_METHODS + SEARCH_METHODS
assert METHODS == METHOD_NAMES, "tandem.config.METHOD_NAMES must list the methods defined here"

# Published defaults of each method, used for mixer fields the config does not set explicitly.
METHOD_DEFAULTS = {
    # Delta on the rows the proxy trains on (held_out_fraction 0, the field's default: the penalty's gradient,
    # ALGORITHM.md), the standardised step, and the last mixture, which holds all the evidence under that step.
    # gamma 10: nearer the exact hypergradient on the test bed with a memorised domain, at no loss of Delta's
    # signal-to-noise on real domains (BENCHMARKS.md, "TANDEM finding the mixture", decision 3).
    "tandem": {"update": "standardized", "report": "final", "gamma": 10.0},
    # DoReMi's proxy minimises the alpha-reweighted per-domain losses (its minimax objective), not resampled batches.
    "doremi": {"probe_steps": 1, "free_steps": 0, "eta_alpha": 1.0, "smoothing": 1e-3, "gamma": 1.0,
               "sampling": "reweight"},
    # DoGE updates alpha every step (one probe, one proxy step on the alpha-reweighted loss); its step is W / mu with
    # W = lr_t <g_i, g_val> / mean_k ||g_k|| clipped to [0, 5 lr_t] and every gradient clipped at 5 (tandem.mixing.loop),
    # mu = 0.01: its released universal-generalisation setting, the mean mixture over steps as its output. Its
    # out-of-domain setting (the target one held-out domain, mixer.target) is mu = 0.05: eta_alpha 20.
    "doge": {"probe_steps": 1, "free_steps": 1, "gamma": 1.0, "sampling": "reweight", "eta_alpha": 100.0},
    # The online peers' published settings; their own sections (mixer.odm, .aioli, .skillit, .ado) hold the rest.
    "odm": {"report": "final", "sampling": "resample"},  # ODM trains on its bandit's mixture as it goes; its last one is the learned one
    "aioli": {"eta_alpha": 1.0, "sampling": "resample"},  # full SlimPajama setting: eta 1 (sweeps 2, one_hot_factor 0.75, ema 0.1)
    "skillit": {"eta_alpha": 0.2, "sampling": "resample"},  # eta 0.2, window 3
    "ado": {"initial": "natural", "report": "final", "sampling": "resample"},  # mu, the natural mixture, is ADO's start and prior
}


# update=standardized: the spread of a log-weight pure noise leaves (benchmarks/power.py chose it by a protocol
# written before its runs; BENCHMARKS.md, "TANDEM's step").
STANDARDIZED_ETA = 0.08


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError(f"mixer.method: unknown method {method!r}; expected one of {', '.join(METHODS)}")


def resolve_mixer(cfg, method: str | None = None) -> MixerConfig:
    """A method's settings, resolved in one order by every job (optimize, run, two-stage, compare): the method's
    published defaults (METHOD_DEFAULTS), then the config's `mixer` (for the config's own method every field the
    user set wins over a published default; for another method the published defaults win), then the config's
    `methods.<name>` section."""
    from pydantic import ValidationError

    from tandem.config import format_validation_error

    mc = cfg.mixer
    method = method or mc.method
    check_method(method)
    update: dict = {"method": method, **METHOD_DEFAULTS.get(method, {})}
    if method == mc.method:
        update = {k: v for k, v in update.items() if k == "method" or k not in mc.model_fields_set}
    own = cfg.methods.get(method, {})
    if not own and method == mc.method:
        return effective(mc)  # nothing to merge: the mixer as set, published defaults where it is silent
    if own.get("proxy") == "target":  # as the config's own mixer.proxy: target (Config._proxy)
        own = {**own, "proxy": cfg.model.model_dump()}
    try:
        return effective(MixerConfig(**{**mc.model_dump(), **update, **own}))
    except ValidationError as err:
        raise InputError(format_validation_error(err, f"methods.{method}")) from None


def effective(mc: MixerConfig) -> MixerConfig:
    """The mixer settings with the method's defaults filled in where the config is silent."""
    defaults = {k: v for k, v in METHOD_DEFAULTS.get(mc.method, {}).items() if k not in mc.model_fields_set}
    mc = mc.model_copy(update=defaults) if defaults else mc
    if mc.eta_alpha is None:  # its meaning depends on the rule: a step per standard error, or per unit of Delta
        mc = mc.model_copy(update={"eta_alpha": STANDARDIZED_ETA if mc.update == "standardized" else 1.0})
    return mc


def loop_spec(mc: MixerConfig) -> LoopSpec:
    """The loop settings of a loop-based method."""
    mc = effective(mc)
    common = dict(
        episodes=mc.episodes, probe_steps=mc.probe_steps, free_steps=mc.free_steps, warmup_steps=mc.warmup_steps,
        gamma=mc.gamma, eta_alpha=mc.eta_alpha, update=mc.update, smoothing=mc.smoothing, floor=mc.floor,
    )
    if mc.method == "tandem":
        if mc.restart:  # every episode a whole run from initialisation (MixerConfig._restart refuses others)
            common.update(warmup_steps=0, free_steps=0)
        return LoopSpec(**common, reference="twin", sync=mc.sync, probe_proxy=True, clip=False, restart=mc.restart)
    if mc.method == "doremi":
        return LoopSpec(**common, reference="frozen", sync=False, probe_proxy=True, clip=True)
    if mc.method == "doge":
        return LoopSpec(**common, reference="valid", sync=True, probe_proxy=False, clip=True, per_valid_norm=True)
    raise InputError(f"mixer.method: {mc.method!r} is not a loop method")


def mixture_array(spec: str | dict[str, float], names: list[str], natural: dict[str, float]) -> np.ndarray:
    """`uniform`, `natural` or a {domain: weight} map, as an array in the order of `names`
    (tandem.mixing.weights.resolve_weights: uniform is over the domains with a train split)."""
    return as_array(resolve_weights(spec, names, natural), names)


def static_weights(mc: MixerConfig, names: list[str], natural: dict[str, float]) -> np.ndarray:
    return mixture_array(mc.weights if mc.method == "fixed" else mc.method, names, natural)


def initial_weights(mc: MixerConfig, names: list[str], natural: dict[str, float]) -> np.ndarray:
    return mixture_array(mc.initial, names, natural)
