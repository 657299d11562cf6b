"""`train.report_to`: TensorBoard (read back from its event file) and offline W&B beside metrics.jsonl."""

from __future__ import annotations

import json
import sys

import pytest


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_and_optimize_report_to_tensorboard(shared_cfg, tmp_path, cli):
    out = tmp_path / "train"
    rc, _, err = cli("train", shared_cfg, "--out", out, "-q", "--set", "train.steps=10", "--set", "train.log_interval=5", "--set", "eval.max_tokens=512",
                     "--set", "train.report_to=tensorboard")
    assert rc == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = _events(out / "tensorboard")
    assert [s for s, _ in scalars["loss"]] == [r["step"] for r in records] == [5, 10]
    assert [v for _, v in scalars["loss"]] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    assert [v for _, v in scalars["domain_loss/code"]] == pytest.approx([r["domain_loss"]["code"] for r in records], rel=1e-6)

    out = tmp_path / "opt"
    rc, _, err = cli("optimize", shared_cfg, "--out", out, "-q", "--set", "mixer.episodes=2", "--set", "mixer.probe_steps=1",
                     "--set", "mixer.free_steps=1", "--set", "train.report_to=[tensorboard]")
    assert rc == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = _events(out / "tensorboard")
    assert [v for _, v in scalars["alpha/docs"]] == pytest.approx([r["alpha"]["docs"] for r in records], rel=1e-6)
    assert [s for s, _ in scalars["delta/code"]] == [r["step"] for r in records]


def test_wandb_runs_offline(shared_cfg, tmp_path, cli, monkeypatch):
    pytest.importorskip("wandb")  # an optional reporter: the `tracking` extra
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "train"
    rc, _, err = cli("train", shared_cfg, "--out", out, "-q", "--set", "train.steps=4", "--set", "train.log_interval=2",
                     "--set", "train.report_to=wandb")
    from tandem.tracking import close

    close()
    assert rc == 0, err
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_missing_reporter_package_is_an_input_error(shared_cfg, tmp_path, cli, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    out = tmp_path / "x"
    rc, _, err = cli("train", shared_cfg, "--out", out, "--set", "train.report_to=tensorboard")
    assert rc == 2 and "train.report_to" in err and "tandem-mix[tracking]" in err
    assert not out.exists()
    rc, _, err = cli("train", shared_cfg, "--out", out, "--set", "train.report_to=[none,tensorboard]")
    assert rc == 2 and "none" in err
