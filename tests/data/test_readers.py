"""Readers: jsonl, txt, parquet and `datasets` folders; source expansion; fingerprints; errors naming file/line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tandem.data.readers import detect_format, expand_sources, fingerprint_sources, read_documents
from tandem.errors import InputError

DOCS = ["first document\nwith two lines", "second — unicode ✓", "third"]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path, field: str = "text", fmt: str = "auto", split=None) -> list[str]:
    return list(read_documents([path], fmt, field, split))


def _err(path: Path, **kw) -> str:
    with pytest.raises(InputError) as ei:
        _read(path, **kw)
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_jsonl(tmp_path):
    p = _jsonl(tmp_path / "a.jsonl", [{"text": d, "id": i} for i, d in enumerate(DOCS)])
    assert _read(p) == DOCS
    # Blank lines and empty texts are skipped; other fields are ignored; a custom field works.
    q = _jsonl(tmp_path / "b.jsonl", [{"body": "x", "text": 1}, "", {"body": ""}, {"body": "y"}])
    assert _read(q, field="body") == ["x", "y"]
    g = tmp_path / "c.jsonl.gz"
    with gzip.open(g, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    assert _read(g) == DOCS


@pytest.mark.parametrize(
    "rows, needle",
    [
        ([{"text": "ok"}, '{"text": "broken"'], ":2: invalid JSON"),
        ([{"text": "ok"}, {"text": "ok"}, "[1, 2]"], ":3: expected a JSON object"),
        ([{"text": "ok"}, {"body": "no text"}], ":2: missing field 'text'"),
        ([{"text": ["a"]}], ":1: field 'text' must be a string, got list"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, rows, needle):
    assert needle in _err(_jsonl(tmp_path / "bad.jsonl", rows))


def test_jsonl_not_utf8(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "\xff\xfe"}\n')
    assert "not UTF-8" in _err(p)


def test_txt(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("one whole file\n\nis one document\n", encoding="utf-8")
    assert _read(p) == ["one whole file\n\nis one document\n"]
    (tmp_path / "blank.md").write_text("  \n\n")
    assert _read(tmp_path / "blank.md") == []
    b = tmp_path / "bin.txt"
    b.write_bytes(bytes(range(256)) * 4)
    assert "binary file" in _err(b)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    assert "not UTF-8" in _err(latin)
    assert "bin.txt: binary file" in _err(tmp_path, fmt="txt")  # a folder reads every file in it


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"content": DOCS + [None, ""], "n": list(range(5))}), p, row_group_size=2)
    assert _read(p, field="content") == DOCS
    assert "no column 'text'" in _err(p)
    ints = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), ints)
    assert "must hold strings" in _err(ints)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    assert "parquet" in _err(broken)
    junk = tmp_path / "junk.parquet"
    junk.write_text("this is not parquet")
    assert "not a readable parquet file" in _err(junk)


def test_hf_datasets_folder(tmp_path):
    import datasets

    datasets.disable_progress_bars()
    d = tmp_path / "ds"
    datasets.Dataset.from_dict({"text": DOCS, "x": [1, 2, 3]}).save_to_disk(str(d))
    assert detect_format(d) == "hf"
    assert _read(d) == DOCS
    assert "no column 'body'" in _err(d, field="body")
    dd = tmp_path / "dd"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": DOCS}), "test": datasets.Dataset.from_dict({"text": ["t"]})}
    ).save_to_disk(str(dd))
    assert _read(dd, split="test") == ["t"]
    assert _read(dd, split="train") == DOCS
    assert "none for the domain's 'valid' split" in _err(dd, split="valid")
    # the standard `validation` split is a domain's valid split
    dv = tmp_path / "dv"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": DOCS}),
                          "validation": datasets.Dataset.from_dict({"text": ["v"]})}).save_to_disk(str(dv))
    assert _read(dv, split="valid") == ["v"] and _read(dv, split="train") == DOCS
    # a folder that is not a datasets folder is a folder of text files, one document each, in sorted order
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / "b.txt").write_text("second")
    (plain / "a.txt").write_text("first")
    (plain / "sub" / "c.md").write_text("third")
    (plain / ".hidden").write_text("never")
    assert detect_format(plain) == "txt"
    assert _read(plain) == ["first", "second", "third"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty folder" in _err(empty)
    # a folder of shards is read shard by shard in each one's format; hidden folders (.git, checkpoints) are skipped
    import pyarrow as pa

    shards = tmp_path / "shards"
    (shards / ".git").mkdir(parents=True)
    (shards / ".git" / "x.jsonl").write_text(json.dumps({"text": "never"}) + "\n")
    _jsonl(shards / "00.jsonl", [{"text": DOCS[0]}])
    with pa.output_stream(str(shards / "01.jsonl.zst"), compression="zstd") as out:
        out.write((json.dumps({"text": DOCS[1]}) + "\n").encode())
    with gzip.open(shards / "02.json.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": DOCS[2]}) + "\n")
    assert _read(shards) == DOCS
    # a DatasetDict holding only `train` is never taken for a domain's valid or test split
    lone = tmp_path / "lone"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": DOCS})}).save_to_disk(str(lone))
    assert _read(lone, split="train") == DOCS
    assert "none for the domain's 'valid' split" in _err(lone, split="valid")


def test_json_arrays_and_zstd_archives(tmp_path):
    import pyarrow as pa

    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"text": d} for d in DOCS]), encoding="utf-8")
    assert _read(arr) == DOCS
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps([{"text": "x"}, 3]))
    assert "item 2 of the JSON array" in _err(bad)
    # .jsonl.zst, as SlimPajama and The Pile ship, and .json.gz without a format hint
    z = tmp_path / "c.jsonl.zst"
    with pa.output_stream(str(z), compression="zstd") as out:
        out.write("".join(json.dumps({"text": d}) + "\n" for d in DOCS).encode())
    assert detect_format(z) == "jsonl" and _read(z) == DOCS
    g = tmp_path / "d.json.gz"
    with gzip.open(g, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    assert detect_format(g) == "jsonl" and _read(g) == DOCS
    t = tmp_path / "e.txt.zst"
    with pa.output_stream(str(t), compression="zstd") as out:
        out.write("plain text".encode())
    assert _read(t) == ["plain text"]
    broken = tmp_path / "f.jsonl.zst"
    broken.write_bytes(b"not zstd at all")
    _err(broken)


def test_detect_format(tmp_path):
    assert detect_format(Path("a.jsonl")) == "jsonl"
    assert detect_format(Path("a.JSON")) == "jsonl"
    assert detect_format(Path("a.jsonl.gz")) == "jsonl"
    assert detect_format(Path("a.parquet")) == "parquet"
    assert detect_format(Path("a.md")) == "txt"
    assert detect_format(Path("a.jsonl"), "txt") == "txt"


def test_expand_sources(tmp_path):
    for n in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / n).write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jsonl").write_text("{}")
    got = expand_sources(["*.jsonl", "a.jsonl", "**/*.jsonl"], tmp_path, "lbl")
    assert got == [tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "sub" / "d.jsonl"]  # sorted, de-duplicated
    assert expand_sources(str(tmp_path / "c.txt"), Path("/elsewhere"), "lbl") == [tmp_path / "c.txt"]
    with pytest.raises(InputError, match=r"lbl: file not found: .*nope.jsonl"):
        expand_sources("nope.jsonl", tmp_path, "lbl")
    with pytest.raises(InputError, match=r"lbl: no files match"):
        expand_sources("*.parquet", tmp_path, "lbl")
    with pytest.raises(InputError, match="empty list"):
        expand_sources([], tmp_path, "lbl")


def test_fingerprint_changes_with_content_only(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    fp = fingerprint_sources([a])
    assert fingerprint_sources([a]) == fp
    a.write_text(a.read_text())  # rewritten, same bytes
    assert fingerprint_sources([a]) == fp
    _jsonl(a, [{"text": "y"}])
    assert fingerprint_sources([a]) != fp


def test_a_file_under_the_sampling_size_is_hashed_whole(tmp_path):
    """The default check cannot miss an edit of the same size and modification time in a file under 64 MiB."""
    import os

    f = tmp_path / "mid.jsonl"
    raw = bytearray(b"x" * (2 << 20))
    f.write_bytes(bytes(raw))
    st = os.stat(f)
    fp = fingerprint_sources([f])
    raw[(1 << 20) + 12345] = ord("y")  # between any two sampled chunks
    f.write_bytes(bytes(raw))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(f).st_size == st.st_size and fingerprint_sources([f]) != fp


def test_sampled_fingerprint_of_large_files_and_the_full_option(tmp_path, monkeypatch):
    import os

    from tandem.data import readers

    monkeypatch.setattr(readers, "FULL_BELOW", 1 << 20)  # sampling starts at 64 MiB; a smaller file shows it here
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * (3 << 20))
    st = os.stat(big)
    fp = fingerprint_sources([big])
    assert fingerprint_sources([big], "full") != fp  # the mode is part of the key
    # an edit inside a sampled chunk (here the first) changes it, as does a new modification time
    raw = bytearray(big.read_bytes())
    raw[10] = ord("y")
    big.write_bytes(bytes(raw))
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_sources([big]) != fp
    raw[10] = ord("x")
    big.write_bytes(bytes(raw))
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert fingerprint_sources([big]) != fp
    # an edit between the sampled chunks with size and time restored is what only `full` sees
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_sources([big]) == fp
    full = fingerprint_sources([big], "full")
    between = readers.SAMPLE_BYTES + 10  # after the first chunk, before the second
    raw[between] = ord("z")
    big.write_bytes(bytes(raw))
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_sources([big]) == fp
    assert fingerprint_sources([big], "full") != full


def test_csv_and_tsv(tmp_path):
    import csv

    rows = [{"id": "1", "body": "first, with a comma"}, {"id": "2", "body": 'a "quoted"\nline break'},
            {"id": "3", "body": ""}]  # an empty text is skipped, as in jsonl
    plain = tmp_path / "a.csv"
    with open(plain, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "body"])
        w.writeheader()
        w.writerows(rows)
    packed = tmp_path / "a.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    tsv = tmp_path / "a.tsv"
    tsv.write_text("body\tid\nfirst, with a comma\t1\n", encoding="utf-8")
    assert detect_format(packed) == "csv" and detect_format(tsv) == "csv"
    assert _read(plain, "body") == _read(packed, "body") == ["first, with a comma", 'a "quoted"\nline break']
    assert _read(tsv, "body") == ["first, with a comma"]
    assert "a.csv:2: missing field 'text'" in _err(plain)
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nok\n\"one\",\"two\"\n", encoding="utf-8")
    msg = _err(bad)
    assert "bad.csv:3" in msg and "more fields than the header" in msg, msg
