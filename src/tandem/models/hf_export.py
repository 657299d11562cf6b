"""tandem's GPT as a Hugging Face GPT-2: the same computation under GPT-2's names and layout.

tandem's GPT is GPT-2's architecture (pre-norm blocks, learned positions, exact GELU, tied embeddings) without
biases; GPT-2 always has them, so they are written as zeros. Linear weights are [out, in], GPT-2's Conv1D weights
[in, out]. A saved model folder then loads with `AutoModelForCausalLM.from_pretrained`, `generate` and any tool
built on them, and tandem reads the same files back.
"""

from __future__ import annotations

import torch

from tandem.errors import InputError
from tandem.models.gpt import GPTConfig


def gpt2_config(cfg: GPTConfig) -> dict:
    """config.json of the equivalent GPT2LMHeadModel."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
        "n_inner": 4 * cfg.n_embd, "activation_function": "gelu", "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.02,
        "scale_attn_weights": True, "tie_word_embeddings": True, "use_cache": True, "torch_dtype": "float32",
        "bos_token_id": None, "eos_token_id": None,  # GPT-2's 50256 lies outside a small vocabulary
    }


# (tandem name, GPT-2 name, kind) of every per-layer tensor group: "ln" a LayerNorm, "linear" a Linear/Conv1D.
LAYER = [("ln1", "ln_1", "ln"), ("attn.qkv", "attn.c_attn", "linear"), ("attn.proj", "attn.c_proj", "linear"),
         ("ln2", "ln_2", "ln"), ("mlp.0", "mlp.c_fc", "linear"), ("mlp.2", "mlp.c_proj", "linear")]


def _pairs(cfg: GPTConfig):
    """(tandem prefix, GPT-2 prefix, kind) of every tensor group, the final LayerNorm included."""
    for i in range(cfg.n_layer):
        for ours, theirs, kind in LAYER:
            yield f"blocks.{i}.{ours}", f"transformer.h.{i}.{theirs}", kind
    yield "ln_f", "transformer.ln_f", "ln"


def to_gpt2(state: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """tandem GPT state dict -> GPT2LMHeadModel's (the tied output layer stored once, as the input embedding)."""
    out = {"transformer.wte.weight": state["wte.weight"], "transformer.wpe.weight": state["wpe.weight"]}
    for src, dst, kind in _pairs(cfg):
        w = state[f"{src}.weight"]
        out[f"{dst}.weight"] = w.t().contiguous() if kind == "linear" else w
        bias_len = w.shape[0]  # a Linear's out features, a LayerNorm's size
        out[f"{dst}.bias"] = state.get(f"{src}.bias", torch.zeros(bias_len, dtype=w.dtype))
    return {k: v.detach().contiguous() for k, v in out.items()}


def from_gpt2(state: dict[str, torch.Tensor], cfg: GPTConfig, where: str) -> dict[str, torch.Tensor]:
    """The inverse of to_gpt2 (tied output layer included). Biases a bias-free GPT cannot hold must be zero."""
    out = {"wte.weight": state["transformer.wte.weight"], "wpe.weight": state["transformer.wpe.weight"]}
    for ours, theirs, kind in _pairs(cfg):
        w = state[f"{theirs}.weight"]
        out[f"{ours}.weight"] = w.t().contiguous() if kind == "linear" else w
        b = state.get(f"{theirs}.bias")
        if cfg.bias:
            out[f"{ours}.bias"] = b
        elif b is not None and torch.any(b != 0):
            raise InputError(f"{where}: {theirs}.bias is not zero, and this model has no biases (bias: false)")
    out["lm_head.weight"] = out["wte.weight"]
    return out
