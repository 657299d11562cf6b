"""Numeric faults: a NaN or infinite loss, gradient or Delta is detected, never applied.

`stop` (the default) ends the run with a one-line message and a checkpoint to resume from; `mixer.on_nonfinite:
skip` keeps that episode's mixture, says so, and goes on. The loop is checked on the convex test bed with injected
faults, the commands on tiny language models.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import tiny_config
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.mixing.loop import LoopSpec, LoopState, run_loop
from tandem.mixing.optimize import optimize
from tandem.mixing.toy import ConvexBed, ConvexProblem, LinearTwin
from tandem.training.learner import Learner
from tandem.training.trainer import read_metrics

SPEC = LoopSpec(episodes=6, probe_steps=3, free_steps=2, gamma=1.0, eta_alpha=5.0)


class FaultyTwin(LinearTwin):
    """A linear twin whose losses are NaN in chosen episodes, or whose steps fail in chosen episodes."""

    def __init__(self, bed, lr, nan_losses_at=(), failing_steps_at=()):
        super().__init__(bed, lr)
        self.nan_losses_at, self.failing_steps_at = set(nan_losses_at), set(failing_steps_at)
        self.episode = 0  # counted by domain_losses, which the loop calls once per episode per twin

    def step(self, parts, valid=None, valid_scale=1.0, valid_clip=None):
        if self.episode in self.failing_steps_at:
            raise FloatingPointError("non-finite gradient in the reference")
        super().step(parts, valid, valid_scale)

    def domain_losses(self, held):
        losses = super().domain_losses(held)
        self.episode += 1
        return losses * np.nan if self.episode - 1 in self.nan_losses_at else losses


def _loop(spec, **faults):
    bed = ConvexBed.make(seed=0)
    proxy, reference = LinearTwin(bed, 0.1), FaultyTwin(bed, 0.1, **faults)
    state = run_loop(spec, ConvexProblem(bed), proxy, reference, LoopState(alpha=np.full(3, 1 / 3)))
    return state, proxy


def test_nonfinite_delta_stops_by_default():
    with pytest.raises(FloatingPointError, match="non-finite Delta at episode 2"):
        _loop(SPEC, nan_losses_at={2})


@pytest.mark.parametrize("fault", [{"nan_losses_at": {2, 4}}, {"failing_steps_at": {2, 4}}])
def test_skip_keeps_the_mixture_of_faulty_episodes_only(fault):
    clean, clean_proxy = _loop(SPEC)
    state, proxy = _loop(replace(SPEC, on_nonfinite="skip"), **fault)
    recs = state.history
    assert [r.skipped for r in recs] == [False, False, True, False, True, False]
    assert np.array_equal(recs[2].alpha, recs[1].alpha) and np.array_equal(recs[4].alpha, recs[3].alpha)
    assert np.all(np.isnan(recs[2].delta))
    # the healthy episodes before the fault are those of the clean run, and later ones still move the weights
    for a, b in zip(recs[:2], clean.history[:2]):
        assert np.array_equal(a.alpha, b.alpha)
    assert not np.array_equal(recs[3].alpha, recs[2].alpha)
    for r in recs:
        assert np.all(np.isfinite(r.alpha)) and np.all(r.alpha >= 0) and abs(r.alpha.sum() - 1) < 1e-12
    # a failed reference step does not cost the proxy its probe steps
    assert proxy.step_count == clean_proxy.step_count == SPEC.episodes * (SPEC.probe_steps + SPEC.free_steps)


def test_failed_reference_step_stops_by_default():
    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        _loop(SPEC, failing_steps_at={1})


# ---------------------------------------------------------------- on language models

MIXER = {"episodes": 4, "probe_steps": 2, "free_steps": 2, "eval_sequences": 2, "batch_size": 8, "eta_alpha": 10.0}


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("nonfinite")
    path = tiny_config(root, mixer=MIXER, train={"steps": 6, "device": "cpu", "checkpoint_interval": 2, "log_interval": 1},
                       eval={"max_tokens": 512})
    cfg = load_config(path)
    return path, cfg, prepare_data(cfg)


def test_train_stops_on_a_diverging_step_with_a_checkpoint_of_the_last_good_one(lm, tmp_path, cli):
    path = lm[0]
    out = tmp_path / "run"
    argv = ["train", path, "--out", out, "-q", "--set", "train.lr=1e30"]  # the first update blows the weights up
    rc, stdout, err = cli(*argv)
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "non-finite gradient in the model at step 2" in lines[0]
    assert "checkpoint of step 1" in lines[0] and "--resume" in lines[0]
    assert not (out / "eval.json").exists() and not (out / "model").exists()
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 1
    # the checkpoint holds the state before the refused update: finite weights, and the sampler before its batch
    from safetensors.torch import load_file

    assert all(bool(torch.isfinite(t).all()) for t in load_file(str(out / "checkpoint" / "model.safetensors")).values())
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1]
    # it resumes: the same step is taken again from the same state and refused the same way
    rc, _, err2 = cli(*argv, "--resume")
    assert rc == 1 and err2.strip() == err.strip()
    assert json.loads((out / "checkpoint" / "state.json").read_text()) == state


def test_optimize_stops_and_resumes_to_the_uninterrupted_result(lm, tmp_path, monkeypatch):
    _, cfg, data = lm
    quiet = dict(progress=False, log=lambda s: None)
    want = optimize(cfg, data, tmp_path / "clean", **quiet)

    calls = {"n": 0}
    clean_losses = Learner.domain_losses

    def nan_in_episode_2(self, held):
        calls["n"] += 1  # four calls per episode: the proxy, then the reference, on each of two held halves
        losses = clean_losses(self, held)
        return losses * np.nan if calls["n"] == 9 else losses

    monkeypatch.setattr(Learner, "domain_losses", nan_in_episode_2)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError) as err:
        optimize(cfg, data, out, **quiet)
    msg = str(err.value)
    assert "\n" not in msg and "non-finite Delta at episode 2" in msg
    assert "checkpoint taken before episode 2" in msg and "on_nonfinite=skip" in msg
    assert not (out / "weights.json").exists()
    monkeypatch.setattr(Learner, "domain_losses", clean_losses)

    got = optimize(cfg, data, out, resume=True, **quiet)  # the fault was transient: resuming finishes the run
    assert np.array_equal(got.final, want.final) and np.array_equal(got.average, want.average)
    assert [r["episode"] for r in read_metrics(out / "metrics.jsonl")] == list(range(MIXER["episodes"]))


def test_optimize_skip_option_logs_and_keeps_the_mixture(lm, tmp_path, cli):
    path = lm[0]
    out = tmp_path / "o"
    # gamma this small makes the reference's validation step (size 1/gamma) overflow: its next step is refused
    rc, stdout, err = cli("optimize", path, "--out", out, "--set", "mixer.gamma=1e-40", "--set", "mixer.on_nonfinite=skip")
    assert rc == 0, err
    notes = [ln for ln in err.splitlines() if "update skipped" in ln]
    assert len(notes) == MIXER["episodes"] and "episode 0: non-finite Delta" in notes[0]
    recs = read_metrics(out / "metrics.jsonl")  # strict JSON: non-finite values are null
    assert all(r["skipped"] and set(r["delta"].values()) == {None} for r in recs)
    w = json.loads((out / "weights.json").read_text())
    assert w["final"] == {d: 1 / 3 for d in ("code", "docs", "prose")}

    rc, _, err = cli("optimize", path, "--out", tmp_path / "stop", "-q", "--set", "mixer.gamma=1e-40")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "non-finite validation step in the reference" in lines[0]
    assert "mixer.on_nonfinite=skip" in lines[0]
    assert not (tmp_path / "stop" / "weights.json").exists()


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_a_diverging_proxy_is_told_the_one_remedy_that_applies(lm, tmp_path, cli, on_nonfinite):
    """on_nonfinite=skip covers Delta and the reference's steps, not the proxy's training: a proxy that diverges is
    told to lower the learning rate, never to set (or resume with) the option it may already have."""
    # warm-up steps train the proxy alone, so it is the first to take the exploding step
    rc, _, err = cli("optimize", lm[0], "--out", tmp_path / "o", "-q", "--set", "mixer.lr=1e30",
                     "--set", "mixer.warmup_steps=2", "--set", f"mixer.on_nonfinite={on_nonfinite}")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "non-finite gradient in the proxy" in lines[0], err
    assert "on_nonfinite" not in lines[0] and "lower mixer.lr" in lines[0] and "gamma" not in lines[0]
    assert not (tmp_path / "o" / "weights.json").exists()
