"""TANDEM with whole-run episodes (mixer.restart): each episode both twins start again from a fresh initialisation.

On the convex bed the inner problem's solution does not depend on where training starts, so a restarted episode that
trains the twins to their minimisers measures exactly the penalty gap at the episode's mixture (the quantity the
warm, synchronised loop measures too). On language models (tests/mixing/test_optimize.py) the episodes are
independent whole runs and keep the library's guarantees: same seed, same weights; a killed run resumes identically.
"""

from __future__ import annotations

import numpy as np
import pytest

from tandem.config import MixerConfig
from tandem.mixing.loop import LoopSpec, LoopState, run_loop
from tandem.mixing.methods import loop_spec
from tandem.mixing.toy import ConvexBed, ConvexProblem, LinearTwin

from test_memorised_bed import penalty_gap, step_size


class CountingTwin(LinearTwin):
    """A LinearTwin that records the parameters it is copied from (to see what each episode starts at)."""

    starts: list

    def copy_from(self, other):
        super().copy_from(other)
        self.starts.append(other.theta.copy())


def test_restarted_episodes_measure_the_penalty_gap_at_each_mixture():
    bed = ConvexBed.make_memorised(seed=0)
    lr = step_size(bed)
    probe = 800  # per-step contraction ~0.93: from theta = 0 the twins reach their minimisers to ~1e-20
    spec = LoopSpec(episodes=3, probe_steps=probe, free_steps=0, gamma=10.0, eta_alpha=5.0, update="eg",
                    reference="twin", sync=True, restart=True)
    proxy = CountingTwin(bed, lr)
    proxy.starts = []
    inits = []

    def initial(episode):
        inits.append(episode)
        return LinearTwin(bed, lr)  # theta = 0, step_count 0

    state = run_loop(spec, ConvexProblem(bed), proxy, LinearTwin(bed, lr), LoopState(np.full(3, 1 / 3)),
                     initial=initial)
    assert inits == [0, 1, 2]
    assert all(np.array_equal(s, np.zeros(bed.dim)) for s in proxy.starts)  # every episode from the initialisation
    assert proxy.step_count == probe  # one run's steps, not three runs' worth
    assert [r.step for r in state.history] == [probe, 2 * probe, 3 * probe]
    alphas = [np.full(3, 1 / 3)] + [r.alpha for r in state.history[:-1]]
    for alpha, rec in zip(alphas, state.history):
        np.testing.assert_allclose(rec.delta, penalty_gap(bed, alpha, 10.0, "train"), rtol=1e-6, atol=1e-9)
    assert not np.allclose(state.history[0].alpha, 1 / 3)  # the mixture moved: the check above is not vacuous


def test_restart_needs_an_initialisation_and_no_free_steps():
    bed = ConvexBed.make_memorised(seed=0)
    twin = LinearTwin(bed, 0.01)
    for spec, initial in ((LoopSpec(episodes=1, probe_steps=2, free_steps=0, restart=True), None),
                          (LoopSpec(episodes=1, probe_steps=2, free_steps=1, restart=True), lambda e: twin)):
        with pytest.raises(ValueError, match="restart"):
            run_loop(spec, ConvexProblem(bed), twin, LinearTwin(bed, 0.01), LoopState(np.full(3, 1 / 3)),
                     initial=initial)


def test_restart_settings():
    mc = MixerConfig(restart=True, episodes=3, probe_steps=7)
    spec = loop_spec(mc)
    assert (spec.restart, spec.free_steps, spec.warmup_steps, spec.proxy_steps) == (True, 0, 0, 21)
    assert not loop_spec(MixerConfig(method="doge", restart=True)).restart  # the twins' setting, TANDEM's only
    for field in ("free_steps", "warmup_steps"):
        with pytest.raises(ValueError, match=field):
            MixerConfig(restart=True, **{field: 2})
    assert MixerConfig(restart=True, free_steps=0, warmup_steps=0).restart
