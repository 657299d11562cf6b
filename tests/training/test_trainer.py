"""Training through `tandem train`: the loss falls, runs are reproducible, resume is exact, HF models work."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tandem.cli.main import main
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.evaluation.evaluate import evaluate
from tandem.models import build_model
from tandem.training.learner import Learner, lr_at
from tandem.training.trainer import read_metrics

RUN = ["--set", "train.steps=16", "--set", "train.log_interval=4", "--set", "train.checkpoint_interval=8",
       "--set", "train.device=cpu", "--set", "eval.max_tokens=2048", "-q"]
LLAMA = ("model.hf_config={model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
         "num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128}")


def _train(cfg: Path, out: Path, *extra: str) -> dict:
    rc = main(["train", str(cfg), "--out", str(out), *RUN, *extra])
    assert rc == 0
    return json.loads((out / "eval.json").read_text())


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def base(shared_cfg, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "run"
    _train(shared_cfg, out)
    return out


def test_loss_falls(shared_cfg, base):
    recs = read_metrics(base / "metrics.jsonl")
    assert [r["step"] for r in recs] == [4, 8, 12, 16]
    assert recs[-1]["loss"] < recs[0]["loss"] - 0.2, [r["loss"] for r in recs]
    for r in recs:
        assert set(r["domain_loss"]) == {"code", "docs", "prose"} and math.isfinite(r["loss"]) and r["lr"] > 0
    # The logged rate is the one the logged step used: warm-up 5 steps to 3e-3, then cosine decay to 16.
    assert [r["lr"] for r in recs] == pytest.approx([lr_at(r["step"] - 1, 3e-3, 5, 16, 0.1) for r in recs])
    ep = [r["epochs"]["prose"] for r in recs]
    assert ep == sorted(ep) and ep[0] > 0
    ev = json.loads((base / "eval.json").read_text())
    # The trained model beats the same model untrained, on every domain's held-out text.
    cfg = load_config(shared_cfg, ["train.device=cpu", "eval.max_tokens=2048"])
    data = prepare_data(cfg)
    untrained = build_model(cfg.model, data.vocab_size, cfg.train.seq_len, cfg.seed)
    before = evaluate(untrained, data, cfg.train.seq_len, cfg.eval.max_tokens, cfg.eval.batch_size, torch.device("cpu"))
    assert before["valid_loss"]["average"] > math.log(data.vocab_size) - 0.2  # untrained: about uniform
    assert ev["valid_loss"]["average"] < before["valid_loss"]["average"] - 0.3
    for d, v in ev["valid_loss"]["per_domain"].items():
        assert v < before["valid_loss"]["per_domain"][d]
    # Tokens seen: every step draws batch_size sequences of seq_len targets.
    assert sum(ev["tokens_seen"].values()) == 16 * cfg.train.batch_size * cfg.train.seq_len


def test_same_config_and_seed_reproduce(shared_cfg, base, tmp_path):
    ev = _train(shared_cfg, tmp_path / "again")
    ref = json.loads((base / "eval.json").read_text())
    for k in ("test_loss", "valid_loss", "tokens_seen", "epochs"):
        assert ev[k] == ref[k], k
    assert _same_weights(base, tmp_path / "again")


def test_resume_after_interruption_is_exact(shared_cfg, base, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    step = Learner.step

    def interrupted(self, parts):
        if self.step_count == 11:
            raise KeyboardInterrupt
        return step(self, parts)

    monkeypatch.setattr(Learner, "step", interrupted)
    assert main(["train", str(shared_cfg), "--out", str(out), *RUN]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (out / "eval.json").exists()
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 8
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [4, 8]
    monkeypatch.setattr(Learner, "step", step)

    rc = main(["train", str(shared_cfg), "--out", str(out), *RUN[:-1], "--resume"])  # not quiet: logs the resume
    assert rc == 0
    assert "resumed from step 8" in capsys.readouterr().err
    assert _same_weights(base, out)
    ev, ref = json.loads((out / "eval.json").read_text()), json.loads((base / "eval.json").read_text())
    for k in ("test_loss", "valid_loss", "tokens_seen", "epochs"):
        assert ev[k] == ref[k], k
    # The log has each step once and the same losses as the uninterrupted run.
    got, want = read_metrics(out / "metrics.jsonl"), read_metrics(base / "metrics.jsonl")
    assert [r["step"] for r in got] == [r["step"] for r in want]
    assert [r["loss"] for r in got] == [r["loss"] for r in want]


def test_resume_of_a_finished_run_reproduces_it(shared_cfg, base, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base, out)
    (out / "eval.json").unlink()
    shutil.rmtree(out / "model")
    ev = _train(shared_cfg, out, "--resume")
    ref = json.loads((base / "eval.json").read_text())
    for k in ("test_loss", "valid_loss", "tokens_seen", "epochs"):
        assert ev[k] == ref[k], k
    assert _same_weights(base, out)
    assert len(read_metrics(out / "metrics.jsonl")) == 4


def test_hf_llama_trains_and_evaluates(shared_cfg, tmp_path, capsys):
    out = tmp_path / "llama"
    ev = _train(shared_cfg, out, "--set", "model.preset=hf", "--set", LLAMA, "--set", "train.steps=12", "--set", "train.lr=1e-2")
    assert (out / "model" / "config.json").is_file()
    assert json.loads((out / "model" / "config.json").read_text())["model_type"] == "llama"
    recs = read_metrics(out / "metrics.jsonl")
    assert recs[-1]["step"] == 12 and recs[-1]["loss"] < recs[0]["loss"]
    for split in ("test_loss", "valid_loss"):
        assert all(math.isfinite(v) for v in ev[split]["per_domain"].values())
    # Untrained, a vocabulary of V gives about log(V); training must have moved well below it.
    assert ev["valid_loss"]["average"] < math.log(512) - 0.3
    capsys.readouterr()
    rc = main(["eval", str(shared_cfg), "--model", str(out / "model"), "--out", str(tmp_path / "e.json"), *RUN,
               "--set", "model.preset=hf", "--set", LLAMA])
    assert rc == 0
    assert capsys.readouterr().err == ""  # quiet means no progress bars either
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["test_loss"]["per_domain"] == pytest.approx(ev["test_loss"]["per_domain"], rel=1e-6)


def test_resume_with_other_weights_is_refused(shared_cfg, base, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(base, out)
    w = tmp_path / "w.json"
    w.write_text(json.dumps({"domain_weights": {"code": 0.5, "docs": 0.25, "prose": 0.25}}))
    before = (out / "checkpoint" / "model.safetensors").read_bytes()
    capsys.readouterr()
    rc = main(["train", str(shared_cfg), "--out", str(out), *RUN, "--resume", "--weights", str(w)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "checkpoint was trained on weights" in err and "another --out" in err
    assert (out / "checkpoint" / "model.safetensors").read_bytes() == before


def test_periodic_validation_is_logged_plotted_and_leaves_training_unchanged(shared_cfg, base, tmp_path):
    """train.eval_interval: the valid loss of every domain every N steps in metrics.jsonl and training.png, from
    deterministic windows: the weights are exactly those of the same run without it."""
    out = tmp_path / "run"
    rc = main(["train", str(shared_cfg), "--out", str(out), *RUN, "--set", "train.eval_interval=8"])
    assert rc == 0
    recs = read_metrics(out / "metrics.jsonl")
    valid = [r for r in recs if "valid_loss" in r]
    assert [r["step"] for r in valid] == [8, 16]
    ev = json.loads((out / "eval.json").read_text())
    assert valid[-1]["valid_loss"] == pytest.approx(ev["valid_loss"]["per_domain"], rel=1e-6)
    assert (out / "training.png").is_file()
    assert _same_weights(base, out)
