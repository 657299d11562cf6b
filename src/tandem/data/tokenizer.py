"""Tokenizers: train a byte-level BPE on the train splits, or load a tokenizer.json / local HF folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Tokenizer

from tandem.errors import InputError

EOS_TOKEN = "<|endoftext|>"


class TextTokenizer:
    """A `tokenizers.Tokenizer` plus the end-of-text id; encodes without adding special tokens."""

    def __init__(self, tok: Tokenizer, eos_id: int, chat_template: str | None = None, bos_token: str | None = None):
        self.tok = tok
        self.eos_id = eos_id
        self.chat_template = chat_template  # a Hugging Face tokenizer's own Jinja chat template, if it has one
        self.bos_token = bos_token

    @property
    def eos_token(self) -> str:
        return self.tok.id_to_token(self.eos_id)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.tok.to_str().encode()).hexdigest()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch_offsets(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Ids and (start, end) character offsets of every token, to map character spans onto tokens."""
        return [(e.ids, e.offsets) for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def save(self, path: Path | str) -> None:
        from tandem.io import write_text

        write_text(path, self.tok.to_str())

    def save_pretrained(self, folder: Path | str, model_max_length: int | None = None) -> None:
        """tokenizer.json plus the files `AutoTokenizer.from_pretrained` reads for the special tokens and the chat
        template (tokenizer_config.json, special_tokens_map.json): without them a loaded tokenizer has no eos."""
        from tandem.io import write_json

        folder = Path(folder)
        self.save(folder / "tokenizer.json")
        special = {"eos_token": self.eos_token, "pad_token": self.eos_token,
                   **({"bos_token": self.bos_token} if self.bos_token else {})}
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, **special}
        if model_max_length:
            config["model_max_length"] = int(model_max_length)
        if self.chat_template:
            config["chat_template"] = self.chat_template
        write_json(folder / "tokenizer_config.json", config)
        write_json(folder / "special_tokens_map.json", special)


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> TextTokenizer:
    """Byte-level BPE (GPT-2 style) with one special token, <|endoftext|>, id 0."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tok, tok.token_to_id(EOS_TOKEN))


def find_eos_id(tok: Tokenizer, label: str) -> int:
    for name in (EOS_TOKEN, "</s>", "<|im_end|>", "<eos>", "<|end_of_text|>"):
        tid = tok.token_to_id(name)
        if tid is not None:
            return tid
    raise InputError(f"{label}: no end-of-text token found (looked for {EOS_TOKEN}, </s>, <eos>)")


def load_tokenizer_file(path: Path) -> TextTokenizer:
    if not path.is_file():
        raise InputError(f"tokenizer.path: file not found: {path}")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on malformed files
        raise InputError(f"tokenizer.path: {path} is not a valid tokenizer.json ({str(err).splitlines()[0]})") from None
    return TextTokenizer(tok, find_eos_id(tok, str(path)))


def load_hf_tokenizer(path: Path) -> TextTokenizer:
    """A local Hugging Face tokenizer folder, or the tokenizer inside a local GGUF model file."""
    is_gguf = path.is_file() and path.name.lower().endswith(".gguf")
    if not path.is_dir() and not is_gguf:
        raise InputError(f"tokenizer.path: {path} is not a folder or a .gguf file (only local tokenizers are loaded)")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    folder, kw = (path.parent, {"gguf_file": path.name}) if is_gguf else (path, {})
    try:
        hf = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kw)
    except (OSError, ValueError) as err:
        raise InputError(f"tokenizer.path: cannot load a tokenizer from {path} ({str(err).splitlines()[0]})") from None
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise InputError(f"tokenizer.path: {path} has no fast tokenizer (tokenizer.json)")
    eos = hf.eos_token_id if hf.eos_token_id is not None else find_eos_id(backend, str(path))
    return TextTokenizer(backend, eos, getattr(hf, "chat_template", None), getattr(hf, "bos_token", None))


def sample_texts(texts: Iterable[str], max_chars: int) -> Iterator[str]:
    """Stop feeding the BPE trainer once max_chars have been seen (training cost grows with text)."""
    seen = 0
    for t in texts:
        if seen >= max_chars:
            return
        yield t[: max_chars - seen]
        seen += len(t)
