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


def _slimpajama(tmp_path, rows=None):
    """One compressed jsonl with the domain in meta.redpajama_set_name, as SlimPajama ships."""
    rows = rows or [{"text": f"{SETS[s]} {i}", "meta": {"redpajama_set_name": f"RedPajama{s.title()}"}}
                    for i in range(30) for s in SETS]
    src = tmp_path / "slimpajama.jsonl.zst"
    with pa.output_stream(str(src), compression="zstd") as out:
        out.write("".join(json.dumps(r) + "\n" for r in rows).encode())
    return src


def _group_config(tmp_path, group: dict, extra_domains: dict | None = None, **sections):
    cfg = {"data": {"domains": {"slimpajama": group, **(extra_domains or {})}}, "tokenizer": {"vocab_size": 300},
           "model": {"preset": "tiny"}, "train": {"seq_len": 16}, **sections}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


SPLIT = {"train": 0.8, "valid": 0.1, "test": 0.1}


def test_domain_field_makes_one_domain_per_value(tmp_path, monkeypatch):
    src = _slimpajama(tmp_path)
    path = _group_config(tmp_path, {"source": src.name, "split": SPLIT, "domain_field": "meta.redpajama_set_name"},
                         mixer={"target": ["RedPajamaBooks"]})
    cfg = load_config(path)
    # One domain per value, in sorted order, each the group's source cut by its value; the group is no domain.
    assert cfg.domain_names == ["RedPajamaBooks", "RedPajamaGithub", "RedPajamaWiki"]
    assert cfg.data.domains["RedPajamaGithub"].where == {"meta.redpajama_set_name": "RedPajamaGithub"}
    assert cfg.data.domains["RedPajamaGithub"].split == SPLIT and cfg.data.domains["RedPajamaGithub"].domain_field is None
    data = prepare_data(cfg)
    docs = {d: sum(data.index["entries"][f"{d}/{s}"]["documents"] for s in ("train", "valid", "test"))
            for d in cfg.domain_names}
    assert docs == dict.fromkeys(cfg.domain_names, 30)
    assert "return x + 1" in data.tokenizer.decode(list(data.tokens("RedPajamaGithub", "train")[:100]))
    # The values are remembered in the cache folder: the next load does not read the corpus again.
    import tandem.data.readers as readers

    monkeypatch.setattr(readers, "read_records", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-read")))
    assert load_config(path).domain_names == cfg.domain_names
    # The config as written into a run folder (every domain explicit) loads to the same domains.
    from tandem.config import config_from_dict

    assert config_from_dict(cfg.to_dict(), cfg.base_dir).data.domains == cfg.data.domains


def test_domain_values_choose_and_name_the_domains(tmp_path):
    rows = [{"text": f"{SETS['wiki']} {i}", "meta": {"set": "Wikipedia (en)"}} for i in range(20)]
    rows += [{"text": f"{SETS['github']} {i}", "meta": {"set": "Github"}} for i in range(20)]
    rows += [{"text": f"{SETS['books']} {i}", "meta": {"set": "Books3"}} for i in range(20)]
    rows += [{"text": "no domain here", "meta": {}}]  # a row without the field belongs to no domain
    src = _slimpajama(tmp_path, rows)
    group = {"source": src.name, "split": SPLIT, "domain_field": "meta.set",
             "domain_values": {"Wikipedia (en)": "wikipedia", "Github": "github"}}
    cfg = load_config(_group_config(tmp_path, group))
    assert cfg.domain_names == ["wikipedia", "github"]  # the order given; Books3 is not listed, so not a domain
    data = prepare_data(cfg)
    assert "river" in data.tokenizer.decode(list(data.tokens("wikipedia", "train")[:100]))
    assert sum(data.index["entries"][f"github/{s}"]["documents"] for s in ("train", "valid", "test")) == 20


@pytest.mark.parametrize("group, expected", [
    ({"domain_field": "meta.set"}, ["value 'Wikipedia (en)' of meta.set cannot name a domain", "domain_values"]),
    ({"domain_field": "meta.subset"}, ["slimpajama.domain_field", "no row of", "slimpajama.jsonl.zst",
                                       "'meta.subset'"]),
    ({"domain_field": "meta"}, ["field 'meta' holds a dict", "slimpajama.jsonl.zst:1"]),
    ({"domain_values": ["x"]}, ["domain_values` applies only with `domain_field"]),
])
def test_a_bad_domain_field_is_one_line_and_writes_nothing(tmp_path, cli, group, expected):
    src = _slimpajama(tmp_path, [{"text": "some text " * 20, "meta": {"set": "Wikipedia (en)"}}] * 5)
    path = _group_config(tmp_path, {"source": src.name, "split": SPLIT, **group})
    rc, _, err = cli("prepare", path, "-q")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and all(e in err for e in expected), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "slimpajama.jsonl.zst"]


def test_a_value_named_twice_is_refused(tmp_path, cli):
    src = _slimpajama(tmp_path)
    path = _group_config(tmp_path, {"source": src.name, "split": SPLIT, "domain_field": "meta.redpajama_set_name"},
                         {"RedPajamaWiki": {"source": src.name, "split": SPLIT}})
    rc, _, err = cli("prepare", path, "-q")
    assert rc == 2 and "'RedPajamaWiki' is named twice" in err and len(err.strip().splitlines()) == 1, err


def test_a_value_only_in_valid_is_a_target_only_domain(tmp_path):
    """Split files with a domain column (SlimPajama's train/validation folders): a value the train files lack makes
    a domain with valid/test only."""
    def write(name, sets):
        p = tmp_path / name
        p.write_text("".join(json.dumps({"text": f"{SETS[s]} {i}", "meta": {"set": s}}) + "\n"
                             for i in range(12) for s in sets))
        return p.name

    group = {"train": write("train.jsonl", ["github", "books"]), "valid": write("valid.jsonl", SETS),
             "test": write("test.jsonl", SETS), "domain_field": "meta.set"}
    cfg = load_config(_group_config(tmp_path, group, mixer={"target": ["wiki"]}))
    assert cfg.domain_names == ["books", "github", "wiki"]
    assert cfg.data.domains["wiki"].train is None and not cfg.data.domains["wiki"].has_train
    data = prepare_data(cfg)
    assert len(data.tokens("wiki", "train")) == 0 and len(data.tokens("wiki", "valid")) > 0
    assert data.trainable.tolist() == [True, True, False]
