"""Greedy generation: stops at the end-of-text token and at a newline, is deterministic, batch-independent;
`tandem metrics` scores SFT tasks end to end on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from tandem.evaluation.generate import greedy_generate
from tandem.models.gpt import GPT, GPTConfig

V = 12
LETTERS = "abcd\nfghijkl"  # token 4 decodes to a newline


def decode(ids):
    return "".join(LETTERS[i] for i in ids)


class NextId(nn.Module):
    """A causal model whose greedy choice after token t is t + 1 (mod V); counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, idx, attn_mask=None):
        self.calls += 1
        return torch.nn.functional.one_hot((idx + 1) % V, V).float()


def test_stops_at_the_end_of_text_token():
    m = NextId()
    # After 5: 6, 7, 8, then 9 is the end-of-text token: three tokens kept, four forward passes.
    assert greedy_generate(m, [[5]], decode, eos_id=9, max_new_tokens=20) == ["ghi"]
    assert m.calls == 4


def test_stops_at_a_newline_and_cuts_it():
    m = NextId()
    # After 1: 2, 3, then 4 decodes to "\n": generation ends there and the answer is cut before it.
    assert greedy_generate(m, [[1]], decode, eos_id=11, max_new_tokens=20) == ["cd"]
    assert m.calls == 3
    assert greedy_generate(NextId(), [[1]], decode, eos_id=11, stop_strings=()) == [decode([2, 3, 4, 5, 6, 7, 8, 9, 10]).strip()]


def test_max_new_tokens_and_rows_of_different_lengths():
    m = NextId()
    out = greedy_generate(m, [[5], [0, 1, 2, 5, 6], [9]], decode, eos_id=11, max_new_tokens=2, stop_strings=(), batch_size=3)
    assert out == ["gh", "hi", "k"]  # 9 -> 10, then 11 is the end-of-text token
    assert m.calls == 2


def _tiny_gpt(seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, block_size=64, n_layer=2, n_head=2, n_embd=32))


@pytest.mark.parametrize("seed", [0, 1])
def test_tiny_gpt_is_deterministic_and_batch_independent(seed):
    model = _tiny_gpt(seed)
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, V, (int(n),), generator=g).tolist() for n in torch.randint(1, 20, (7,), generator=g)]
    kw = dict(decode=decode, eos_id=11, max_new_tokens=12, stop_strings=())
    batched = greedy_generate(model, prompts, batch_size=4, **kw)
    assert batched == greedy_generate(model, prompts, batch_size=4, **kw)
    assert batched == [greedy_generate(model, [p], batch_size=1, **kw)[0] for p in prompts]
    # The answer really is the argmax chain of the model run on the growing sequence alone.
    seq = list(prompts[0])
    expected = []
    for _ in range(12):
        t = int(model(torch.tensor([seq]))[0, -1].argmax())
        if t == 11:
            break
        seq.append(t)
        expected.append(t)
    assert batched[0] == decode(expected).strip()


def test_metrics_command_on_tiny_sft_tasks(tmp_path, cli):
    """Three generated e-commerce tasks as SFT domains: train a tiny model, then score it per task."""
    import yaml

    from tandem.examples.ecommerce import build_ecommerce

    data = tmp_path / "ec"
    build_ecommerce(data, seed=0, scale=0.05)
    metric = {"category": "accuracy", "attributes": "exact_match_f1", "brand": "exact_match_f1"}
    cfg = {
        "data": {"domains": {t: {"train": f"ec/{t}/train.jsonl", "valid": f"ec/{t}/valid.jsonl",
                                 "test": f"ec/{t}/test.jsonl", "kind": "sft", "metric": m} for t, m in metric.items()}},
        "tokenizer": {"vocab_size": 512},
        "model": {"preset": "tiny"},
        "train": {"steps": 6, "batch_size": 4, "seq_len": 192, "warmup_steps": 1, "log_interval": 3},
        "eval": {"max_tokens": 512, "batch_size": 8},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc, _, err = cli("train", tmp_path / "c.yaml", "--out", tmp_path / "run", "-q")
    assert rc == 0, err
    rc, out, err = cli("metrics", tmp_path / "c.yaml", "--model", tmp_path / "run" / "model", "--out",
                       tmp_path / "m.json", "--max-examples", "4", "--max-new-tokens", "6", "-q")
    assert rc == 0, err
    res = json.loads((tmp_path / "m.json").read_text())
    assert set(res["per_task"]) == set(metric)
    assert res["per_task"]["category"].keys() >= {"accuracy", "examples"}
    assert res["per_task"]["brand"].keys() >= {"exact_match", "f1"}
    assert all(r["examples"] == 4 for r in res["per_task"].values())
    assert set(res["loss"]["per_domain"]) == set(metric) and all(v > 0 for v in res["loss"]["per_domain"].values())
    assert "task metrics" in out
    # Gold answers are the rows' responses, in file order.
    first = json.loads((data / "brand" / "test.jsonl").read_text().splitlines()[0])["response"]
    assert res["samples"]["brand"][0]["gold"] == first

    # A config without any metric domain is an input error (exit 2), and nothing is written.
    cfg["data"]["domains"] = {t: {**d, "metric": None} for t, d in cfg["data"]["domains"].items()}
    (tmp_path / "c2.yaml").write_text(yaml.safe_dump(cfg))
    rc, _, err = cli("metrics", tmp_path / "c2.yaml", "--model", tmp_path / "run" / "model", "--out", tmp_path / "m2.json")
    assert rc == 2 and "metric" in err and not (tmp_path / "m2.json").exists()


def test_hf_model_cached_generation_matches_full_recomputation():
    """A tiny Llama built from a config: the key-value-cached path gives the recomputed greedy chain."""
    import transformers

    from tandem.models import HFCausalLM

    torch.manual_seed(0)
    cfg = transformers.AutoConfig.for_model("llama", vocab_size=V, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                            max_position_embeddings=64, bos_token_id=0, eos_token_id=11, pad_token_id=11)
    model = HFCausalLM(transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)).eval()
    prompts = [[1, 5, 2, 7], [3], [9, 9, 0, 1, 2, 6, 8, 10]]
    got = greedy_generate(model, prompts, decode, eos_id=11, max_new_tokens=10, stop_strings=())
    for p, answer in zip(prompts, got):
        seq, expected = list(p), []
        for _ in range(10):
            t = int(model(torch.tensor([seq]))[0, -1].argmax())
            if t == 11:
                break
            seq.append(t)
            expected.append(t)
        assert answer == decode(expected).strip()
