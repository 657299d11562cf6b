"""The one mixture loop. TANDEM, DoReMi and DoGE are settings of `LoopSpec`, not separate trainers.

One episode:
    u <- a fresh initialisation              (restart only: every episode is then a whole run of K steps)
    w <- u                                   (sync; skipped for a frozen or unsynced reference)
    K probing steps: u and w step on the SAME train batch from the same optimizer state; w additionally
                     takes a separate step on a validation batch (Learner.step(valid=...), size 1/gamma)
    Delta_i = gamma (L_i(w) - L_i(u))        on batches of the rows the proxy trains on (the penalty's gradient in
                                             alpha, by Danskin), in two independent halves, so each episode also
                                             measures Delta's standard error
    alpha <- update(alpha, Delta)            (`update_alpha`: the only place alpha changes, here and in the
                                             Trainer callback)
    E free steps of u on the new alpha

Common random numbers: the twins differ only by the validation data, which is what Delta is meant to
measure. Any other difference (other rows, rows chosen by position, the optimizer shrinking a summed
gradient) enters Delta as noise or as a bias.

The loop only needs a `Problem` (where batches come from) and two `Twin`s (models that
step and report per-domain losses): the language-model learner and the convex test bed
both provide them, so the same code path is checked against a known optimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

import numpy as np

from tandem.mixing.updates import twin_gap, update_mixture

Part = tuple[Any, Any]  # (batch, per-domain coefficients of the objective)


class Problem(Protocol):
    num_domains: int

    def train_part(self, alpha: np.ndarray) -> Part:
        """A training batch for mixture alpha and its objective coefficients (advances the sampler)."""

    def valid_part(self) -> Part:
        """A validation batch of the target and its objective coefficients."""

    def held_batches(self) -> list[Any]:
        """Fresh held batches of each domain's train split, for measuring Delta: a list of independent sets
        (two or more give Delta's standard error)."""


class Twin(Protocol):
    step_count: int  # optimizer steps taken

    def step(self, parts: list[Part], valid: list[Part] | None = None, valid_scale: float = 1.0,
             valid_clip: float | None = None) -> Any:
        """One step on `parts`; `valid` parts add a separate step of size valid_scale (the reference's)."""

    def domain_losses(self, held: Any) -> np.ndarray: ...

    def copy_from(self, other: "Twin") -> None: ...

    def distance(self, other: "Twin") -> float: ...


# DoGE's released settings (universal generalisation): every domain's gradient clipped at this norm, and each score
# W_i clipped to [0, DOGE_MAX_SCORE x lr].
DOGE_MAX_GRAD_NORM = 5.0
DOGE_MAX_SCORE = 5.0


@dataclass
class LoopSpec:
    episodes: int
    probe_steps: int
    free_steps: int
    warmup_steps: int = 0
    gamma: float = 1.0
    eta_alpha: float = 1.0
    update: str = "eg"
    smoothing: float = 0.0
    floor: float = 0.0
    # How the reference moves: `twin` (L_val + gamma L_train, TANDEM), `valid` (L_val only, DoGE's probe),
    # `frozen` (never steps: trained beforehand, DoReMi), `none` (no reference: Delta = -gamma L_i(u), ODM).
    reference: Literal["twin", "valid", "frozen", "none"] = "twin"
    sync: bool = True  # reset w <- u at each episode start
    # Each episode starts the proxy again from a fresh initialisation (run_loop's `initial`), so Delta is the twins'
    # gap over a whole run of probe_steps rather than over the last probe of one long run (TANDEM's mixer.restart).
    restart: bool = False
    probe_proxy: bool = True  # the proxy also steps during the probe (False: DoGE measures from u itself)
    clip: bool = False  # Delta <- min(Delta, 0): DoReMi's clipped excess loss (per token), DoGE's clip of W at 0
    # DoGE: Delta divided by the mean norm of the training domains' gradients, so that -Delta is DoGE's
    # W_i = lr <g_i, g_val> / mean_k ||g_k|| and eta_alpha plays 1/mu.
    per_valid_norm: bool = False
    # A non-finite Delta, or a reference step refused for a non-finite gradient: `stop` raises FloatingPointError,
    # `skip` keeps the episode's mixture (the record says so) and goes on.
    on_nonfinite: Literal["stop", "skip"] = "stop"
    # Which domains the mixture may weight (None: all). The others have no train split (target-only domains: only
    # their validation data enters, as part of the target); their weight stays 0 and their Delta is not measured.
    trainable: tuple[bool, ...] | None = None

    @property
    def proxy_steps(self) -> int:
        """The proxy's optimizer steps: warm-up, then every episode's probe steps (when the proxy probes) and free
        steps. Stage one's step budget, as the LR schedule, the horizon and tandem.mixing.budget count it."""
        return self.warmup_steps + self.episodes * ((self.probe_steps if self.probe_proxy else 0) + self.free_steps)

    def mixed(self, num_domains: int) -> np.ndarray:
        """Boolean mask of the domains the mixture weights."""
        return np.ones(num_domains, dtype=bool) if self.trainable is None else np.array(self.trainable, dtype=bool)


@dataclass
class EpisodeRecord:
    episode: int
    step: int  # proxy optimizer steps so far (after the free steps)
    alpha: np.ndarray  # mixture after the update
    delta: np.ndarray
    distance: float  # ||w - u|| when Delta was measured
    proxy_losses: np.ndarray
    reference_losses: np.ndarray
    skipped: bool = False  # Delta was not finite and on_nonfinite=skip left alpha as it was
    delta_se: np.ndarray | None = None  # standard error of this episode's Delta (from independent held sets)


@dataclass
class LoopState:
    """Everything the loop itself carries between episodes (the twins and samplers are saved by the caller)."""

    alpha: np.ndarray
    episode: int = 0
    warmed_up: bool = False
    history: list[EpisodeRecord] = field(default_factory=list)

    @property
    def average(self) -> np.ndarray:
        """Mean of the post-update mixtures over episodes (the ones the free steps train on, as DoReMi averages
        its per-step mixtures); the initial mixture if no episode ran."""
        if not self.history:
            return self.alpha
        return np.mean([r.alpha for r in self.history], axis=0)


def measure_delta(spec: LoopSpec, sets: list, proxy: Twin, reference: Twin):
    """Delta on the held sets, its standard error across them, and the twins' per-domain losses (means over the
    sets): (delta, delta_se, proxy_losses, reference_losses). Every caller (this loop, the Trainer callback)
    measures through here."""
    lu_sets = [proxy.domain_losses(h) for h in sets]
    lw_sets = [np.zeros_like(lu_sets[0]) if spec.reference == "none" else reference.domain_losses(h) for h in sets]
    lu, lw = np.mean(lu_sets, axis=0), np.mean(lw_sets, axis=0)
    if spec.clip and spec.reference == "frozen" and hasattr(proxy, "excess_over"):
        # DoReMi: the excess loss clipped per token, then averaged per domain (Delta is its negative)
        per_set = np.array([-spec.gamma * proxy.excess_over(reference, h) for h in sets])
        delta = per_set.mean(axis=0)
    else:
        per_set = np.array([twin_gap(w, u, spec.gamma, clip=spec.clip) for w, u in zip(lw_sets, lu_sets)])
        delta = twin_gap(lw, lu, spec.gamma, clip=spec.clip)
    delta_se = (per_set.std(axis=0, ddof=1) / np.sqrt(len(per_set)) if len(per_set) > 1
                else np.full_like(delta, np.nan))
    if spec.per_valid_norm:
        # DoGE's score W_i = lr <g_i, g_val> / mean_k ||g_k||: the probe measured -lr <g_i, g_val> (to first order);
        # the normaliser is the mean norm of the training domains' gradients, each clipped at DoGE's 5.0, as its
        # released code divides (a proxy that cannot measure them, the Trainer callback's, falls back to ||g_val||)
        norm = None
        if hasattr(proxy, "domain_grad_norms"):
            norms = proxy.domain_grad_norms([b for h in sets for b in h], DOGE_MAX_GRAD_NORM)[spec.mixed(len(delta))]
            norm = float(np.nanmean(norms)) if np.any(np.isfinite(norms)) else None
        norm = norm or getattr(reference, "valid_norm", None)
        if norm:
            delta, delta_se = delta / norm, delta_se / norm
        lr = getattr(reference, "lr", None)
        lr = lr() if callable(lr) else None
        if lr:  # DoGE clips W_i to [0, 5 lr] (dw_max 5): the lower end is the clip at 0 above
            delta = np.maximum(delta, -DOGE_MAX_SCORE * lr)
    return delta, delta_se, lu, lw


def next_mixture(spec: LoopSpec, alpha: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The mixture after one episode's Delta. Every caller (update_alpha, the bootstrap in tandem.mixing.evidence)
    goes through here. The update, smoothing and floor act on the trainable domains only; the others keep weight 0."""
    on = spec.mixed(len(alpha))
    new = np.zeros(len(alpha), dtype=np.float64)
    new[on] = update_mixture(np.asarray(alpha, dtype=np.float64)[on], np.asarray(delta, dtype=np.float64)[on],
                             spec.update, spec.eta_alpha, spec.smoothing, spec.floor, episodes=spec.episodes)
    return new


def update_alpha(spec: LoopSpec, state: LoopState, held: list, proxy: Twin, reference: Twin, *, step: int,
                 reference_failed: bool = False, start: Any = None) -> EpisodeRecord:
    """The end of an episode: Delta on the held sets, the guard against a non-finite Delta, alpha <- update(alpha,
    Delta), and the episode's record appended to `state`. The loop and the Trainer callback both end their
    episodes here. `step`: the proxy's step count the record is filed under; `reference_failed`: a reference step
    was refused for a non-finite gradient (on_nonfinite=skip), so this episode's Delta is void; `start`: what the
    reference is compared with instead of the proxy (the callback's DoGE: the proxy's losses when the probe began)."""
    delta, delta_se, lu, lw = measure_delta(spec, held, proxy if start is None else start, reference)
    # after the measurement: under FSDP, distance() reshards both twins, as a checkpoint that follows expects
    distance = reference.distance(proxy)
    if reference_failed:
        delta = np.full_like(delta, np.nan)  # the reference's probe is void, so is the gap it measured
    skipped = not np.all(np.isfinite(delta[spec.mixed(len(delta))]))
    if skipped and spec.on_nonfinite == "stop":
        raise FloatingPointError(f"non-finite Delta at episode {state.episode}: {delta}")
    if not skipped:
        state.alpha = next_mixture(spec, state.alpha, delta)
    rec = EpisodeRecord(state.episode, step, state.alpha.copy(), delta, distance, lu, lw, skipped=skipped,
                        delta_se=delta_se)
    state.history.append(rec)
    state.episode += 1
    return rec


def run_loop(
    spec: LoopSpec,
    problem: Problem,
    proxy: Twin,
    reference: Twin,
    state: LoopState,
    on_episode: Callable[[LoopState, EpisodeRecord], None] | None = None,
    proxy_steps: Callable[[int], None] | None = None,
    initial: Callable[[int], Twin] | None = None,
) -> LoopState:
    """Run (or continue, from `state`) the episodes; returns the final state. `initial(episode)`: a fresh, untrained
    twin at that episode's initialisation, which the proxy becomes at the start of each episode under spec.restart."""
    if spec.restart and (initial is None or spec.warmup_steps or spec.free_steps):
        raise ValueError("restart needs `initial` and no warm-up or free steps")

    def free(n: int, alpha: np.ndarray) -> None:
        for _ in range(n):
            proxy.step([problem.train_part(alpha)])
        if proxy_steps is not None and n:
            proxy_steps(n)

    if not state.warmed_up:
        free(spec.warmup_steps, state.alpha)
        state.warmed_up = True
        if spec.reference in ("twin", "valid"):
            reference.copy_from(proxy)

    while state.episode < spec.episodes:
        alpha = state.alpha
        if spec.restart:
            # A whole run per episode: the gap then measures what the validation data change over all of training
            # at this mixture, the inner problem's solution, instead of one greedy stretch late in a long run.
            proxy.copy_from(initial(state.episode))
        if (spec.sync or spec.restart) and spec.reference in ("twin", "valid"):
            reference.copy_from(proxy)
        reference_failed = False
        for _ in range(spec.probe_steps):
            # Draw a train batch only if a twin uses it, so settings that skip it leave the sampler stream alone.
            part = problem.train_part(alpha) if (spec.probe_proxy or spec.reference == "twin") else None
            # The same batches are drawn after a failed reference step, so the proxy's stream does not depend on it.
            valid = [problem.valid_part()] if spec.reference in ("twin", "valid") else None
            if valid is not None and not reference_failed:
                try:
                    # twin: the proxy's own rows and coefficients, plus the validation step (the penalty form's
                    # w-direction g_train + g_val / gamma); valid (DoGE): the validation step alone.
                    clip = {"valid_clip": DOGE_MAX_GRAD_NORM} if spec.per_valid_norm else {}  # DoGE clips at its 5
                    reference.step([part] if spec.reference == "twin" else [], valid=valid, valid_scale=1.0 / spec.gamma,
                                   **clip)
                except FloatingPointError:
                    if spec.on_nonfinite == "stop":
                        raise
                    reference_failed = True
            if spec.probe_proxy:
                proxy.step([part])
        if spec.probe_proxy and proxy_steps is not None:
            proxy_steps(spec.probe_steps)
        # filed under the step the free steps end at, where the proxy stands when the next episode begins
        # restart: the proxy's steps over all episodes so far (each episode's own count starts again at 0)
        step = (state.episode + 1) * spec.probe_steps if spec.restart else proxy.step_count + spec.free_steps
        rec = update_alpha(spec, state, problem.held_batches(), proxy, reference, step=step,
                           reference_failed=reference_failed)
        free(spec.free_steps, state.alpha)
        if on_episode is not None:
            on_episode(state, rec)
    return state
