"""Token cache: one flat token file per domain and split (read through np.memmap) plus a JSON index.

An entry is reused when its key (hash of the sources, the tokenizer and the reading
options) is unchanged, and rebuilt otherwise. Files are written to a temporary name
and renamed, so a killed `prepare` never leaves a half-written shard behind an index
that claims it is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from tandem.config import SPLITS, Config, DomainConfig
from tandem.data.readers import (expand_sources, fingerprint_sources, read_documents, read_records, row_filter,
                                 text_of)
from tandem.data.sft import ChatRenderer, SFTExamples, message_text, resolve_template, row_messages
from tandem.data.tokenizer import TextTokenizer, load_hf_tokenizer, load_tokenizer_file, sample_texts, train_bpe
from tandem.errors import InputError
from tandem.io import atomic_path, write_json

INDEX_VERSION = 1
ENCODE_CHUNK = 512  # documents per encode_batch call: bounded memory, still parallel in Rust


@dataclass
class DomainSplits:
    """The documents of one domain's three splits, lazily read (sources resolved, not yet read)."""

    name: str
    spec: DomainConfig
    paths: dict[str, list[Path]]  # split -> sources (for `source` layouts, every split has the same list)
    fingerprint: dict[str, str]


@dataclass
class PreparedData:
    """Token arrays per domain and split, the tokenizer, and the index written to disk."""

    domains: list[str]
    tokenizer: TextTokenizer
    cache_dir: Path
    index: dict
    # A text domain's split is a flat token array; an SFT domain's is SFTExamples, whose len() counts supervised tokens.
    arrays: dict[str, dict[str, np.ndarray | SFTExamples]] = field(default_factory=dict)
    chat: ChatRenderer | None = None  # the renderer SFT domains were encoded with (None when there are none)

    def tokens(self, domain: str, split: str) -> np.ndarray | SFTExamples:
        return self.arrays[domain][split]

    def is_sft(self, domain: str) -> bool:
        return isinstance(self.arrays[domain]["train"], SFTExamples)

    def split_arrays(self, split: str) -> list[np.ndarray]:
        return [self.arrays[d][split] for d in self.domains]

    def token_counts(self, split: str = "train") -> dict[str, int]:
        return {d: int(len(self.arrays[d][split])) for d in self.domains}

    @property
    def trainable(self) -> np.ndarray:
        """Which domains have a train split (in domain order); the others are target-only: never trained on."""
        return np.array([len(self.arrays[d]["train"]) > 0 for d in self.domains], dtype=bool)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def resolve_domains(cfg: Config) -> list[DomainSplits]:
    out = []
    for name, spec in cfg.data.domains.items():
        base = Path(cfg.base_dir)
        if spec.source is not None:
            src = expand_sources(spec.source, base, f"data.domains.{name}.source")
            paths = {s: src for s in SPLITS}
            fp = fingerprint_sources(src, cfg.data.source_hash)
            fps = {s: fp for s in SPLITS}
        else:
            paths, fps = {}, {}
            for s in SPLITS:
                v = getattr(spec, s)
                if v is None:
                    paths[s] = []
                    fps[s] = ""
                else:
                    paths[s] = expand_sources(v, base, f"data.domains.{name}.{s}")
                    fps[s] = fingerprint_sources(paths[s], cfg.data.source_hash)
        out.append(DomainSplits(name, spec, paths, fps))
    return out


def _split_indices(n: int, fractions: dict[str, float], seed: int, domain: str) -> dict[str, np.ndarray]:
    """Seeded split of n documents by index: {split: sorted document indices}."""
    rng = np.random.default_rng([seed, zlib.crc32(domain.encode())])
    perm = rng.permutation(n)
    n_valid = int(round(fractions.get("valid", 0.0) * n))
    n_test = int(round(fractions.get("test", 0.0) * n))
    if fractions.get("valid", 0.0) > 0:
        n_valid = max(n_valid, 1)
    if fractions.get("test", 0.0) > 0:
        n_test = max(n_test, 1)
    if fractions.get("train", 0.0) <= 0:  # a target-only domain: every document goes to valid or test
        n_test = n - n_valid if fractions.get("test", 0.0) > 0 else 0
        n_valid = n - n_test
        if (fractions.get("valid", 0.0) > 0 and n_valid < 1) or (fractions.get("test", 0.0) > 0 and n_test < 1):
            raise InputError(f"data.domains.{domain}.source: {n} document(s) are too few to split into valid/test")
    elif n - n_valid - n_test < 1:
        raise InputError(f"data.domains.{domain}.source: {n} document(s) are too few to split into train/valid/test")
    parts = {"valid": perm[:n_valid], "test": perm[n_valid : n_valid + n_test], "train": perm[n_valid + n_test :]}
    return {s: np.sort(idx) for s, idx in parts.items()}


def _split_of_documents(docs: list[str], fractions: dict[str, float], seed: int, domain: str) -> dict[str, list[str]]:
    """Seeded split by document; each split keeps the documents' original order."""
    return {s: [docs[i] for i in idx] for s, idx in _split_indices(len(docs), fractions, seed, domain).items()}


_COUNTS: dict[tuple, int] = {}  # documents per (sources, their fingerprint, filter): counted once per process


def _stream_split(read, paths, fractions: dict[str, float], seed: int, domain: str, split: str,
                  count_key: tuple | None = None) -> Iterator:
    """The documents of one split of a source, streamed: a first pass counts the documents (once for all three
    splits), a second yields those the seeded split gives `split` (the same documents, in the same order, as
    _split_of_documents), so memory does not grow with the source (a bit per document)."""
    n = _COUNTS.get(count_key) if count_key is not None else None
    if n is None:
        n = sum(1 for _ in read(paths, None))
        if count_key is not None:
            _COUNTS[count_key] = n
    keep = np.zeros(n, dtype=bool)
    keep[_split_indices(n, fractions, seed, domain)[split]] = True
    for i, doc in enumerate(read(paths, None)):
        if i < n and keep[i]:
            yield doc


def _nonempty(docs: Iterator, message: str) -> Iterator:
    """`docs`, raising InputError(message) at the end if there were none."""
    any_ = False
    for d in docs:
        any_ = True
        yield d
    if not any_:
        raise InputError(message)


def _documents(ds: DomainSplits, split: str, cfg: Config) -> Iterator | list | None:
    """A split's documents: for a text domain an iterator of strings (streamed from the sources, so a corpus larger
    than memory goes through), for an SFT domain a list of conversations (lists of messages); None if the split is
    absent."""
    field_name = ds.spec.text_field or cfg.data.text_field
    keep = row_filter(ds.spec.where, f"data.domains.{ds.name}.where")
    if ds.spec.kind == "sft":
        read = lambda paths, sp: (row_messages(row, where) for where, row in read_records(paths, ds.spec.format, sp)  # noqa: E731
                                  if keep(row, where))
    elif ds.spec.where is not None:
        read = lambda paths, sp: (text_of(row, where, field_name) for where, row in read_records(paths, ds.spec.format, sp)  # noqa: E731
                                  if keep(row, where) and text_of(row, where, field_name))
    else:
        read = lambda paths, sp: read_documents(paths, ds.spec.format, field_name, sp)  # noqa: E731
    if ds.spec.where is not None:
        filtered = read

        def read(paths, sp):
            srcs = ", ".join(str(p) for p in paths)
            return _nonempty(filtered(paths, sp), f"data.domains.{ds.name}.where: no row of {srcs} matches "
                                                  f"{ds.spec.where}")
    if ds.spec.source is not None:
        if ds.spec.split.get(split, 0.0) <= 0:
            return None  # a split given no fraction is absent, like an omitted train/valid/test file
        if ds.spec.kind == "sft":
            return _split_of_documents(list(read(ds.paths[split], None)), ds.spec.split, cfg.seed, ds.name)[split]
        key = (tuple(map(str, ds.paths[split])), ds.fingerprint[split], json.dumps(ds.spec.where, sort_keys=True),
               ds.spec.format, field_name)
        return _stream_split(read, ds.paths[split], ds.spec.split, cfg.seed, ds.name, split, key)
    if not ds.paths[split]:
        return None
    docs = read(ds.paths[split], split)
    return list(docs) if ds.spec.kind == "sft" else docs


def _entry_key(ds: DomainSplits, split: str, cfg: Config, tok_fp: str, chat: ChatRenderer | None = None) -> str:
    layout = {"split": ds.spec.split, "seed": cfg.seed} if ds.spec.source is not None else None
    if ds.spec.where is not None:  # which rows of the source belong to this domain
        layout = {**(layout or {}), "where": ds.spec.where}
    if ds.spec.kind == "sft":
        return _hash(INDEX_VERSION, "sft", ds.fingerprint[split], tok_fp, chat.fingerprint, ds.spec.format, layout)
    return _hash(
        INDEX_VERSION,
        ds.fingerprint[split],
        tok_fp,
        ds.spec.text_field or cfg.data.text_field,
        ds.spec.format,
        layout,
        cfg.data.append_eos,
    )


def load_tokenizer(cfg: Config, domains: list[DomainSplits], cache_dir: Path, index: dict, log: Callable[[str], None]) -> TextTokenizer:
    tc = cfg.tokenizer
    if tc.kind == "file":
        return load_tokenizer_file(cfg.resolve(tc.path))
    if tc.kind == "hf":
        return load_hf_tokenizer(cfg.resolve(tc.path))
    # Everything that decides which documents form the train splits, so the tokenizer never depends on cache history.
    train_docs = [
        (d.name, d.fingerprint["train"], d.spec.split, cfg.seed if d.spec.source is not None else None,
         d.spec.text_field or cfg.data.text_field, d.spec.format, *(("sft",) if d.spec.kind == "sft" else ()),
         *((d.spec.where,) if d.spec.where is not None else ()))
        for d in sorted(domains, key=lambda d: d.name)
    ]
    key = _hash("bpe", tc.vocab_size, tc.min_frequency, tc.max_train_chars, train_docs)
    path = cache_dir / "tokenizer.json"
    if index.get("tokenizer", {}).get("key") == key and path.is_file():
        return load_tokenizer_file(path)
    log(f"training a byte-level BPE tokenizer (vocab {tc.vocab_size}) on the train splits")

    def texts():
        # Round-robin over domains so a capped trainer still sees every domain; in the order of their names, so
        # the vocabulary does not depend on where a domain is written in the config.
        iters = [iter(_documents(d, "train", cfg) or []) if d.spec.kind == "text"
                 else (message_text(c) for c in _documents(d, "train", cfg) or [])
                 for d in sorted(domains, key=lambda d: d.name)]
        while iters:
            alive = []
            for it in iters:
                doc = next(it, None)
                if doc is not None:
                    alive.append(it)
                    yield doc
            iters = alive

    tok = train_bpe(sample_texts(texts(), tc.max_train_chars), tc.vocab_size, tc.min_frequency)
    tok.save(path)
    index["tokenizer"] = {"key": key}
    return tok


def _write_tokens(docs, tok: TextTokenizer, path: Path, dtype: np.dtype, append_eos: bool,
                  empty: str = "no text found") -> tuple[int, int]:
    """Tokenize documents (any iterable, consumed ENCODE_CHUNK at a time: memory stays bounded) straight into the
    token file; returns (tokens, documents). No document at all is an InputError(`empty`) and writes nothing."""
    import itertools

    n = docs_n = 0
    it = iter(docs)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            while chunk := list(itertools.islice(it, ENCODE_CHUNK)):
                docs_n += len(chunk)
                for ids in tok.encode_batch(chunk):
                    if append_eos:
                        ids.append(tok.eos_id)
                    arr = np.asarray(ids, dtype=dtype)
                    f.write(arr.tobytes())
                    n += len(arr)
            if docs_n == 0:
                raise InputError(empty)
            f.flush()
            os.fsync(f.fileno())
    return n, docs_n


def _write_sft(convs: list, chat: ChatRenderer, paths: dict[str, Path], dtype: np.dtype) -> int:
    """Tokens, response mask (uint8) and example offsets (int64, one more than examples); returns the token count."""
    offsets = [0]
    with atomic_path(paths["tokens"]) as tmp_t, atomic_path(paths["mask"]) as tmp_m:
        with open(tmp_t, "wb") as ft, open(tmp_m, "wb") as fm:
            for i in range(0, len(convs), ENCODE_CHUNK):
                for ids, mask in chat.encode(convs[i : i + ENCODE_CHUNK]):
                    ft.write(np.asarray(ids, dtype=dtype).tobytes())
                    fm.write(mask.tobytes())
                    offsets.append(offsets[-1] + len(ids))
            for f in (ft, fm):
                f.flush()
                os.fsync(f.fileno())
        with atomic_path(paths["offsets"]) as tmp_o:
            np.asarray(offsets, dtype=np.int64).tofile(tmp_o)
    return offsets[-1]


def _sft_paths(cache_dir: Path, rel: str) -> dict[str, Path]:
    stem = rel.removesuffix(".bin")
    return {"tokens": cache_dir / rel, "mask": cache_dir / f"{stem}.mask.bin", "offsets": cache_dir / f"{stem}.offsets.bin"}


def _open_sft(cache_dir: Path, e: dict, dtype: np.dtype, pad_id: int) -> SFTExamples:
    paths = _sft_paths(cache_dir, e["file"])
    n, m = e["tokens"], e["documents"]
    return SFTExamples(np.memmap(paths["tokens"], dtype=dtype, mode="r", shape=(n,)),
                       np.memmap(paths["mask"], dtype=np.uint8, mode="r", shape=(n,)),
                       np.fromfile(paths["offsets"], dtype=np.int64, count=m + 1), pad_id)


def _sft_fresh(cache_dir: Path, e: dict, dtype: np.dtype) -> bool:
    if e.get("file") is None:
        return True
    paths = _sft_paths(cache_dir, e["file"])
    sizes = {"tokens": e["tokens"] * dtype.itemsize, "mask": e["tokens"], "offsets": (e["documents"] + 1) * 8}
    return all(paths[k].is_file() and paths[k].stat().st_size == v for k, v in sizes.items())


def prepare_data(cfg: Config, log: Callable[[str], None] = lambda s: None, progress: bool = False) -> PreparedData:
    """Tokenize every domain and split (reusing the cache where nothing changed) and open them as memmaps."""
    cache_dir = cfg.resolve(cfg.data.cache_dir)
    from tandem.io import refuse_targets

    refuse_targets(_cache_files(cfg, cache_dir), cfg.input_paths(), "data.cache_dir")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"data.cache_dir: cannot create {cache_dir} ({err.strerror or err})") from None
    # One process at a time fills a cache (two writing the same shards and index would corrupt it); a second one
    # waits for the first and then finds its work done.
    import fcntl

    with open(cache_dir / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log(f"waiting for another process preparing {cache_dir}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare_locked(cfg, cache_dir, log, progress)


def _cache_files(cfg: Config, cache_dir: Path) -> list[Path]:
    """Every file the cache writes (the scratch files beside them get random names)."""
    out = [cache_dir / n for n in ("index.json", "tokenizer.json", "domain_values.json", ".lock")]
    for name in cfg.data.domains:
        for split in ("train", "valid", "test"):
            out += list(_sft_paths(cache_dir, f"{name}/{split}.bin").values())
    return out


def _read_index(index_path: Path, log: Callable[[str], None]) -> dict:
    """The cache's index; an unreadable or older one is started afresh (its entries are rebuilt as needed)."""
    index: dict = {}
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            log(f"{index_path}: unreadable cache index, rebuilding")
            index = {}
    return index if index.get("version") == INDEX_VERSION else {"version": INDEX_VERSION}


def _prepare_locked(cfg: Config, cache_dir: Path, log: Callable[[str], None], progress: bool) -> PreparedData:
    # Scratch files of writes a killed process never finished (tandem.io.atomic_path names them `.NAME.*.tmp`):
    # this process holds the cache's lock, so no other writer owns them.
    for name in cfg.data.domains:
        folder = cache_dir / name
        for tmp in (folder.glob(".*.tmp") if folder.is_dir() else []):
            tmp.unlink(missing_ok=True)
    for tmp in cache_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    index_path = cache_dir / "index.json"
    index = _read_index(index_path, log)
    domains = resolve_domains(cfg)
    tok = load_tokenizer(cfg, domains, cache_dir, index, log)
    dtype = np.dtype(np.uint16 if tok.vocab_size <= 65536 else np.uint32)
    index["tokenizer"] = {**index.get("tokenizer", {}), "fingerprint": tok.fingerprint, "vocab_size": tok.vocab_size,
                          "eos_id": tok.eos_id}
    index["dtype"] = dtype.name
    entries = index.setdefault("entries", {})
    chat = None
    if any(d.spec.kind == "sft" for d in domains):
        chat = ChatRenderer(tok, resolve_template(cfg.data.chat_template, tok, cfg.base_dir))
    todo = [(d, s) for d in domains for s in SPLITS]
    from tandem.progress import bar as progress_bar

    bar = progress_bar(total=len(todo), desc="prepare", unit="split", progress=progress, leave=False)
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for ds, split in todo:
        name = f"{ds.name}/{split}"
        e = _split_entry(cfg, ds, split, cache_dir, entries.get(name), tok, dtype, chat, log)
        if e is not entries.get(name):
            entries[name] = e
            write_json(index_path, index)  # after every shard, so an interrupted prepare keeps its finished work
        arrays.setdefault(ds.name, {})[split] = _open_split(cache_dir, e, ds.spec.kind == "sft", dtype, tok.eos_id)
        bar.update(1)
    bar.close()
    write_json(index_path, index)
    return PreparedData(domains=[d.name for d in domains], tokenizer=tok, cache_dir=cache_dir, index=index, arrays=arrays,
                        chat=chat)


def _split_entry(cfg: Config, ds: DomainSplits, split: str, cache_dir: Path, e: dict | None, tok: TextTokenizer,
                 dtype: np.dtype, chat: ChatRenderer | None, log) -> dict:
    """The index entry of one domain's split: the cached one while its sources, tokenizer and template are
    unchanged and its files complete, otherwise a new one written by tokenizing the split."""
    name, sft = f"{ds.name}/{split}", ds.spec.kind == "sft"
    key = _entry_key(ds, split, cfg, tok.fingerprint, chat)
    rel = f"{ds.name}/{split}.bin"
    path = cache_dir / rel
    fresh = e is not None and e.get("key") == key and e.get("dtype") == dtype.name and (
        _sft_fresh(cache_dir, e, dtype) if sft
        else (path.is_file() and path.stat().st_size == e["tokens"] * dtype.itemsize)
    )
    if fresh:
        return e
    docs = _documents(ds, split, cfg)
    if docs is None:
        return {"key": key, "file": None, "tokens": 0, "documents": 0, "dtype": dtype.name}
    srcs = ", ".join(str(p) for p in ds.paths[split])
    empty = f"data.domains.{ds.name}.{split}: no text found in {srcs}"
    if sft:
        if not docs:
            raise InputError(empty)
        log(f"tokenizing {name} ({len(docs)} examples)")
        n, n_docs = _write_sft(docs, chat, _sft_paths(cache_dir, rel), dtype), len(docs)
    else:
        log(f"tokenizing {name}")
        n, n_docs = _write_tokens(docs, tok, path, dtype, cfg.data.append_eos, empty)
    e = {"key": key, "file": rel, "tokens": n, "documents": n_docs, "dtype": dtype.name,
         "sources": [str(p) for p in ds.paths[split]]}
    if sft:
        e["kind"] = "sft"
    return e


def _open_split(cache_dir: Path, e: dict, sft: bool, dtype: np.dtype, pad_id: int):
    """A cached split: SFTExamples for an SFT domain, a read-only memory map of tokens for text."""
    if sft:
        arr = (_open_sft(cache_dir, e, dtype, pad_id) if e["file"] is not None
               else SFTExamples(np.zeros(0, dtype), np.zeros(0, np.uint8), np.zeros(1, np.int64), pad_id))
        if "supervised" not in e:
            e["supervised"] = len(arr)
        return arr
    if e["file"] is None or e["tokens"] == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(cache_dir / e["file"], dtype=dtype, mode="r", shape=(e["tokens"],))


def natural_weights(data: PreparedData) -> dict[str, float]:
    """Token-proportional mixture of the train splits (0 for a target-only domain)."""
    counts = data.token_counts("train")
    total = sum(counts.values())
    return {d: c / total for d, c in counts.items()}


def check_trainable(weights, data: PreparedData, label: str = "weights") -> None:
    """A mixture to train on (an array in domain order) must give 0 to the domains without a train split."""
    for d, w, t in zip(data.domains, weights, data.trainable):
        if w > 0 and not t:
            raise InputError(f"{label}: domain {d} has weight {float(w):.6g} but no train split (a target-only "
                             f"domain: only evaluated); give it weight 0")


def format_table(data: PreparedData) -> str:
    """Tokens (and documents) per domain and split, as a plain-text table."""
    rows = [("domain", "train", "valid", "test", "docs(train)", "share")]
    nat = natural_weights(data)
    entries = data.index["entries"]
    for d in data.domains:
        rows.append(
            (d, *(f"{len(data.arrays[d][s]):,}" for s in SPLITS), f"{entries[f'{d}/train']['documents']:,}", f"{nat[d]:.3f}")
        )
    tot = [sum(len(data.arrays[d][s]) for d in data.domains) for s in SPLITS]
    rows.append(("total", *(f"{t:,}" for t in tot), "", "1.000"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
