"""Stage one's cost, so that `tandem compare` can give every method the same budget.

Two counts. `stage_one_rows`: rows of proxy-sized training steps (forward and backward): the proxy's own steps with
its warm-up, the reference's probe steps (all of the proxy's rows plus the validation rows for TANDEM, the
validation rows alone for DoGE), DoReMi's reference pre-training, Skill-It's graph steps, Aioli's probes, RegMix's
sweep; times train.seq_len, the stage-one tokens compare reports.

`stage_one_flops`: the floating-point operations of all of it, as the runtime meters them
(tandem.training.learner.flops_used): 6 N per token trained (forward and backward), 2 N per token only scored
(forward), N the proxy's parameters, a row seq_len tokens. Beside the rows it counts what only scores: the held
windows on which TANDEM, DoReMi and DoGE measure Delta every episode (both twins; DoReMi also its per-token excess
loss, one more forward of each), DoGE's per-domain gradient norms there (each held window back-propagated once, for its
own domain: 6 N), the validation sets Skill-It and Aioli evaluate, and RegMix's evaluation of each proxy on every
validation split. `tandem compare` matches methods on FLOPs: each runs as many episodes (RegMix: steps per proxy)
as bring its FLOPs nearest the budget, the FLOPs of the config's own mixer.

Where a count depends on the data (how many windows a domain's held part or validation split holds, the tokens an
evaluation scores), `flops_inputs` reads it from the prepared data as the stage-one code does; without data the
caps are taken not to bind. Rows of SFT domains are trimmed of their common padding when drawn, which no
prediction can know: for them the count is an upper bound. Grid search trains the target, not a proxy, so it has
no proxy budget to match; static mixtures spend none.
"""

from __future__ import annotations

import json
import math
from typing import Callable

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


def stage_one_flops(mc, num_domains: int, batch_size: int, *, params: int, seq_len: int,
                    trainable: int | None = None, held_windows: int | None = None,
                    valid_windows: int | None = None, target_domains: int | None = None,
                    eval_positions: int = 0) -> float:
    """Floating-point operations of stage one under mixer settings `mc` (the method's defaults filled in).

    params: N, the proxy's parameters; seq_len: tokens of a row. What the data decides (`flops_inputs` reads it):
    trainable: domains with a train split (default: all); held_windows: the most windows one trainable domain's held
    part holds, which caps each held half (tandem.mixing.lm.LMProblem.held_batches; None: no cap); valid_windows:
    the most windows one target domain's validation split holds, which caps the online methods' validation sets
    (tandem.mixing.online.fixed_valid_sets; None: no cap); target_domains: domains the validation target weights
    (default: from mixer.target); eval_positions: input positions of one evaluation of every validation split, which
    each RegMix proxy runs (tandem.evaluation.evaluate.eval_positions)."""
    mc = methods.effective(mc)
    method = mc.method
    if method in methods.STATIC_METHODS or method == "grid":
        return 0.0
    b = mc.batch_size or batch_size
    train = 6.0 * params * seq_len  # one row trained
    score = 2.0 * params * seq_len  # one row scored
    if method == "regmix":
        return mc.regmix_samples * (regmix_steps(mc) * b * train + 2.0 * params * eval_positions)
    if method in methods.ONLINE_METHODS:
        if target_domains is None:
            target_domains = _target_domains(mc, num_domains)
        per_set = min(mc.eval_sequences, max(1, valid_windows)) if valid_windows is not None else mc.eval_sequences
        valid = per_set * target_domains  # rows of the fixed validation sets, scored at every evaluation
        return online.proxy_steps(mc, num_domains) * b * train + _online_evaluations(mc, num_domains) * valid * score
    spec = methods.loop_spec(mc)
    trainable = num_domains if trainable is None else trainable
    per_half = max(1, -(-mc.eval_sequences // 2))
    if held_windows is not None:
        per_half = min(per_half, max(1, held_windows))
    held = 2 * per_half * trainable  # rows of an episode's two held halves
    # Delta's measurement: each twin scores the held rows; DoReMi's clipped excess loss forwards both models again;
    # DoGE's normaliser back-propagates each held row once, for its own domain's gradient (Learner.domain_grad_norms).
    forwards = {"twin": 2, "valid": 2, "frozen": 4, "none": 1}[spec.reference]
    backwards = 1 if spec.per_valid_norm else 0
    return (stage_one_rows(mc, num_domains, batch_size) * train
            + spec.episodes * held * (forwards * score + backwards * train))


def _online_evaluations(mc, num_domains: int) -> int:
    """Evaluations of an online method's fixed validation sets: Skill-It's graph (the proxy as initialised, then
    each skill's copy) and one per round, Aioli's before its probes and after each probe; ODM and ADO evaluate
    nothing."""
    if mc.method == "skillit":
        graph = 1 + num_domains if mc.skillit.graph is None else 0
        return graph + mc.episodes
    if mc.method == "aioli":
        return mc.episodes * (1 + mc.aioli.sweeps * num_domains)
    return 0


def _target_domains(mc, num_domains: int) -> int:
    """Domains with weight in the validation target (mixer.target) among `num_domains`."""
    target = mc.target
    if target == "uniform":
        return num_domains
    if isinstance(target, list):
        return len(set(target))
    return sum(1 for v in target.values() if float(v) > 0)


def param_count(model_cfg, vocab_size: int, seq_len: int, base_dir=".") -> int:
    """Parameters of a model (Learner.num_params: every parameter once, tied ones once), counted without
    initialising its weights where the model allows."""
    key = (json.dumps(model_cfg.model_dump(mode="json"), sort_keys=True), vocab_size, seq_len, str(base_dir))
    if key not in _PARAMS:
        import torch

        from tandem.models import build_model

        with torch.random.fork_rng(devices=[]):  # build_model seeds torch: leave the caller's generator alone
            try:
                with torch.device("meta"):
                    model = build_model(model_cfg, vocab_size, seq_len, 0, base_dir)
            except Exception:  # a model that cannot be built on the meta device is built for real
                model = build_model(model_cfg, vocab_size, seq_len, 0, base_dir)
        _PARAMS[key] = sum(p.numel() for p in model.parameters())
    return _PARAMS[key]


_PARAMS: dict = {}


def flops_inputs(cfg, mc, data=None) -> dict:
    """stage_one_flops' arguments beyond the mixer's settings, for the run of `cfg` with mixer `mc`: N from the
    proxy `mc.proxy` at the data's vocabulary, and what the data decides, read from the prepared `data` as stage one
    reads it (the held and validation samplers of tandem.mixing.lm.LMProblem on the method's horizon, the validation
    splits an evaluation scores). Without data: the tokenizer's configured vocabulary, every cap taken not to bind,
    and a RegMix evaluation of eval.max_tokens per domain (none when unset)."""
    mc = methods.effective(mc)
    seq_len = cfg.train.seq_len
    proxy = cfg.model if isinstance(mc.proxy, str) else mc.proxy
    vocab = data.vocab_size if data is not None else cfg.tokenizer.vocab_size
    out = {"params": param_count(proxy, vocab, seq_len, cfg.base_dir), "seq_len": seq_len}
    num_domains = len(data.domains) if data is not None else len(cfg.data.domains or {})
    if mc.method == "regmix":
        if data is not None:
            from tandem.evaluation.evaluate import eval_positions

            out["eval_positions"] = eval_positions(data.split_arrays("valid"), seq_len, cfg.eval.max_tokens,
                                                   cfg.eval.batch_size)
        else:
            out["eval_positions"] = num_domains * (cfg.eval.max_tokens or 0)
        return out
    if data is None or mc.method not in methods.LOOP_METHODS + methods.ONLINE_METHODS:
        return out
    from tandem.mixing.lm import LMProblem

    b = mc.batch_size or cfg.train.batch_size
    steps = (methods.loop_spec(mc).proxy_steps if mc.method in methods.LOOP_METHODS
             else online.schedule_steps(mc, num_domains))
    problem = LMProblem(cfg.model_copy(update={"mixer": mc}), data, b, horizon_rows=steps * b)
    trainable = problem.trainable
    out.update(trainable=int(trainable.sum()), target_domains=len(problem.valid_ids),
               held_windows=int(problem.held.n_windows[trainable].max(initial=1)),
               valid_windows=int(problem.valid.n_windows.max(initial=1)))
    return out


def predicted_flops(cfg, mc, data=None) -> float:
    """stage_one_flops of the run of `cfg` with mixer `mc`, its data-dependent counts from `data` (flops_inputs)."""
    num_domains = len(data.domains) if data is not None else len(cfg.data.domains or {}) or 1
    return stage_one_flops(mc, num_domains, cfg.train.batch_size, **flops_inputs(cfg, mc, data))


def fit_budget(mc, budget: float, cost: Callable):
    """`mc` with its count of episodes (RegMix: steps per proxy) set to bring `cost(mc)` (stage_one_flops, or rows)
    nearest `budget` as whole episodes allow."""
    if mc.method == "regmix":
        return mc.model_copy(update={"regmix_steps": _fit(mc, "regmix_steps", 1, budget, cost)})
    return mc.model_copy(update={"episodes": fit_episodes(mc, budget, cost)})


def fit_episodes(mc, budget: float, cost: Callable) -> int:
    """The number of episodes (rounds, or RegMix's per-proxy episodes) that brings `cost(mc)` closest to `budget`:
    a method's cost is affine in its episodes, so two points (1 and 2 episodes) give it."""
    return _fit(mc, "episodes", mc.episodes, budget, cost)


def _fit(mc, field: str, default: int, budget: float, cost: Callable) -> int:
    one = cost(mc.model_copy(update={field: 1}))
    two = cost(mc.model_copy(update={field: 2}))
    per = two - one
    if per <= 0:
        return default
    return max(1, int(round(1 + (budget - one) / per)))


def has_budget(method: str) -> bool:
    """Whether a method spends a proxy budget that compare can match (static methods and grid search do not)."""
    return method not in methods.STATIC_METHODS and method != "grid"


def mismatch(cost: float, budget: float) -> float:
    """Relative difference of a method's cost (FLOPs or rows) from the budget."""
    return abs(cost - budget) / budget if budget > 0 else (0.0 if cost == 0 else math.inf)


def budget_mixer(mc):
    """The mixer whose stage one sets compare's budget: the config's own, or TANDEM with the config's settings where
    its own method spends none (a static mixture or grid search)."""
    return mc if has_budget(mc.method) else mc.model_copy(update={"method": "tandem"})


def compare_budget(mc, num_domains: int, batch_size: int) -> float:
    """The stage-one rows of compare's budget mixer (budget_mixer): its tokens, divided by train.seq_len."""
    return stage_one_rows(budget_mixer(mc), num_domains, batch_size)


def compare_flops(cfg, data=None) -> float:
    """The budget `tandem compare` gives every method: the stage-one FLOPs of its budget mixer (budget_mixer)."""
    return predicted_flops(cfg, budget_mixer(cfg.mixer), data)
