"""`tandem export`: every format parses the way its consumer reads it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from tandem.errors import InputError
from tandem.mixing.optimize import write_weights

NAMES = ["code", "books", "chat"]
# Sums to 1 only within 1e-6, as weights files are allowed to: exporters must still satisfy strict consumers.
WEIGHTS = np.array([0.5, 0.3, 0.2 + 4e-7])


# Rows (sequences) one document fills: code files are long, chat turns short.
ROWS_PER_DOC = {"code": 6.0, "books": 2.0, "chat": 0.25}


@pytest.fixture
def weights_file(tmp_path) -> Path:
    write_weights(tmp_path / "opt", NAMES, WEIGHTS, WEIGHTS, WEIGHTS, "tandem",
                  {"target": {"code": 0.5, "books": 0.25, "chat": 0.25}, "rows_per_document": ROWS_PER_DOC})
    return tmp_path / "opt" / "weights.json"


def test_megatron_blend_parses_with_megatron_core(weights_file, tmp_path, cli):
    from megatron.core.datasets.utils import get_blend_from_list

    out = tmp_path / "blend.txt"
    rc, _, err = cli("export", weights_file, "--format", "megatron", "--out", out,
                     "--prefix-template", "data/{domain}_text_document", "--prefix", "chat=/abs/chat_doc")
    assert rc == 0, err
    # What Megatron does with --data-args-path FILE: split the file on whitespace, read weight/prefix pairs.
    prefixes, weights = get_blend_from_list(out.read_text().split())
    assert prefixes == ["data/code_text_document", "data/books_text_document", "/abs/chat_doc"]
    np.testing.assert_allclose(weights, WEIGHTS, atol=1e-9)


def test_megatron_leaves_out_zero_weights_and_rejects_bad_prefixes(tmp_path, cli):
    w = tmp_path / "w.json"
    w.write_text(json.dumps({"domain_weights": {"a": 0.0, "b": 1.0}}))
    rc, out, _ = cli("export", w, "--format", "megatron", "--prefix-template", "p/{domain}")
    assert rc == 0 and out.split() == ["1", "p/b"]
    rc, out, err = cli("export", w, "--format", "megatron", "--prefix-template", "my data/{domain}")
    assert rc == 2 and "whitespace" in err and out == ""
    rc, _, err = cli("export", w, "--format", "megatron", "--prefix", "zzz=p")
    assert rc == 2 and "zzz" in err


def test_doremi_config_reads_as_doremi_does(weights_file, tmp_path, cli):
    out = tmp_path / "doremi.json"
    assert cli("export", weights_file, "--format", "doremi", "--out", out)[0] == 0
    cfg = json.loads(out.read_text())
    train, ev = cfg["train_domain_weights"], cfg["eval_domain_weights"]
    # DoReMi sorts the domain names and indexes both maps by them.
    domain_list = sorted(train)
    assert domain_list == sorted(NAMES) and sorted(ev) == domain_list
    np.testing.assert_allclose([train[d] for d in NAMES], WEIGHTS)
    assert ev == {"code": 0.5, "books": 0.25, "chat": 0.25}  # the optimization target


def test_datasets_probabilities_drive_interleave_datasets(weights_file, tmp_path, cli):
    from datasets import Dataset, interleave_datasets

    out = tmp_path / "probs.json"
    order = ["chat", "code", "books"]
    assert cli("export", weights_file, "--format", "datasets", "--order", ",".join(order), "--out", out)[0] == 0
    spec = json.loads(out.read_text())
    assert spec["domains"] == order
    assert sum(spec["probabilities"]) == pytest.approx(1.0, abs=1e-15)
    assert spec["weights"] == pytest.approx([WEIGHTS[NAMES.index(d)] for d in order])
    # documents of each domain with the rows (sequences) they fill: the token shares interleave_datasets then
    # delivers are the learned weights
    parts = {d: Dataset.from_dict({"domain": [d] * 20000, "rows": [ROWS_PER_DOC[d]] * 20000}) for d in NAMES}
    mixed = interleave_datasets([parts[d] for d in spec["domains"]], probabilities=spec["probabilities"], seed=0)
    drawn = mixed.select(range(6000))
    rows = Counter()
    for d, r in zip(drawn["domain"], drawn["rows"]):
        rows[d] += r
    total = sum(rows.values())
    for d, w in zip(NAMES, WEIGHTS):
        assert abs(rows[d] / total - w) < 0.03, (d, rows[d] / total, w)


def test_datasets_export_refuses_weights_without_document_lengths(tmp_path, cli):
    plain = tmp_path / "w.json"
    plain.write_text(json.dumps({"domain_weights": {"code": 0.5, "books": 0.5}}))
    rc, _, err = cli("export", plain, "--format", "datasets", "--out", tmp_path / "p.json")
    assert rc == 2 and "rows_per_document" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p.json").exists()


def test_yaml_is_a_plain_mapping(weights_file, cli):
    rc, out, _ = cli("export", weights_file, "--format", "yaml")
    assert rc == 0
    data = yaml.safe_load(out)
    assert list(data) == NAMES
    np.testing.assert_allclose(list(data.values()), WEIGHTS)


def test_compare_results_need_a_method_and_average_its_seeds(tmp_path, cli):
    runs = [{"method": "tandem", "seed": s, "weights": {"a": 0.2 + 0.2 * s, "b": 0.8 - 0.2 * s}} for s in (0, 1)]
    runs.append({"method": "uniform", "seed": 0, "weights": {"a": 0.5, "b": 0.5}})
    res = tmp_path / "cmp"
    res.mkdir()
    (res / "results.json").write_text(json.dumps({"methods": ["tandem", "uniform"], "seeds": 2, "runs": runs}))
    rc, _, err = cli("export", res, "--format", "yaml")
    assert rc == 2 and "--method" in err
    rc, out, _ = cli("export", res, "--format", "yaml", "--method", "tandem")
    assert rc == 0 and yaml.safe_load(out) == pytest.approx({"a": 0.3, "b": 0.7})


def test_bad_input_is_one_line_and_writes_nothing(weights_file, tmp_path, cli):
    out = tmp_path / "x.txt"
    for argv, needle in [
        ((weights_file, "--format", "csv"), "--format"),
        ((tmp_path / "missing.json", "--format", "yaml"), "not found"),
        ((weights_file, "--format", "datasets", "--order", "code,books"), "--order"),
    ]:
        rc, _, err = cli("export", *argv, "--out", out)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"domain_weights": {"a": 0.7, "b": 0.7}}))
    rc, _, err = cli("export", bad, "--format", "yaml", "--out", out)
    assert rc == 2 and "sum" in err
    assert not out.exists()


def test_datasets_export_recovers_token_shares_from_real_files(tmp_path, cli):
    """The learned weights are token shares; interleaving the real train files (read by datasets.load_dataset) with
    the exported per-document probabilities gives back those token shares, counted with the run's tokenizer."""
    from datasets import interleave_datasets, load_dataset

    import tandem
    from conftest import tiny_config
    from tandem.config import load_config
    from tandem.data.cache import prepare_data

    shares = {"code": 0.2, "docs": 0.5, "prose": 0.3}
    path = tiny_config(tmp_path, mixer={"method": "fixed", "weights": shares})
    tandem.optimize(path, tmp_path / "opt")
    rc, text, _ = cli("export", tmp_path / "opt", "--format", "datasets")
    spec = json.loads(text)
    assert rc == 0 and "per document" in spec["note"]
    cfg = load_config(path)
    tok = prepare_data(cfg).tokenizer
    n = 100_000  # draws; each domain's file is cycled through in its own order, as interleave_datasets reads it
    parts = []
    for d in spec["domains"]:
        ds = load_dataset("json", data_files=str(cfg.resolve(cfg.data.domains[d].train)), split="train",
                          cache_dir=str(tmp_path / "hf"))
        # tokens of a document as the cache counts them: its text and the end-of-text token
        ds = ds.map(lambda row: {"tokens": len(tok.encode(row["text"])) + 1, "domain": d})
        parts.append(ds.select(np.arange(n) % len(ds)))
    drawn = interleave_datasets(parts, probabilities=spec["probabilities"], seed=0).select(range(n))
    tokens = Counter()
    for d, t in zip(drawn["domain"], drawn["tokens"]):
        tokens[d] += t
    total = sum(tokens.values())
    for d, w in shares.items():
        assert abs(tokens[d] / total - w) < 0.02, (d, tokens[d] / total, w)


def test_a_megatron_blend_reads_back_when_one_name_starts_with_another():
    """`code` and `code_py` are both names `code_py_text_document` starts with (plus `_`); it names the longer."""
    from tandem.schema import blend_domains

    names = ["code", "code_py", "books"]
    blend = {"data/code_text_document": 0.2, "data/code_py_text_document": 0.5, "data/books_text_document": 0.3}
    assert blend_domains(blend, names, "b.txt") == pytest.approx({"code": 0.2, "code_py": 0.5, "books": 0.3})
    with pytest.raises(InputError, match="names no domain"):
        blend_domains({"data/chat_text_document": 1.0}, names, "b.txt")
