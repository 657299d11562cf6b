"""SFT end to end: a tiny Hugging Face model fine-tunes on a 3-task mixture; every mixing method runs on SFT tasks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from sft_tasks import sft_config  # noqa: E402

from tandem.config import load_config  # noqa: E402
from tandem.data.cache import prepare_data  # noqa: E402
from tandem.evaluation.evaluate import evaluate  # noqa: E402
from tandem.models import build_model  # noqa: E402
from tandem.training.trainer import train  # noqa: E402

TINY_LLAMA = {"model_type": "llama", "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128}


def test_tiny_hf_model_fine_tunes_on_three_tasks(tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(sft_config(tmp_path, model={"preset": "hf", "hf_config": TINY_LLAMA},
                                 train={"steps": 40, "lr": 5e-3, "log_interval": 40}))
    data = prepare_data(cfg)
    before = evaluate(build_model(cfg.model, data.vocab_size, cfg.train.seq_len, cfg.seed), data, cfg.train.seq_len,
                      None, 16, torch.device("cpu"), splits=("valid",))
    outcome = train(cfg, data, np.full(3, 1 / 3), tmp_path / "run", progress=False, log=lambda s: None)
    after = evaluate(outcome.model, data, cfg.train.seq_len, None, 16, torch.device("cpu"), splits=("valid",))
    b, a = before["valid_loss"]["per_domain"], after["valid_loss"]["per_domain"]
    assert set(a) == {"funcname", "upper", "module"}
    for d in a:
        assert a[d] < b[d] - 1.0, (d, b[d], a[d])
    assert after["valid_tokens"] == before["valid_tokens"]  # the same response tokens are scored
    seen = outcome.tokens_seen(data.domains)
    assert all(0 < seen[d] for d in seen)


@pytest.mark.parametrize("method", ["tandem", "doremi", "doge", "odm", "aioli", "skillit", "ado", "regmix", "grid",
                                    "uniform"])
def test_every_method_optimizes_sft_tasks(tmp_path, cli, method):
    torch.set_num_threads(1)
    cfg = sft_config(tmp_path, train={"steps": 4}, mixer={"episodes": 3, "probe_steps": 2, "free_steps": 2, "update": "eg",
                                                           "eta_alpha": 10.0, "regmix_samples": 3, "grid_resolution": 1})
    # ODM explores uniformly while its epsilon_t = min(1/K, sqrt(ln K / (K t))) is 1/K (t <= K ln K steps): a few
    # warm-up steps first, as ODM itself has.
    extra = ["--set", "mixer.warmup_steps=4"] if method == "odm" else []
    rc, out, err = cli("optimize", cfg, "--out", tmp_path / "opt", "-q", "--set", f"mixer.method={method}", *extra)
    assert rc == 0, err
    w = json.loads((tmp_path / "opt" / "weights.json").read_text())["domain_weights"]
    assert set(w) == {"funcname", "upper", "module"}
    assert sum(w.values()) == pytest.approx(1.0) and all(v >= 0 for v in w.values())
    if method in ("tandem", "doremi", "doge", "odm", "aioli", "skillit", "ado"):
        rows = (tmp_path / "opt" / "trajectory.csv").read_text().splitlines()
        assert len(rows) == 1 + 3
        assert max(abs(v - 1 / 3) for v in w.values()) > 1e-4  # the SFT losses moved the weights


def test_train_reports_task_metrics_and_cut_responses(tmp_path, cli):
    """A domain that declares a metric is scored by generation after training; eval.json says how many responses
    did not fit in seq_len, per domain and split."""
    torch.set_num_threads(1)
    cfg = sft_config(tmp_path, train={"steps": 3, "seq_len": 24}, eval={"task_examples": 5})
    import yaml

    raw = yaml.safe_load(Path(cfg).read_text())
    raw["data"]["domains"]["upper"]["metric"] = "exact_match_f1"
    Path(cfg).write_text(yaml.safe_dump(raw))
    rc, out, err = cli("train", cfg, "--out", tmp_path / "t", "-q")
    assert rc == 0, err
    ev = json.loads((tmp_path / "t" / "eval.json").read_text())
    assert set(ev["task_metrics"]["per_task"]) == {"upper"}
    assert ev["task_metrics"]["per_task"]["upper"]["examples"] == 5
    assert set(ev["sft_examples"]) == {"funcname", "upper", "module"}
    assert any(s["responses_cut"] > 0 for d in ev["sft_examples"].values() for s in d.values())
    rc, out, err = cli("prepare", cfg, "-q")
    assert "its end is cut" in out
    rc, out, err = cli("train", cfg, "--out", tmp_path / "u", "-q", "--set", "eval.task_metrics=false")
    assert rc == 0 and "task_metrics" not in json.loads((tmp_path / "u" / "eval.json").read_text())
