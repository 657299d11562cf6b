"""The one mixture loop. TANDEM, DoReMi and DoGE are settings of `LoopSpec`, not separate trainers.

One episode:
    w <- u                                   (sync; skipped for a frozen or unsynced reference)
    K probing steps: u on L_train(alpha); w on L_val + gamma L_train(alpha)  (same train batch)
    Delta_i = gamma (L_i(w) - L_i(u))        on held batches of each domain's train split
    alpha <- update(alpha, Delta)            (tandem.mixing.updates)
    E free steps of u on the new alpha

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

    def reference_train_part(self, part: Part, gamma: float) -> Part:
        """The reference's share of a proxy batch, with coefficients scaled by gamma."""

    def valid_part(self) -> Part:
        """A validation batch of the target and its objective coefficients."""

    def held_batches(self) -> Any:
        """Fresh held batches of each domain's train split, for measuring Delta."""


class Twin(Protocol):
    def step(self, parts: list[Part]) -> Any: ...

    def domain_losses(self, held: Any) -> np.ndarray: ...

    def copy_from(self, other: "Twin") -> None: ...

    def distance(self, other: "Twin") -> float: ...


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
    probe_proxy: bool = True  # the proxy also steps during the probe (False: DoGE measures from u itself)
    clip: bool = False  # Delta <- min(Delta, 0): DoReMi's clipped excess loss
    # A non-finite Delta, or a reference step refused for a non-finite gradient: `stop` raises FloatingPointError,
    # `skip` keeps the episode's mixture (the record says so) and goes on.
    on_nonfinite: Literal["stop", "skip"] = "stop"


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


def run_loop(
    spec: LoopSpec,
    problem: Problem,
    proxy: Twin,
    reference: Twin,
    state: LoopState,
    on_episode: Callable[[LoopState, EpisodeRecord], None] | None = None,
    proxy_steps: Callable[[int], None] | None = None,
) -> LoopState:
    """Run (or continue, from `state`) the episodes; returns the final state."""

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
        if spec.sync and spec.reference in ("twin", "valid"):
            reference.copy_from(proxy)
        reference_failed = False
        for _ in range(spec.probe_steps):
            # Draw a train batch only if a twin uses it, so settings that skip it leave the sampler stream alone.
            part = problem.train_part(alpha) if (spec.probe_proxy or spec.reference == "twin") else None
            # The same batches are drawn after a failed reference step, so the proxy's stream does not depend on it.
            ref_parts = ([problem.reference_train_part(part, spec.gamma), problem.valid_part()] if spec.reference == "twin"
                         else [problem.valid_part()] if spec.reference == "valid" else None)
            if ref_parts is not None and not reference_failed:
                try:
                    reference.step(ref_parts)
                except FloatingPointError:
                    if spec.on_nonfinite == "stop":
                        raise
                    reference_failed = True
            if spec.probe_proxy:
                proxy.step([part])
        if spec.probe_proxy and proxy_steps is not None:
            proxy_steps(spec.probe_steps)
        held = problem.held_batches()
        lu = proxy.domain_losses(held)
        lw = np.zeros_like(lu) if spec.reference == "none" else reference.domain_losses(held)
        delta = twin_gap(lw, lu, spec.gamma, clip=spec.clip)
        if reference_failed:
            delta = np.full_like(delta, np.nan)  # the reference's probe is void, so is the gap it measured
        distance = reference.distance(proxy)
        skipped = not np.all(np.isfinite(delta))
        if skipped and spec.on_nonfinite == "stop":
            raise FloatingPointError(f"non-finite Delta at episode {state.episode}: {delta}")
        if not skipped:
            state.alpha = update_mixture(alpha, delta, spec.update, spec.eta_alpha, spec.smoothing, spec.floor)
        free(spec.free_steps, state.alpha)
        rec = EpisodeRecord(state.episode, getattr(proxy, "step_count", 0), state.alpha.copy(), delta, distance, lu, lw,
                            skipped=skipped)
        state.history.append(rec)
        state.episode += 1
        if on_episode is not None:
            on_episode(state, rec)
    return state
