"""Token data from `datasets` objects already in memory: the user's own per-domain datasets, for the Trainer
callback (tandem.integrations.hf) when the data does not come from a config file.

    data = token_data({"web": web, "code": code_dict, "target": {"validation": target_valid}}, tokenizer)

A domain is a `Dataset` (its train split), a `DatasetDict` or a {split: Dataset} mapping (`train`, `validation` /
`valid` / `dev`, `test`). A domain with no train split is target-only: evaluated and usable as the target, never
trained on. Rows with an `input_ids` column are taken as tokenized; otherwise the text column is tokenized, and an
end-of-text token follows every document, as `tandem prepare` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tandem.config import SPLITS, domain_name_problem
from tandem.data.cache import PreparedData
from tandem.data.tokenizer import TextTokenizer, find_eos_id
from tandem.errors import InputError

SPLIT_NAMES = {"train": "train", "validation": "valid", "valid": "valid", "dev": "valid", "test": "test"}


def as_text_tokenizer(tokenizer) -> TextTokenizer:
    """A TextTokenizer from a transformers tokenizer (with a fast backend), a `tokenizers.Tokenizer` or itself."""
    if isinstance(tokenizer, TextTokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a transformers PreTrainedTokenizerFast
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else find_eos_id(backend, "tokenizer")
        return TextTokenizer(backend, eos, getattr(tokenizer, "chat_template", None),
                             getattr(tokenizer, "bos_token", None))
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "token_to_id"):  # a tokenizers.Tokenizer
        return TextTokenizer(tokenizer, find_eos_id(tokenizer, "tokenizer"))
    raise InputError(f"tokenizer: expected a fast transformers tokenizer or a tokenizers.Tokenizer, got "
                     f"{type(tokenizer).__name__}")


def _splits(name: str, obj) -> dict:
    """{train|valid|test: Dataset} of one domain."""
    import datasets

    if isinstance(obj, datasets.Dataset):
        return {"train": obj}
    if not isinstance(obj, (dict, datasets.DatasetDict)):
        raise InputError(f"domain {name}: expected a datasets.Dataset, a DatasetDict or {{split: Dataset}}, got "
                         f"{type(obj).__name__}")
    out = {}
    for split, ds in obj.items():
        if split not in SPLIT_NAMES:
            raise InputError(f"domain {name}: unknown split {split!r}; expected train, validation (valid, dev), test")
        if SPLIT_NAMES[split] in out:
            raise InputError(f"domain {name}: two splits mean {SPLIT_NAMES[split]!r}")
        if not isinstance(ds, datasets.Dataset):
            raise InputError(f"domain {name}.{split}: expected a datasets.Dataset, got {type(ds).__name__}")
        out[SPLIT_NAMES[split]] = ds
    if not out:
        raise InputError(f"domain {name}: no split")
    return out


def _tokens(label: str, ds, tok: TextTokenizer, text_field: str, append_eos: bool) -> tuple[list[int], int]:
    """The split's documents as one token stream, and how many documents there were."""
    if "input_ids" in ds.column_names:
        docs = [list(ids) for ids in ds["input_ids"]]
    elif text_field in ds.column_names:
        texts = ds[text_field]
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise InputError(f"{label}: column '{text_field}' must hold strings, got {type(bad).__name__}")
        docs = tok.encode_batch([t for t in texts if t])
    else:
        raise InputError(f"{label}: no column 'input_ids' or '{text_field}' (columns: {', '.join(ds.column_names)})")
    flat = []
    for ids in docs:
        flat.extend(ids)
        if append_eos:
            flat.append(tok.eos_id)
    return flat, len(docs)


def token_data(domains: dict, tokenizer, text_field: str = "text", append_eos: bool = True) -> PreparedData:
    """PreparedData (what MixtureDataset and TandemCallback read) from {domain name: dataset(s)} in memory."""
    if not isinstance(domains, dict) or not domains:
        raise InputError("token_data: expected {domain name: Dataset, DatasetDict or {split: Dataset}}")
    tok = as_text_tokenizer(tokenizer)
    dtype = np.dtype(np.uint16 if tok.vocab_size <= 65536 else np.uint32)
    arrays, entries = {}, {}
    for name, obj in domains.items():
        problem = domain_name_problem(str(name))
        if problem:
            raise InputError(f"domain name {name!r}: {problem}")
        splits = _splits(name, obj)
        arrays[name] = {}
        for split in SPLITS:
            ids, n_docs = ([], 0) if split not in splits else _tokens(f"domain {name}.{split}", splits[split], tok,
                                                                      text_field, append_eos)
            if split in splits and not ids:
                raise InputError(f"domain {name}.{split}: no text")
            if ids and max(ids) >= tok.vocab_size:
                raise InputError(f"domain {name}.{split}: token id {max(ids)} is outside the tokenizer's vocabulary "
                                 f"of {tok.vocab_size}")
            arrays[name][split] = np.asarray(ids, dtype=dtype)
            entries[f"{name}/{split}"] = {"tokens": len(ids), "documents": n_docs}
    if not any(len(a["train"]) for a in arrays.values()):
        raise InputError("token_data: no domain has a train split; at least one needs one")
    return PreparedData(domains=list(domains), tokenizer=tok, cache_dir=Path("."), arrays=arrays,
                        index={"entries": entries, "tokenizer": {"vocab_size": tok.vocab_size, "eos_id": tok.eos_id}})
