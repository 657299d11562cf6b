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


def to_gpt2(state: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """tandem GPT state dict -> GPT2LMHeadModel's (the tied output layer stored once, as the input embedding)."""
    out = {"transformer.wte.weight": state["wte.weight"], "transformer.wpe.weight": state["wpe.weight"]}

    def ln(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = state[f"{src}.weight"]
        out[f"{dst}.bias"] = state.get(f"{src}.bias", torch.zeros_like(state[f"{src}.weight"]))

    def linear(src: str, dst: str) -> None:
        w = state[f"{src}.weight"]
        out[f"{dst}.weight"] = w.t().contiguous()
        out[f"{dst}.bias"] = state.get(f"{src}.bias", torch.zeros(w.shape[0], dtype=w.dtype))

    for i in range(cfg.n_layer):
        s, d = f"blocks.{i}", f"transformer.h.{i}"
        ln(f"{s}.ln1", f"{d}.ln_1")
        linear(f"{s}.attn.qkv", f"{d}.attn.c_attn")
        linear(f"{s}.attn.proj", f"{d}.attn.c_proj")
        ln(f"{s}.ln2", f"{d}.ln_2")
        linear(f"{s}.mlp.0", f"{d}.mlp.c_fc")
        linear(f"{s}.mlp.2", f"{d}.mlp.c_proj")
    ln("ln_f", "transformer.ln_f")
    return {k: v.detach().contiguous() for k, v in out.items()}


def from_gpt2(state: dict[str, torch.Tensor], cfg: GPTConfig, where: str) -> dict[str, torch.Tensor]:
    """The inverse of to_gpt2 (tied output layer included). Biases a bias-free GPT cannot hold must be zero."""
    out = {"wte.weight": state["transformer.wte.weight"], "wpe.weight": state["transformer.wpe.weight"]}

    def bias(src: str, dst: str) -> None:
        b = state.get(f"{src}.bias")
        if cfg.bias:
            out[f"{dst}.bias"] = b
        elif b is not None and torch.any(b != 0):
            raise InputError(f"{where}: {src}.bias is not zero, and this model has no biases (bias: false)")

    def ln(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = state[f"{src}.weight"]
        bias(src, dst)

    def linear(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = state[f"{src}.weight"].t().contiguous()
        bias(src, dst)

    for i in range(cfg.n_layer):
        s, d = f"transformer.h.{i}", f"blocks.{i}"
        ln(f"{s}.ln_1", f"{d}.ln1")
        linear(f"{s}.attn.c_attn", f"{d}.attn.qkv")
        linear(f"{s}.attn.c_proj", f"{d}.attn.proj")
        ln(f"{s}.ln_2", f"{d}.ln2")
        linear(f"{s}.mlp.c_fc", f"{d}.mlp.0")
        linear(f"{s}.mlp.c_proj", f"{d}.mlp.2")
    ln("transformer.ln_f", "ln_f")
    out["lm_head.weight"] = out["wte.weight"]
    return out
