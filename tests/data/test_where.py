"""Domains cut from one source by a field: `where` keeps the rows whose (possibly nested) field has the value."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tandem.config import load_config
from tandem.data.cache import prepare_data

SETS = {"github": "def f(x):\n    return x + 1\n" * 30, "books": "It was a dark and stormy night. " * 40,
        "wiki": "The city lies on the river and has a long history. " * 30}


def _rows(n: int = 40) -> list[dict]:
    return [{"text": f"{SETS[s]} {i}", "meta": {"set": s}, "lang": "en"} for i in range(n) for s in SETS]


def _config(tmp_path, source: str, where: dict, extra: dict | None = None):
    cfg = {"data": {"domains": {name: {"source": source, "split": {"train": 0.8, "valid": 0.1, "test": 0.1},
                                       "where": w} for name, w in where.items()}},
           "tokenizer": {"vocab_size": 300}, "model": {"preset": "tiny"}, "train": {"seq_len": 16}, **(extra or {})}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.zst", "parquet"])
def test_domains_from_a_nested_column(tmp_path, fmt):
    rows = _rows()
    if fmt == "jsonl":
        src = tmp_path / "all.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "jsonl.zst":  # how SlimPajama ships: one compressed file, the domain in meta
        src = tmp_path / "all.jsonl.zst"
        with pa.output_stream(str(src), compression="zstd") as out:
            out.write("".join(json.dumps(r) + "\n" for r in rows).encode())
    else:
        src = tmp_path / "all.parquet"
        pq.write_table(pa.Table.from_pylist(rows), src)
    path = _config(tmp_path, str(src), {"code": {"meta.set": "github"}, "prose": {"meta.set": ["books", "wiki"]}})
    data = prepare_data(load_config(path))
    docs = {d: sum(data.index["entries"][f"{d}/{s}"]["documents"] for s in ("train", "valid", "test"))
            for d in ("code", "prose")}
    assert docs == {"code": 40, "prose": 80}
    code = data.tokenizer.decode(list(data.tokens("code", "train")[:200]))
    assert "return x + 1" in code and "stormy" not in code


def test_a_missing_where_field_is_one_line(tmp_path, cli):
    src = tmp_path / "all.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(5)))
    path = _config(tmp_path, str(src), {"code": {"meta.subset": "github"}})
    rc, _, err = cli("prepare", path, "-q")
    assert rc == 2 and "meta.subset" in err and "no row of" in err and "all.jsonl" in err, err
    assert len(err.strip().splitlines()) == 1


def test_sft_tasks_from_one_file(tmp_path):
    rows = [{"prompt": f"Upper-case: word{i}", "response": f"WORD{i}", "task": "upper"} for i in range(30)]
    rows += [{"prompt": f"Reverse: ab{i}", "response": f"{i}ba", "task": "reverse"} for i in range(20)]
    src = tmp_path / "tasks.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"data": {"domains": {t: {"kind": "sft", "source": str(src), "where": {"task": t},
                                    "split": {"train": 0.8, "valid": 0.1, "test": 0.1}} for t in ("upper", "reverse")}},
           "tokenizer": {"vocab_size": 300}, "model": {"preset": "tiny"}, "train": {"seq_len": 32}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    data = prepare_data(load_config(path))
    n = {d: sum(data.tokens(d, s).num_examples for s in ("train", "valid", "test")) for d in ("upper", "reverse")}
    assert n == {"upper": 30, "reverse": 20}
