"""TANDEM with whole-run episodes (mixer.restart): each episode both twins start again from a fresh initialisation.

On the convex bed the inner problem's solution does not depend on where training starts, so a restarted episode that
trains the twins to their minimisers measures exactly the penalty gap at the episode's mixture (the quantity the
warm, synchronised loop measures too); on language models the episodes are independent whole runs, and the run keeps
the library's guarantees (same seed, same weights; a killed run resumes identically).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_config
from tandem.cli.main import main
from tandem.config import MixerConfig, load_config
from tandem.data.cache import prepare_data
from tandem.mixing.loop import LoopSpec, LoopState, run_loop
from tandem.mixing.methods import loop_spec
from tandem.mixing.optimize import optimize
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


MIXER = {"method": "tandem", "restart": True, "episodes": 3, "probe_steps": 6, "eval_sequences": 2, "update": "eg",
         "eta_alpha": 20.0, "batch_size": 8}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("restart")
    path = tiny_config(root, mixer=MIXER)
    cfg = load_config(path)
    return root, path, cfg, prepare_data(cfg)


def test_lm_restart_runs_whole_episodes_deterministically(setup, tmp_path):
    _, _, cfg, data = setup
    a = optimize(cfg, data, tmp_path / "a", progress=False, log=lambda s: None)
    b = optimize(cfg, data, tmp_path / "b", progress=False, log=lambda s: None)
    assert np.array_equal(a.final, b.final)
    assert np.abs(a.final - 1 / 3).max() > 1e-4
    assert a.proxy_steps == 3 * 6 and [r.step for r in a.history] == [6, 12, 18]
    w = json.loads((tmp_path / "a" / "weights.json").read_text())
    assert w["restart"] is True and w["proxy_steps"] == 18 and w["free_steps"] == 0
    # the episodes are independent runs: their own initialisations, so their twins' distances differ, and none is
    # the continuation of another (a warm proxy would have trained 18 steps by the last episode)
    assert len({round(r.distance, 9) for r in a.history}) == 3


def test_lm_restart_resumes_identically(setup, tmp_path, monkeypatch):
    _, _, cfg, data = setup
    full = optimize(cfg, data, tmp_path / "full", progress=False, log=lambda s: None)
    import tandem.mixing.optimize as opt

    real_loop = opt.run_loop

    def interrupted_loop(*args, on_episode=None, **kw):
        def hook(state, rec):
            on_episode(state, rec)
            if state.episode == 2:
                raise KeyboardInterrupt

        return real_loop(*args, on_episode=hook, **kw)

    monkeypatch.setattr(opt, "run_loop", interrupted_loop)
    with pytest.raises(KeyboardInterrupt):
        optimize(cfg, data, tmp_path / "part", progress=False, log=lambda s: None)
    monkeypatch.setattr(opt, "run_loop", real_loop)
    resumed = optimize(cfg, data, tmp_path / "part", resume=True, progress=False, log=lambda s: None)
    assert np.array_equal(full.final, resumed.final)
    assert np.array_equal(np.stack([r.delta for r in full.history]), np.stack([r.delta for r in resumed.history]))


def test_cli_refuses_free_steps_with_restart(setup, tmp_path, capsys):
    _, path, _, _ = setup
    out = tmp_path / "out"
    assert main(["optimize", str(path), "--set", "mixer.free_steps=4", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "free_steps" in err[0] and "restart" in err[0]
    assert not out.exists()
