"""Token cache: reuse, targeted rebuilds, `source` splits, every input format, token contents."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import _code_docs, _docstrings, write_jsonl
from tandem.config import load_config
from tandem.data.cache import _split_of_documents, format_table, natural_weights, prepare_data
from tandem.errors import InputError

SPLITS = ("train", "valid", "test")


def _docs() -> dict[str, dict[str, list[str]]]:
    code = _code_docs("json", 5)  # 5 modules
    docs = _docstrings(["argparse", "pathlib", "shutil"], 60)
    assert len(code) == 5 and len(docs) == 60
    return {
        "code": {"train": code[:3], "valid": code[3:4], "test": code[4:5]},
        "docs": {"train": docs[:40], "valid": docs[40:50], "test": docs[50:60]},
    }


def _setup(root: Path, **extra) -> tuple[Path, dict]:
    docs = _docs()
    spec = {}
    for name, parts in docs.items():
        for s, d in parts.items():
            write_jsonl(root / name / f"{s}.jsonl", d)
        spec[name] = {s: f"{name}/{s}.jsonl" for s in SPLITS}
    cfg = {"seed": 0, "data": {"domains": spec}, "tokenizer": {"vocab_size": 300}}
    for k, v in extra.items():
        cfg.setdefault(k, {}).update(v)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, docs


def _prepare(path: Path, *overrides: str):
    logs: list[str] = []
    data = prepare_data(load_config(path, list(overrides)), log=logs.append)
    return data, logs


def _rebuilt(logs: list[str]) -> set[str]:
    return {m.group(1) for line in logs if (m := re.match(r"tokenizing (\S+)", line))}


def _stamps(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in sorted(cache.rglob("*.bin"))}


def test_tokens_decode_to_the_documents(tmp_path):
    path, docs = _setup(tmp_path)
    data, logs = _prepare(path)
    assert data.domains == ["code", "docs"]
    assert any("training a byte-level BPE" in line for line in logs)
    assert _rebuilt(logs) == {f"{d}/{s}" for d in data.domains for s in SPLITS}
    tok = data.tokenizer
    assert tok.vocab_size == 300
    for d in data.domains:
        for s in SPLITS:
            arr = data.tokens(d, s)
            assert arr.dtype == np.uint16
            assert int(arr.max()) < tok.vocab_size
            ids = arr.tolist()
            assert ids.count(tok.eos_id) == len(docs[d][s]) and ids[-1] == tok.eos_id  # one EOS after every document
            assert tok.decode(ids) == "".join(docs[d][s])
            e = data.index["entries"][f"{d}/{s}"]
            assert e["tokens"] == len(arr) and e["documents"] == len(docs[d][s])
    counts = data.token_counts("train")
    nat = natural_weights(data)
    assert sum(nat.values()) == pytest.approx(1.0)
    assert nat["code"] == pytest.approx(counts["code"] / sum(counts.values()))
    table = format_table(data)
    for d in data.domains:
        assert re.search(rf"^{d}\s+{counts[d]:,}\s", table, re.M)
    assert re.search(r"^total\s", table, re.M)


def test_append_eos_off(tmp_path):
    path, docs = _setup(tmp_path, data={"append_eos": False})
    data, _ = _prepare(path)
    ids = data.tokens("docs", "valid").tolist()
    assert data.tokenizer.eos_id not in ids
    assert data.tokenizer.decode(ids) == "".join(docs["docs"]["valid"])


def test_reuse_and_targeted_rebuilds(tmp_path):
    path, docs = _setup(tmp_path)
    cache = tmp_path / ".tandem_cache"
    first, _ = _prepare(path)
    stamps = _stamps(cache)
    assert len(stamps) == 6
    tok_mtime = (cache / "tokenizer.json").stat().st_mtime_ns

    # Nothing changed: nothing re-tokenized, no file rewritten, same tokens.
    again, logs = _prepare(path)
    assert logs == []
    assert _stamps(cache) == stamps and (cache / "tokenizer.json").stat().st_mtime_ns == tok_mtime
    for d in first.domains:
        for s in SPLITS:
            np.testing.assert_array_equal(again.tokens(d, s), first.tokens(d, s))

    # Editing one (non-train) source rebuilds only its entry; the tokenizer is kept.
    write_jsonl(tmp_path / "docs" / "valid.jsonl", docs["docs"]["valid"] + ["one more document, appended"])
    edited, logs = _prepare(path)
    assert _rebuilt(logs) == {"docs/valid"}
    assert not any("training" in line for line in logs)
    new = _stamps(cache)
    assert {k for k in stamps if new[k] != stamps[k]} == {"docs/valid.bin"}
    assert len(edited.tokens("docs", "valid")) > len(first.tokens("docs", "valid"))
    assert edited.index["entries"]["docs/valid"]["documents"] == len(docs["docs"]["valid"]) + 1

    # A changed tokenizer (vocab size) rebuilds every entry with the new vocabulary.
    bigger, logs = _prepare(path, "tokenizer.vocab_size=320")
    assert any("training" in line for line in logs)
    assert _rebuilt(logs) == {f"{d}/{s}" for d in ("code", "docs") for s in SPLITS}
    assert bigger.vocab_size == 320
    assert bigger.tokenizer.fingerprint != first.tokenizer.fingerprint
    assert len(bigger.tokens("docs", "train")) < len(first.tokens("docs", "train"))  # more merges, fewer tokens

    # Options that change the tokens (append_eos) rebuild too.
    _, logs = _prepare(path, "tokenizer.vocab_size=320", "data.append_eos=false")
    assert _rebuilt(logs) == {f"{d}/{s}" for d in ("code", "docs") for s in SPLITS}


def test_fixed_tokenizer_file_train_edit_rebuilds_one_entry(tmp_path):
    path, docs = _setup(tmp_path)
    _prepare(path)
    shutil.copy(tmp_path / ".tandem_cache" / "tokenizer.json", tmp_path / "tok.json")
    over = ["tokenizer.kind=file", "tokenizer.path=tok.json"]
    _, logs = _prepare(path, *over)
    assert logs == []  # same tokenizer (fingerprint) as the trained one: everything reused
    write_jsonl(tmp_path / "code" / "train.jsonl", docs["code"]["train"][:-1])
    data, logs = _prepare(path, *over)
    assert _rebuilt(logs) == {"code/train"}
    assert data.index["entries"]["code/train"]["documents"] == len(docs["code"]["train"]) - 1


def test_damaged_cache_is_rebuilt(tmp_path):
    path, _ = _setup(tmp_path)
    cache = tmp_path / ".tandem_cache"
    first, _ = _prepare(path)
    ref = np.array(first.tokens("code", "test"))
    f = cache / "code" / "test.bin"
    f.write_bytes(f.read_bytes()[:-2])  # truncated shard
    data, logs = _prepare(path)
    assert _rebuilt(logs) == {"code/test"}
    np.testing.assert_array_equal(data.tokens("code", "test"), ref)
    (cache / "index.json").write_text("{not json")
    data, logs = _prepare(path)
    assert any("unreadable cache index" in line for line in logs)
    np.testing.assert_array_equal(data.tokens("code", "test"), ref)


def _marked(n: int) -> list[str]:
    return [f"DOC{i:04d} " + "lorem ipsum dolor sit amet " * (1 + i % 3) for i in range(n)]


def _markers(data, d: str, s: str) -> list[int]:
    return [int(m) for m in re.findall(r"DOC(\d{4})", data.tokenizer.decode(data.tokens(d, s).tolist()))]


def test_source_split_by_document(tmp_path):
    write_jsonl(tmp_path / "src" / "a.jsonl", _marked(30))
    write_jsonl(tmp_path / "src" / "b.jsonl", _marked(50)[30:])
    cfg = {
        "seed": 0,
        "data": {"domains": {
            "mixed": {"source": "src/*.jsonl", "split": {"train": 0.8, "valid": 0.1, "test": 0.1}},
            "notest": {"source": "src/a.jsonl", "split": {"train": 0.9, "valid": 0.1}},
        }},
        "tokenizer": {"vocab_size": 280},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    data, _ = _prepare(path)
    parts = {s: _markers(data, "mixed", s) for s in SPLITS}
    assert [len(parts[s]) for s in SPLITS] == [40, 5, 5]
    for s in SPLITS:
        assert parts[s] == sorted(parts[s])  # documents keep their order within a split
        assert data.index["entries"][f"mixed/{s}"]["documents"] == len(parts[s])
    assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(50))  # disjoint and complete
    # A split with no fraction is absent (no error), reported as zero tokens.
    assert len(data.tokens("notest", "test")) == 0
    assert len(_markers(data, "notest", "valid")) == 3
    assert "notest" in format_table(data)

    # Deterministic for a seed (fresh cache, same split); another seed gives another split.
    same, _ = _prepare(path, "data.cache_dir=cache2")
    assert {s: _markers(same, "mixed", s) for s in SPLITS} == parts
    other, _ = _prepare(path, "seed=1", "data.cache_dir=cache3")
    other_parts = {s: _markers(other, "mixed", s) for s in SPLITS}
    assert other_parts != parts
    assert sorted(sum(other_parts.values(), [])) == list(range(50))


def test_split_of_documents_direct():
    docs = [f"d{i}" for i in range(101)]
    a = _split_of_documents(docs, {"train": 0.9, "valid": 0.05, "test": 0.05}, 0, "x")
    assert _split_of_documents(docs, {"train": 0.9, "valid": 0.05, "test": 0.05}, 0, "x") == a
    assert _split_of_documents(docs, {"train": 0.9, "valid": 0.05, "test": 0.05}, 0, "y") != a  # per-domain stream
    assert [len(a[s]) for s in SPLITS] == [91, 5, 5]
    assert set(a["train"]).isdisjoint(a["valid"]) and set(a["valid"]).isdisjoint(a["test"])
    # Tiny fractions still give the split one document; too few documents is an error naming the domain.
    b = _split_of_documents(docs[:5], {"train": 0.98, "valid": 0.01, "test": 0.01}, 0, "x")
    assert [len(b[s]) for s in SPLITS] == [3, 1, 1]
    with pytest.raises(InputError, match="data.domains.x.source: 2 document"):
        _split_of_documents(docs[:2], {"train": 0.5, "valid": 0.25, "test": 0.25}, 0, "x")


def test_tokenizer_does_not_depend_on_cache_history(tmp_path):
    write_jsonl(tmp_path / "src.jsonl", _marked(40) + _docstrings(["argparse"], 30))
    cfg = {"seed": 0, "data": {"domains": {"d": {"source": "src.jsonl", "split": {"train": 0.5, "valid": 0.5}}}},
           "tokenizer": {"vocab_size": 290}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _prepare(path)
    reused, _ = _prepare(path, "seed=1")  # same cache, another train split
    fresh, _ = _prepare(path, "seed=1", "data.cache_dir=fresh")
    assert reused.tokenizer.fingerprint == fresh.tokenizer.fingerprint
    np.testing.assert_array_equal(reused.tokens("d", "train"), fresh.tokens("d", "train"))


def test_every_format_and_text_fields(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    datasets.disable_progress_bars()
    docs = _docstrings(["argparse", "shutil"], 40)
    write_jsonl(tmp_path / "j" / "train.jsonl", docs[:10])
    (tmp_path / "t").mkdir()
    for i, d in enumerate(docs[10:20]):
        (tmp_path / "t" / f"{i:02d}.txt").write_text(d, encoding="utf-8")
    (tmp_path / "p").mkdir()
    pq.write_table(pa.table({"content": docs[20:30]}), tmp_path / "p" / "train.parquet")
    datasets.Dataset.from_dict({"body": docs[30:40]}).save_to_disk(str(tmp_path / "h"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.jsonl").write_text("".join(json.dumps({"content": d}) + "\n" for d in docs[:5]))
    cfg = {
        "data": {
            "text_field": "body",
            "domains": {
                "jsonl": {"train": "j/train.jsonl", "text_field": "text"},
                "txt": {"train": "t/*.txt"},
                "parquet": {"train": "p/train.parquet", "text_field": "content"},
                "hf": {"train": "h"},
                "custom": {"train": "c/train.jsonl", "format": "jsonl", "text_field": "content"},
            },
        },
        "tokenizer": {"vocab_size": 300},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    data, _ = _prepare(path)
    expected = {"jsonl": docs[:10], "txt": docs[10:20], "parquet": docs[20:30], "hf": docs[30:40], "custom": docs[:5]}
    for d, want in expected.items():
        assert data.index["entries"][f"{d}/train"]["documents"] == len(want), d
        assert data.tokenizer.decode(data.tokens(d, "train").tolist()) == "".join(want), d
        assert len(data.tokens(d, "valid")) == 0 and len(data.tokens(d, "test")) == 0
    np.testing.assert_array_equal(data.tokens("custom", "train"), data.tokens("jsonl", "train")[: len(data.tokens("custom", "train"))])
    # The field decides what is read: with the wrong one, the error names file and field.
    with pytest.raises(InputError, match=r"train.jsonl:1: missing field 'body'"):
        _prepare(path, "data.domains.jsonl.text_field=body")


def test_empty_and_missing_sources(tmp_path):
    path, _ = _setup(tmp_path)
    (tmp_path / "docs" / "test.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match=r"data.domains.docs.test: no text found in .*test.jsonl"):
        _prepare(path)
    (tmp_path / "docs" / "test.jsonl").unlink()
    with pytest.raises(InputError, match=r"data.domains.docs.test: file not found"):
        _prepare(path)
