"""Read documents from jsonl, csv, plain text, parquet files and Hugging Face `datasets` folders.

Every reader yields one string per document and raises InputError naming the file
(and the line, for jsonl) when the input is not what was expected.
"""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path
from typing import Iterator

from tandem.errors import InputError

FORMATS = ("jsonl", "csv", "txt", "parquet", "hf")


def expand_sources(spec: str | list[str], base_dir: Path, label: str) -> list[Path]:
    """Files, folders or globs (relative to base_dir) -> sorted, de-duplicated paths; every pattern must match."""
    patterns = [spec] if isinstance(spec, str) else list(spec)
    if not patterns:
        raise InputError(f"{label}: empty list of sources")
    out: list[Path] = []
    for pat in patterns:
        p = Path(pat).expanduser()
        full = p if p.is_absolute() else base_dir / p
        if any(ch in pat for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(full), recursive=True))
            matches = [m for m in matches if m.is_file() or (m / "dataset_info.json").is_file()]
            if not matches:
                raise InputError(f"{label}: no files match {full}")
            out.extend(matches)
        else:
            if not full.exists():
                raise InputError(f"{label}: file not found: {full}")
            _regular_or_folder(full, label)
            out.append(full)
    seen, unique = set(), []
    for m in out:
        if m not in seen:
            seen.add(m)
            unique.append(m)
    return unique


def _regular_or_folder(path: Path, label: str) -> None:
    """Refuse a pipe, socket or device up front: reading one blocks or never ends."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise InputError(f"{label}: {path}: cannot read ({err.strerror or err})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"{label}: {path}: expected a file or a folder, got a pipe, socket or device")


def _unicode(text: str, where: str) -> str:
    """Text that is valid Unicode: JSON can spell a lone surrogate (\\ud800) that no UTF-8 encoder accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(f"{where}: text holds {err.object[err.start:err.end].encode('unicode_escape').decode()} "
                         f"(a lone surrogate); expected valid Unicode text") from None
    return text


COMPRESSED = (".gz", ".zst", ".zstd")


def _plain_name(path: Path) -> str:
    """The file name without a compression suffix, lower case."""
    name = path.name.lower()
    for ext in COMPRESSED:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def is_datasets_folder(path: Path) -> bool:
    """A `datasets` save_to_disk folder (a Dataset or a DatasetDict), as opposed to a folder of text files."""
    return any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json"))


def folder_files(path: Path) -> list[Path]:
    """The files of a (non-datasets) folder, recursively, in sorted order; hidden files and folders left out."""
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise InputError(f"{path}: empty folder; expected data files or a datasets save_to_disk folder")
    return files


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    if path.is_dir():
        return "hf" if is_datasets_folder(path) else "txt"
    name = _plain_name(path)
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return "txt"


def _open_text(path: Path):
    """A text stream of a file, decompressed by its suffix (.gz, .zst as SlimPajama and The Pile ship)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8-sig")
    if name.endswith((".zst", ".zstd")):
        import io

        import pyarrow as pa

        return io.TextIOWrapper(pa.input_stream(str(path), compression="zstd"), encoding="utf-8-sig")
    # utf-8-sig: a leading byte-order mark (as Excel and some editors write) is not part of the first field.
    return open(path, "r", encoding="utf-8-sig")


def read_jsonl(path: Path, field: str) -> Iterator[str]:
    for where, row in _jsonl_records(path):
        if field not in row:
            raise InputError(f"{where}: missing field '{field}'")
        text = row[field]
        if not isinstance(text, str):
            raise InputError(f"{where}: field '{field}' must be a string, got {type(text).__name__}")
        if text:
            yield _unicode(text, where)


def read_txt(path: Path) -> Iterator[str]:
    """A plain-text file is one document (a folder of them is read file by file: _read_documents)."""
    try:
        if path.name.lower().endswith(COMPRESSED):
            with _open_text(path) as fh:
                raw = fh.read().encode("utf-8")
        else:
            raw = path.read_bytes()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    nul = raw.find(b"\x00")
    if nul >= 0:  # anywhere: a text file with a binary tail is not text
        raise InputError(f"{path}: binary file (a NUL byte at offset {nul:,}); expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if text.strip():
        yield text


def _string_column(values, path: Path, field: str) -> Iterator[str]:
    """Non-empty strings of a column; nulls skipped, any other type is an input error."""
    for text in values:
        if text is None:
            continue
        if not isinstance(text, str):
            raise InputError(f"{path}: column '{field}' must hold strings, got {type(text).__name__}")
        if text:
            yield _unicode(text, str(path))


def read_parquet(path: Path, field: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None
    if field not in pf.schema_arrow.names:
        raise InputError(f"{path}: no column '{field}' (columns: {', '.join(pf.schema_arrow.names)})")
    try:
        for batch in pf.iter_batches(columns=[field], batch_size=4096):
            yield from _string_column(batch.column(0).to_pylist(), path, field)
    except pa.ArrowException as err:
        raise InputError(f"{path}: broken parquet file ({str(err).splitlines()[0]})") from None


def _load_hf_split(path: Path, split: str | None):
    """A `datasets` save_to_disk folder; a DatasetDict gives the named split (or its only one)."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise InputError(f"{path}: not a datasets save_to_disk folder ({str(err).splitlines()[0]})") from None
    if isinstance(ds, datasets.DatasetDict):
        aliases = {"valid": ("valid", "validation", "dev"), "test": ("test",), "train": ("train",)}
        names = [n for n in aliases.get(split or "", (split,)) if n in ds]
        if names:
            ds = ds[names[0]]
        elif len(ds) == 1 and split in (None, "train"):  # a lone split is the training data, never valid or test
            ds = next(iter(ds.values()))
        else:
            wanted = f"none for the domain's {split!r} split" if split else "no split named for this source"
            raise InputError(f"{path}: a DatasetDict with splits {list(ds)} and {wanted} (train, "
                             f"valid/validation/dev, test); point at one split's folder")
    return ds


def read_hf_folder(path: Path, field: str, split: str | None) -> Iterator[str]:
    ds = _load_hf_split(path, split)
    if field not in ds.column_names:
        raise InputError(f"{path}: no column '{field}' (columns: {', '.join(ds.column_names)})")
    yield from _string_column(ds[field], path, field)


def _guarded(path: Path, items: Iterator) -> Iterator:
    """Turn any failure to read or decode a source (a truncated or corrupt archive, bytes that are not UTF-8, a
    file that vanished) into one InputError naming the file, whatever the reader."""
    import zlib

    try:
        yield from items
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a binary file?)") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply to read") from None
    except (EOFError, zlib.error, OSError, ValueError) as err:
        detail = (getattr(err, "strerror", None) or str(err) or type(err).__name__).splitlines()[0]
        raise InputError(f"{path}: cannot be read ({detail})") from None


def _lookup(row: dict, dotted: str):
    """row["a"]["b"] for "a.b"; a key that itself holds a dot is found first. Raises KeyError if absent."""
    if dotted in row:
        return row[dotted]
    head, _, rest = dotted.partition(".")
    if not rest or not isinstance(row.get(head), dict):
        raise KeyError(dotted)
    return _lookup(row[head], rest)


def row_filter(where: dict | None, label: str):
    """A predicate keep(row, where_in_file) for a domain's `where`: every field equals its value or is in its list
    (a row without the field does not match)."""
    if not where:
        return lambda row, at: True

    def keep(row: dict, at: str) -> bool:
        for field, want in where.items():
            try:
                got = _lookup(row, field)
            except KeyError:  # rows without the field belong to no domain cut by it (sources mix row shapes)
                return False
            if not (any(_same(got, w) for w in want) if isinstance(want, list) else _same(got, want)):
                return False
        return True

    return keep


def _same(got, want) -> bool:
    """Equal and of the same JSON type: Python's `True == 1 == 1.0` would let `where: {id: 1}` keep rows whose id
    is true or 1.0."""
    return type(got) is type(want) and got == want


def _scan_values_of(rows, field: str) -> set:
    """The distinct values of a (dotted) field over (where, row) pairs; rows without it or with null skipped."""
    values = set()
    for at, row in rows:
        try:
            v = _lookup(row, field)
        except KeyError:
            continue
        if v is None:
            continue
        if isinstance(v, (dict, list)):
            raise InputError(f"{at}: field '{field}' holds a {type(v).__name__}; domain_field needs a string (or "
                             f"number) naming the row's domain")
        values.add(v)
    return values


def field_values(spec, base_dir: str, data, label: str, check=lambda found: None) -> dict:
    """{value: the splits it occurs in} of a group's `domain_field` (tandem.config.expand_groups), from one pass
    over its sources; remembered in the cache folder by the sources' fingerprint, so the next load of the config
    does not read a large corpus again. `check(found)` raises on values that cannot be domains, before anything is
    remembered."""
    from tandem.io import write_json

    base = Path(base_dir)
    layout = {None: spec.source} if spec.source is not None else {s: getattr(spec, s) for s in ("train", "valid", "test")
                                                                  if getattr(spec, s) is not None}
    paths = {s: expand_sources(v, base, f"{label}.{s or 'source'}") for s, v in layout.items()}
    key = hashlib.sha256(json.dumps([spec.domain_field, spec.format, spec.where, sorted(
        (str(s), fingerprint_sources(p, data.source_hash)) for s, p in paths.items())]).encode()).hexdigest()[:32]
    cache_dir = Path(data.cache_dir).expanduser()
    memo = (cache_dir if cache_dir.is_absolute() else base / cache_dir) / "domain_values.json"
    from tandem.io import refuse_targets

    refuse_targets([memo], [x for p in paths.values() for x in p], "data.cache_dir")
    try:
        known = json.loads(memo.read_text(encoding="utf-8")) if memo.is_file() else {}
    except (OSError, ValueError):
        known = {}  # an unreadable memo is only a cache: scan again
    if isinstance(known.get(key), list):
        return {v: splits for v, splits in known[key]}
    keep = row_filter(spec.where, f"{label}.where")
    found: dict = {}
    for split, p in paths.items():
        rows = ((at, row) for at, row in read_records(p, spec.format, split) if keep(row, at))
        for v in _scan_values_of(rows, spec.domain_field):
            found.setdefault(v, []).append(split or "all")
    if not found:
        srcs = ", ".join(str(x) for p in paths.values() for x in p)
        raise InputError(f"{label}.domain_field: no row of {srcs} has the field '{spec.domain_field}'"
                         + (f" among those matching {spec.where}" if spec.where else ""))
    order = sorted(found, key=str)
    check(order)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_json(memo, {**known, key: [[v, found[v]] for v in order]})
    except OSError:
        pass  # an unwritable cache folder only costs the next load a scan
    return {v: found[v] for v in order}


def text_of(row: dict, at: str, field: str) -> str:
    """The text of a structured row (empty strings and nulls give '')."""
    try:
        text = _lookup(row, field)
    except KeyError:
        raise InputError(f"{at}: missing field '{field}'") from None
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InputError(f"{at}: field '{field}' must be a string, got {type(text).__name__}")
    return _unicode(text, at)


def read_documents(paths: list[Path], fmt: str, field: str, split: str | None = None) -> Iterator[str]:
    """All documents of the given sources, in order."""
    for path in paths:
        yield from _guarded(path, _read_documents(path, fmt, field, split))


def _shard_folder(path: Path, fmt: str) -> bool:
    """A folder read file by file (shards or text files), as opposed to a `datasets` save_to_disk folder."""
    return path.is_dir() and fmt != "hf" and not is_datasets_folder(path)


def _read_documents(path: Path, fmt: str, field: str, split: str | None) -> Iterator[str]:
    if _shard_folder(path, fmt):  # each file by its own format (or the forced one)
        for f in folder_files(path):
            yield from _read_documents(f, fmt, field, split)
        return
    kind = detect_format(path, fmt)
    if kind == "jsonl":
        yield from read_jsonl(path, field)
    elif kind == "csv":
        for where, row in _csv_records(path):
            if text := text_of(row, where, field):
                yield text
    elif kind == "parquet":
        yield from read_parquet(path, field)
    elif kind == "hf":
        yield from read_hf_folder(path, field, split)
    else:
        yield from read_txt(path)


def _json_array_records(path: Path) -> Iterator[tuple[str, dict]]:
    """A `.json` file holding one JSON array of objects (how many exports write a dataset)."""
    try:
        with _open_text(path) as f:
            rows = json.load(f)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a JSON array of objects or one JSON object per line")
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InputError(f"{path}: item {n} of the JSON array: expected an object, got {type(row).__name__}")
        yield f"{path} item {n}", row


def _starts_with_array(path: Path) -> bool:
    with _open_text(path) as f:
        while True:
            ch = f.read(1)
            if not ch or not ch.isspace():
                return ch == "["


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        if _plain_name(path).endswith(".json") and _starts_with_array(path):
            yield from _json_array_records(path)
            return
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
                except RecursionError:
                    raise InputError(f"{path}:{lineno}: JSON nested too deeply") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{lineno}: expected a JSON object per line")
                yield f"{path}:{lineno}", row
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a binary file?)") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None


def _csv_records(path: Path) -> Iterator[tuple[str, dict]]:
    """Rows of a csv (or tab-separated .tsv) file with a header line; quoted fields may span lines."""
    import csv

    # A document is one field: lift the csv module's 128 KiB default field limit (the file's own size bounds it).
    csv.field_size_limit(max(csv.field_size_limit(), (1 << 31) - 1))
    with _open_text(path) as f:
        delimiter = "\t" if _plain_name(path).endswith(".tsv") else ","
        reader = csv.DictReader(f, delimiter=delimiter)
        if reader.fieldnames is None:
            raise InputError(f"{path}: empty csv file; expected a header line naming the columns")
        try:
            for row in reader:
                if None in row:  # more fields than the header names
                    raise InputError(f"{path}:{reader.line_num}: more fields than the header's "
                                     f"{len(reader.fieldnames)} ({', '.join(reader.fieldnames)})")
                yield f"{path}:{reader.line_num}", row
        except csv.Error as err:
            raise InputError(f"{path}:{reader.line_num}: invalid csv ({err})") from None


def _parquet_records(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        n = 0
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                n += 1
                yield f"{path} row {n}", row
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None


def _hf_records(path: Path, split: str | None) -> Iterator[tuple[str, dict]]:
    for n, row in enumerate(_load_hf_split(path, split), 1):
        yield f"{path} row {n}", row


def read_records(paths: list[Path], fmt: str, split: str | None = None) -> Iterator[tuple[str, dict]]:
    """All rows of structured sources (jsonl, parquet, datasets folders) as (where, row); `where` names file and line."""
    for path in paths:
        yield from _guarded(path, _read_records(path, fmt, split))


def _read_records(path: Path, fmt: str, split: str | None) -> Iterator[tuple[str, dict]]:
    if _shard_folder(path, fmt):
        for f in folder_files(path):
            yield from _read_records(f, fmt, split)
        return
    kind = detect_format(path, fmt)
    if kind == "jsonl":
        yield from _jsonl_records(path)
    elif kind == "csv":
        yield from _csv_records(path)
    elif kind == "parquet":
        yield from _parquet_records(path)
    elif kind == "hf":
        yield from _hf_records(path, split)
    else:
        raise InputError(f"{path}: SFT rows, and rows selected with `where` or `domain_field`, must be jsonl, "
                         f"csv, parquet or a datasets folder, not plain text")


SAMPLE_CHUNKS = 16  # chunks of SAMPLE_BYTES hashed per large file by the default (sampled) fingerprint
SAMPLE_BYTES = 1 << 16
# Files smaller than this are always hashed whole, so no edit of one can go unseen, whatever its size and time: at
# about 1 s per GB, a file under 64 MiB costs under a tenth of a second. Only larger files (shards of a corpus far
# larger than memory) are sampled, where hashing every byte on every load would cost minutes.
FULL_BELOW = 64 << 20


def _hash_file(h, f: Path, mode: str) -> None:
    """Feed one file into the hash: name and size always; then every byte (mode `full`, or a small file), or its
    modification time and SAMPLE_CHUNKS evenly spaced chunks, first and last included (mode `sampled`): a corpus of
    many GB is checked in milliseconds, and any edit that keeps size, time and every sampled chunk is vanishingly
    rare (`data.source_hash: full` rules it out)."""
    try:
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0".encode())
        with open(f, "rb") as fh:
            if mode == "full" or st.st_size < FULL_BELOW:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
                return
            h.update(str(st.st_mtime_ns).encode())
            last = st.st_size - SAMPLE_BYTES
            for k in range(SAMPLE_CHUNKS):
                fh.seek(last * k // (SAMPLE_CHUNKS - 1))
                h.update(fh.read(SAMPLE_BYTES))
    except OSError as err:
        raise InputError(f"{f}: cannot read ({err.strerror or err})") from None


def fingerprint_sources(paths: list[Path], mode: str = "sampled") -> str:
    """Hash of the sources that decides whether the token cache is still valid: file names and sizes, and their
    bytes (mode `full`) or, by default, their modification times and sampled chunks (see _hash_file)."""
    if mode not in ("sampled", "full"):
        raise ValueError(f"unknown fingerprint mode {mode!r}")
    h = hashlib.sha256()
    h.update(mode.encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            _hash_file(h, f, mode)
    return h.hexdigest()
