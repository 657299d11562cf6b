"""Stage one's cost in one unit, so that `tandem compare` can give every method the same budget.

The unit is rows of proxy-sized training steps (forward and backward): the proxy's own steps with its warm-up, the
reference's probe steps (all of the proxy's rows plus the validation rows for TANDEM, the validation rows alone for
DoGE), DoReMi's reference pre-training, Skill-It's graph steps, Aioli's probes, RegMix's sweep. Forward-only
evaluations (held batches, validation sets) are not counted. Grid search trains the target, not a proxy, so it
has no proxy budget to match.
"""

from __future__ import annotations

import math

from tandem.mixing import methods, online


def stage_one_rows(mc, num_domains: int, batch_size: int) -> float:
    """Rows of proxy-sized training in stage one under mixer settings `mc` (the method's defaults filled in)."""
    mc = methods.effective(mc)
    b = mc.batch_size or batch_size
    if mc.method in methods.STATIC_METHODS or mc.method == "grid":
        return 0.0
    if mc.method == "regmix":
        return float(mc.regmix_samples * regmix_steps(mc) * b)
    if mc.method in methods.ONLINE_METHODS:
        return float(online.proxy_steps(mc, num_domains) * b)
    spec = methods.loop_spec(mc)
    proxy_steps = spec.proxy_steps
    valid_rows = max(1, int(round(mc.valid_fraction * b)))
    reference = {"twin": spec.episodes * spec.probe_steps * (b + valid_rows),
                 "valid": spec.episodes * spec.probe_steps * valid_rows,
                 "frozen": (mc.reference_steps or proxy_steps) * b,
                 "none": 0}[spec.reference]
    return float(proxy_steps * b + reference)


def regmix_steps(mc) -> int:
    """Training steps of each RegMix proxy."""
    return mc.regmix_steps or mc.warmup_steps + mc.episodes * (mc.probe_steps + mc.free_steps)


def fit_budget(mc, num_domains: int, batch_size: int, budget: float):
    """`mc` with its count of episodes (RegMix: steps per proxy) set to spend `budget` rows as nearly as whole
    episodes allow."""
    if mc.method == "regmix":
        per = mc.regmix_samples * (mc.batch_size or batch_size)
        return mc.model_copy(update={"regmix_steps": max(1, int(round(budget / per)))})
    return mc.model_copy(update={"episodes": fit_episodes(mc, num_domains, batch_size, budget)})


def fit_episodes(mc, num_domains: int, batch_size: int, budget: float) -> int:
    """The number of episodes (rounds, or RegMix's per-proxy episodes) that brings the method's stage-one rows
    closest to `budget`: its cost is affine in episodes."""
    one = stage_one_rows(mc.model_copy(update={"episodes": 1}), num_domains, batch_size)
    two = stage_one_rows(mc.model_copy(update={"episodes": 2}), num_domains, batch_size)
    per = two - one
    if per <= 0:
        return mc.episodes
    return max(1, int(round(1 + (budget - one) / per)))


def has_budget(method: str) -> bool:
    """Whether a method spends a proxy budget that compare can match (static methods and grid search do not)."""
    return method not in methods.STATIC_METHODS and method != "grid"


def mismatch(rows: float, budget: float) -> float:
    """Relative difference of a method's rows from the budget."""
    return abs(rows - budget) / budget if budget > 0 else (0.0 if rows == 0 else math.inf)


def compare_budget(mc, num_domains: int, batch_size: int) -> float:
    """The budget `tandem compare` gives every method: the stage-one rows of the config's own mixer, or of TANDEM
    with the config's settings where its own method spends none (a static mixture or grid search)."""
    own = mc if has_budget(mc.method) else mc.model_copy(update={"method": "tandem"})
    return stage_one_rows(own, num_domains, batch_size)
