"""Model construction, saving and loading: the built-in GPT presets and any Hugging Face causal LM.

Every model here maps token ids [B, T] to logits [B, T, V]; losses are computed outside
(tandem.training.loss) so that per-domain accounting is the same for every model.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from tandem.config import ModelConfig
from tandem.errors import InputError
from tandem.models.gpt import GPT, PRESETS, GPTConfig

META_FILE = "tandem_model.json"


class HFCausalLM(nn.Module):
    """Adapter giving a transformers causal LM the same call signature as GPT."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, idx: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attn_mask is not None:
            # transformers accepts a 4D float/bool mask [B, 1, T, T] in place of the causal one.
            return self.hf(input_ids=idx, attention_mask=attn_mask[:, None], use_cache=False).logits
        return self.hf(input_ids=idx, use_cache=False).logits

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def gpt_config(cfg: ModelConfig, vocab_size: int, seq_len: int) -> GPTConfig:
    p = dict(PRESETS[cfg.preset])
    for k in ("n_layer", "n_head", "n_embd"):
        if getattr(cfg, k) is not None:
            p[k] = getattr(cfg, k)
    if p["n_embd"] % p["n_head"]:
        raise InputError(f"model: n_embd={p['n_embd']} must be divisible by n_head={p['n_head']}")
    return GPTConfig(vocab_size=vocab_size, block_size=seq_len, dropout=cfg.dropout, **p)


def build_model(cfg: ModelConfig, vocab_size: int, seq_len: int, seed: int, base_dir: Path | str = ".") -> nn.Module:
    """A freshly initialised (or locally loaded pretrained) model; initialisation is seeded."""
    torch.manual_seed(seed)
    if cfg.preset != "hf":
        return GPT(gpt_config(cfg, vocab_size, seq_len))
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if cfg.hf_config is not None:
        hc = dict(cfg.hf_config)
        model_type = hc.pop("model_type", None)
        if not model_type:
            raise InputError("model.hf_config: needs model_type (e.g. llama, gpt2)")
        try:
            hf_cfg = transformers.AutoConfig.for_model(model_type, **hc)
        except Exception as err:  # transformers' configs raise several types (and strict dataclass errors)
            raise InputError(f"model.hf_config: {_first_line(err)}") from None
        hf_cfg.vocab_size = vocab_size
        # Small vocabularies: special ids from a 50k vocabulary would index out of range.
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(hf_cfg, attr, None) is not None and getattr(hf_cfg, attr) >= vocab_size:
                setattr(hf_cfg, attr, vocab_size - 1)
        max_pos = getattr(hf_cfg, "max_position_embeddings", None) or getattr(hf_cfg, "n_positions", None)
        if max_pos is not None and max_pos < seq_len:
            raise InputError(f"model.hf_config: max positions {max_pos} < train.seq_len {seq_len}")
        try:
            model = transformers.AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32)
        except MemoryError:
            raise
        except Exception as err:  # an architecture the settings cannot build (hidden size not divisible by heads)
            raise InputError(f"model.hf_config: cannot build a {model_type} model: {_first_line(err)}") from None
    else:
        path = Path(cfg.hf_path).expanduser()
        if not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_dir():
            raise InputError(f"model.hf_path: {path} is not a folder (only local models are loaded)")
        kw = {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path), local_files_only=True, dtype=torch.float32, **kw
            )
        except MemoryError:
            raise
        except Exception as err:  # a broken or foreign folder: transformers raises many types for it
            raise InputError(f"model.hf_path: cannot load {path}: {_first_line(err)}") from None
        if model.get_input_embeddings().num_embeddings < vocab_size:
            raise InputError(
                f"model.hf_path: model vocabulary ({model.get_input_embeddings().num_embeddings}) is smaller than the "
                f"tokenizer's ({vocab_size}); use the model's own tokenizer (tokenizer.kind=hf)"
            )
    return HFCausalLM(model)


def save_model(model: nn.Module, out_dir: Path | str, extra: dict | None = None) -> None:
    """Save weights as safetensors plus a small JSON describing how to rebuild the model."""
    from safetensors.torch import save_model as st_save

    from tandem.io import atomic_path, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if isinstance(model, HFCausalLM):
        import shutil

        from tandem.io import chmod_like_open, storage_errors

        tmp = out_dir / ".hf_tmp"
        with storage_errors(out_dir, cleanup=lambda: shutil.rmtree(tmp, ignore_errors=True)):
            model.hf.save_pretrained(str(tmp), safe_serialization=True)
        for f in tmp.iterdir():
            chmod_like_open(f)
            f.replace(out_dir / f.name)
        tmp.rmdir()
        meta = {"kind": "hf"}
    else:
        # Written as the equivalent GPT-2 (tandem.models.hf_export): `from_pretrained` loads the folder as it is.
        from safetensors.torch import save_file

        from tandem.models.hf_export import gpt2_config, to_gpt2

        cfg = model.config
        from tandem.io import storage_errors

        with atomic_path(out_dir / "model.safetensors") as tmp, storage_errors(out_dir / "model.safetensors"):
            save_file(to_gpt2(model.state_dict(), cfg), str(tmp), metadata={"format": "pt"})
        write_json(out_dir / "config.json", gpt2_config(cfg))
        meta = {"kind": "gpt", "format": "gpt2", "config": cfg.to_dict()}
    meta.update(extra or {})
    write_json(out_dir / META_FILE, meta)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _gpt_config(meta: dict, where: Path) -> GPTConfig:
    """The GPT's sizes from tandem_model.json, each of the type and range the model needs."""
    from dataclasses import fields

    from tandem import schema

    schema.check(meta, {"config": schema.mapping(schema.ANY)}, str(where))
    known = {f.name: f for f in fields(GPTConfig)}
    c = meta["config"]
    for k, v in c.items():
        if k not in known:
            raise InputError(f"{where}: config.{k}: unknown field; expected some of {', '.join(known)}")
        kind = {"int": schema.INT, "float": schema.NUM, "bool": schema.BOOL}[str(known[k].type)]
        schema.check(v, kind, str(where), f"config.{k}")
        if kind is schema.INT and v < 1 or kind is schema.NUM and not 0 <= v < 1:
            raise InputError(f"{where}: config.{k}: out of range (got {v})")
    if "vocab_size" not in c:
        raise InputError(f"{where}: config: missing field 'vocab_size'")
    cfg = GPTConfig(**c)
    if cfg.n_embd % cfg.n_head:
        raise InputError(f"{where}: config: n_embd {cfg.n_embd} is not divisible by n_head {cfg.n_head}")
    return cfg


def load_model(model_dir: Path | str) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by save_model; returns (model, metadata)."""
    from safetensors.torch import load_model as st_load

    model_dir = Path(model_dir)
    meta_path = model_dir / META_FILE
    if not model_dir.exists():
        raise InputError(f"{model_dir}: model folder not found")
    from tandem import schema

    if meta_path.is_file():
        meta = schema.read_json(meta_path, {schema.opt("kind"): schema.one_of("gpt", "hf")}, "model metadata")
    elif (model_dir / "config.json").is_file():  # any Hugging Face causal LM folder (a Trainer checkpoint, a hub copy)
        meta = {"kind": "hf"}
    else:
        raise InputError(f"{model_dir}: not a model folder (no {META_FILE} of tandem, nor a Hugging Face config.json)")
    if meta.get("kind") == "hf":
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()  # stderr stays for errors (and --quiet means quiet)
        try:
            hf = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True,
                                                                   dtype=torch.float32)
        except MemoryError:
            raise
        except Exception as err:  # a folder without (or with broken) Hugging Face files: many exception types
            raise InputError(f"{model_dir}: cannot load the Hugging Face model ({_first_line(err)})") from None
        model = HFCausalLM(hf)
    else:
        model = GPT(_gpt_config(meta, meta_path))
        weights = model_dir / "model.safetensors"
        if not weights.is_file():
            raise InputError(f"{model_dir}: missing model.safetensors")
        try:
            if meta.get("format") == "gpt2":
                from safetensors.torch import load_file

                from tandem.models.hf_export import from_gpt2

                model.load_state_dict(from_gpt2(load_file(str(weights)), model.config, str(weights)))
            else:  # folders written before the GPT-2 layout
                st_load(model, str(weights))
        except InputError:
            raise
        except Exception as err:  # safetensors raises several types for corrupt files
            raise InputError(f"{weights}: cannot load weights ({str(err).splitlines()[0]})") from None
    return model, meta
