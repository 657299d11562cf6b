"""Models: the GPT presets and the Hugging Face adapter build, run causally, save and load exactly."""

from __future__ import annotations

import json

import pytest
import torch

from tandem.config import ModelConfig
from tandem.errors import InputError
from tandem.models import HFCausalLM, build_model, gpt_config, load_model, save_model
from tandem.models.gpt import GPT, PRESETS

LLAMA = {
    "model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
}
VOCAB, SEQ = 97, 16


def _ids(seed=0, b=3, t=SEQ):
    return torch.randint(0, VOCAB, (b, t), generator=torch.Generator().manual_seed(seed))


def _hf():
    return build_model(ModelConfig(preset="hf", hf_config=dict(LLAMA)), VOCAB, SEQ, seed=0)


def test_gpt_shapes_ties_and_overrides():
    m = build_model(ModelConfig(preset="tiny"), VOCAB, SEQ, seed=0)
    assert isinstance(m, GPT)
    assert m(_ids()).shape == (3, SEQ, VOCAB)
    assert m.lm_head.weight is m.wte.weight
    assert (m.config.n_layer, m.config.n_head, m.config.n_embd) == (2, 2, 64)
    c = gpt_config(ModelConfig(preset="small", n_layer=1, n_embd=48, n_head=3), VOCAB, SEQ)
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size) == (1, 3, 48, SEQ, VOCAB)
    with pytest.raises(InputError, match="n_embd=50 must be divisible by n_head=4"):
        gpt_config(ModelConfig(preset="tiny", n_embd=50, n_head=4), VOCAB, SEQ)
    with pytest.raises(ValueError, match="exceeds block_size"):
        m(_ids(t=SEQ + 1))
    sizes = [build_model(ModelConfig(preset=p), 512, 32, 0).num_params() for p in ("tiny", "mini", "small")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert set(PRESETS) >= {"tiny", "small", "base"}


@pytest.mark.parametrize("which", ["gpt", "hf"])
def test_causal_and_seeded(which):
    make = (lambda s: build_model(ModelConfig(preset="tiny"), VOCAB, SEQ, seed=s)) if which == "gpt" else (
        lambda s: build_model(ModelConfig(preset="hf", hf_config=dict(LLAMA)), VOCAB, SEQ, seed=s))
    m = make(0).eval()
    x = _ids()
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % VOCAB
    with torch.no_grad():
        a, b = m(x), m(y)
    assert a.shape == (3, SEQ, VOCAB)
    torch.testing.assert_close(a[:, :10], b[:, :10])  # earlier positions never see later tokens
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    same, other = make(0), make(1)
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), same.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(m.parameters(), other.parameters()))


def test_hf_adapter_config():
    m = _hf()
    assert isinstance(m, HFCausalLM)
    hc = m.hf.config
    assert hc.vocab_size == VOCAB and hc.hidden_size == 32 and hc.num_key_value_heads == 2
    assert all(getattr(hc, a) is None or getattr(hc, a) < VOCAB for a in ("bos_token_id", "eos_token_id", "pad_token_id"))
    assert m.num_params() == sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "cfg, needle",
    [
        ({"hf_config": {"hidden_size": 32}}, "needs model_type"),
        ({"hf_config": {**LLAMA, "max_position_embeddings": 8}}, "max positions 8 < train.seq_len 16"),
        ({"hf_config": {"model_type": "no-such-model"}}, "model.hf_config"),
        ({"hf_path": "does/not/exist"}, "is not a folder"),
    ],
)
def test_hf_errors(tmp_path, cfg, needle):
    with pytest.raises(InputError, match=needle):
        build_model(ModelConfig(preset="hf", **cfg), VOCAB, SEQ, seed=0, base_dir=tmp_path)


@pytest.mark.parametrize("which", ["gpt", "hf"])
def test_save_and_load_round_trip(tmp_path, which):
    m = build_model(ModelConfig(preset="tiny"), VOCAB, SEQ, 0) if which == "gpt" else _hf()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the initialisation
    save_model(m, tmp_path / "m", extra={"seq_len": SEQ})
    meta = json.loads((tmp_path / "m" / "tandem_model.json").read_text())
    assert meta["kind"] == which and meta["seq_len"] == SEQ
    loaded, meta2 = load_model(tmp_path / "m")
    assert meta2 == meta and type(loaded) is type(m)
    sd, sd2 = m.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(_ids()), m.eval()(_ids()), rtol=0, atol=0)


def test_a_saved_preset_loads_with_from_pretrained_and_generates(tmp_path):
    """A built-in preset's folder is a GPT-2 checkpoint to Hugging Face: the same logits, and generate works; a
    trained model run through `tandem run` is loaded the same way."""
    import transformers

    m = build_model(ModelConfig(preset="tiny", n_layer=2, n_embd=32, n_head=2), VOCAB, SEQ, 0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_model(m, tmp_path / "m")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), local_files_only=True)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(ids).logits, m.eval()(ids), rtol=1e-5, atol=1e-5)
    out = hf.generate(ids[:1, :4], max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 10)
    # greedy generation agrees with tandem's own model, token for token
    seq = ids[:1, :4]
    with torch.no_grad():
        for _ in range(6):
            seq = torch.cat([seq, m(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)
    # a bias GPT-2 holds that a bias-free model cannot is refused, naming the file
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tmp_path / "m" / "model.safetensors"))
    sd["transformer.h.0.attn.c_attn.bias"] += 1.0
    save_file(sd, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(InputError, match="bias is not zero"):
        load_model(tmp_path / "m")


def test_hf_from_local_pretrained_folder(tmp_path):
    m = _hf()
    m.hf.save_pretrained(str(tmp_path / "pre"))
    again = build_model(ModelConfig(preset="hf", hf_path="pre"), VOCAB, SEQ, seed=5, base_dir=tmp_path)
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), again.parameters()))
    with pytest.raises(InputError, match="smaller than the tokenizer"):
        build_model(ModelConfig(preset="hf", hf_path="pre"), VOCAB + 50, SEQ, seed=0, base_dir=tmp_path)


def test_load_model_errors(tmp_path):
    with pytest.raises(InputError, match="not a model folder"):
        load_model(tmp_path)
    (tmp_path / "tandem_model.json").write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        load_model(tmp_path)
    save_model(build_model(ModelConfig(preset="tiny"), VOCAB, SEQ, 0), tmp_path / "g")
    (tmp_path / "g" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="cannot load weights"):
        load_model(tmp_path / "g")
    (tmp_path / "g" / "model.safetensors").unlink()
    with pytest.raises(InputError, match="missing model.safetensors"):
        load_model(tmp_path / "g")
