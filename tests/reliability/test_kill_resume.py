"""Kill real `tandem` processes with SIGKILL at several points, resume them, and compare with an uninterrupted run.

Each command is killed three times in a row on the same output folder (the second and third kills land in the
resumed processes), then resumed to the end. The result must equal an uninterrupted run bit for bit: weights,
evaluation, trajectories, metrics and model tensors; only wall-clock times may differ. After every kill, each file
the command left must be complete (atomic writes) and its newest checkpoint must load.

One uninterrupted `tandem compare --methods uniform,tandem` is the reference for all three commands: its
tandem-seed0 stage one is `tandem optimize` of the same config and its uniform-seed0 stage two is
`tandem train --weights uniform`, so it also checks that compare runs exactly what the single commands run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import tiny_config
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.training.trainer import read_metrics

MIXER = {"episodes": 6, "probe_steps": 2, "free_steps": 2, "warmup_steps": 2, "eval_sequences": 2, "batch_size": 8,
         "update": "eg", "eta_alpha": 10.0, "checkpoint_interval": 1}
TRAIN = {"steps": 12, "checkpoint_interval": 2, "log_interval": 2, "device": "cpu", "threads": 1, "warmup_steps": 2}
COMPARE = ["--methods", "uniform,tandem", "--seeds", "1"]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("killcfg")
    path = tiny_config(root, mixer=MIXER, train=TRAIN, eval={"max_tokens": 1024, "batch_size": 16})
    prepare_data(load_config(path))  # the token cache, so the processes below start training at once
    return path


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory) -> Callable[[], Path]:
    """The uninterrupted compare, started at once and running beside the kill sequences; call to wait for it."""
    out = tmp_path_factory.mktemp("reference") / "compare"
    log = out.parent / "log"
    p = _spawn(["compare", config, *COMPARE, "--out", out], log)

    def wait() -> Path:
        _finish(p, log)
        assert "resumed" not in log.read_text()
        return out

    yield wait
    if p.poll() is None:
        p.kill()
        p.wait()


def _spawn(argv: list, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "tandem", *map(str, argv), "-q"], stdout=f, stderr=f, env=env)


def _finish(p: subprocess.Popen, log: Path) -> None:
    assert p.wait(timeout=300) == 0, log.read_text()[-3000:]


def _kill_when(argv: list, when: Callable[[], bool], log: Path) -> None:
    """Run `tandem ARGV`, SIGKILL it as soon as `when()` holds; the kill must land before the command ends."""
    p = _spawn(argv, log)
    try:
        deadline = time.monotonic() + 300
        while p.poll() is None and time.monotonic() < deadline:
            if when():
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == -signal.SIGKILL, f"the command ended (exit {rc}) before its kill point:\n{log.read_text()[-3000:]}"


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent, or between the rename of the old checkpoint folder and the new one


def _ckpt(folder: Path, key: str) -> int:
    state = _json(folder / "checkpoint" / "state.json")
    return -1 if state is None else state[key]


def _all_files_complete(out: Path) -> None:
    """What a killed run leaves is either absent or whole: JSON parses, checkpoints are complete folders."""
    for p in out.rglob("*"):
        if p.suffix == ".json" and p.parent.name not in ("checkpoint.tmp",):
            json.loads(p.read_text())
        if p.is_dir() and p.name in ("checkpoint", "checkpoint.prev"):
            assert (p / "COMPLETE").is_file(), p
        assert not p.name.endswith(".tmp") or p.name == "checkpoint.tmp" or p.name.startswith("."), p
    for p in out.rglob("metrics.jsonl"):
        lines = p.read_text().splitlines()
        for line in lines[:-1]:  # a log may end in a torn line, which readers skip
            json.loads(line)


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _same_tensors(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and bool((ta[k] == tb[k]).all()), (a, k)


def _without_times(obj):
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if not k.endswith(("wall_s", "wall_time_s", "tokens_per_s", "_flops"))}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


def test_optimize_killed_three_times_equals_uninterrupted(config, reference, tmp_path):
    out, log = tmp_path / "run", tmp_path / "log"
    argv = ["optimize", config, "--out", out]

    # 1: right after the first episode checkpoint
    _kill_when(argv, lambda: _ckpt(out, "episode") >= 1, log)
    _all_files_complete(out)
    # 2: during a later checkpoint write or the episode after it, in the resumed process
    _kill_when([*argv, "--resume"], lambda: (out / "checkpoint.tmp").exists() or _ckpt(out, "episode") >= 4, log)
    _all_files_complete(out)
    assert 1 <= _ckpt(out, "episode") < MIXER["episodes"]
    # 3: while the outputs are written (weights.json is there, trajectory and plot are not yet)
    _kill_when([*argv, "--resume"], lambda: (out / "weights.json").exists(), log)
    _all_files_complete(out)
    _finish(_spawn([*argv, "--resume"], log), log)
    ref_out = reference() / "runs" / "tandem-seed0" / "optimize"

    assert _without_times(_json(out / "weights.json")) == _without_times(_json(ref_out / "weights.json"))
    assert (out / "trajectory.csv").read_bytes() == (ref_out / "trajectory.csv").read_bytes()
    got, want = read_metrics(out / "metrics.jsonl"), read_metrics(ref_out / "metrics.jsonl")
    assert [r["episode"] for r in got] == list(range(MIXER["episodes"]))
    assert got == want
    for twin in ("proxy", "reference"):
        _same_tensors(out / "checkpoint" / f"{twin}.safetensors", ref_out / "checkpoint" / f"{twin}.safetensors")
    # the weights moved, so equality is not that of two runs that did nothing
    w = _json(ref_out / "weights.json")["final"]
    assert max(abs(v - 1 / 3) for v in w.values()) > 1e-3


def test_train_killed_three_times_equals_uninterrupted(config, reference, tmp_path):
    out, log = tmp_path / "run", tmp_path / "log"
    argv = ["train", config, "--out", out]
    steps = TRAIN["steps"]

    # 1: right after the first checkpoint
    _kill_when(argv, lambda: _ckpt(out, "step") >= 2, log)
    _all_files_complete(out)
    # 2: during a later checkpoint write or the steps after it, in the resumed process
    _kill_when([*argv, "--resume"], lambda: (out / "checkpoint.tmp").exists() or _ckpt(out, "step") >= 8, log)
    _all_files_complete(out)
    assert 2 <= _ckpt(out, "step") < steps
    # 3: after the last step, while the model is saved and evaluated
    _kill_when([*argv, "--resume"], lambda: _ckpt(out, "step") == steps, log)
    _all_files_complete(out)
    assert not (out / "eval.json").exists()
    _finish(_spawn([*argv, "--resume"], log), log)
    ref_out = reference() / "runs" / "uniform-seed0"

    assert _without_times(_json(out / "eval.json")) == _without_times(_json(ref_out / "eval.json"))
    _same_tensors(out / "model" / "model.safetensors", ref_out / "model" / "model.safetensors")
    got, want = read_metrics(out / "metrics.jsonl"), read_metrics(ref_out / "metrics.jsonl")
    assert [r["step"] for r in got] == list(range(2, steps + 1, 2))
    assert _without_times(got) == _without_times(want)


def test_compare_killed_three_times_equals_uninterrupted(config, reference, tmp_path):
    out, log = tmp_path / "run", tmp_path / "log"
    argv = ["compare", config, *COMPARE, "--out", out]
    tandem_run = out / "runs" / "tandem-seed0"

    # 1: in TANDEM's stage one, after its first episode checkpoint (uniform has finished)
    _kill_when(argv, lambda: _ckpt(tandem_run / "optimize", "episode") >= 1, log)
    _all_files_complete(out)
    assert (out / "runs" / "uniform-seed0" / "result.json").is_file()
    # 2: in TANDEM's stage two, after its first training checkpoint
    _kill_when([*argv, "--resume"], lambda: _ckpt(tandem_run, "step") >= 2, log)
    _all_files_complete(out)
    assert not (tandem_run / "result.json").exists()
    # 3: while the report is written (results.json is there, the plots are not yet)
    _kill_when([*argv, "--resume"], lambda: (out / "results.json").exists(), log)
    _all_files_complete(out)
    _finish(_spawn([*argv, "--resume"], log), log)
    ref_out = reference()

    assert _without_times(_json(out / "results.json")) == _without_times(_json(ref_out / "results.json"))
    for run in ("uniform-seed0", "tandem-seed0"):
        assert _without_times(_json(out / "runs" / run / "eval.json")) == _without_times(
            _json(ref_out / "runs" / run / "eval.json"))
        _same_tensors(out / "runs" / run / "model" / "model.safetensors",
                      ref_out / "runs" / run / "model" / "model.safetensors")
    assert (out / "runs" / "tandem-seed0" / "optimize" / "trajectory.csv").read_bytes() == (
        ref_out / "runs" / "tandem-seed0" / "optimize" / "trajectory.csv").read_bytes()
    for f in ("results.md", "weights.png", "test_loss.png", "trajectories.png"):
        assert (out / f).stat().st_size > 0, f
