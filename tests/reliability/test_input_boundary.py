"""The input boundary by mechanism: one representative case per class the red team found (../shared/redteam2).

Every bad input ends as one `error:` line, exit code 2, nothing written; inputs are never written over; a reused
result needs the same identity; files tandem reads back are held to a schema; storage errors are input errors; the
Python API refuses what the CLI refuses, with the same error type."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from tandem.errors import InputError

FAST = ["--set", "train.steps=3", "--set", "eval.max_tokens=256", "-q"]


def one_line_refusal(rc: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, err)
    return lines[0]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def weights_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "w.json"
    p.write_text(text)
    return p


# --- files read back: bounded parsing and a schema -----------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ('{"domain_weights": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"domain_weights": {"a": 1' + "0" * 400 + ', "b": 0}}', "finite"),
    ('{"domain_weights": {"a": true, "b": false}}', "finite"),
    ('{"domain_weights": {"a": NaN, "b": 1}}', "finite"),
    ('{"domain_weights": {"a": "0.5", "b": 0.5}}', "finite"),
    ('{"domain_weights": {"a": 0.5, "a": 0.5}}', "given twice"),
])
def test_export_refuses_a_damaged_weights_file_in_one_line(tmp_path, cli, text, says):
    rc, _, err = cli("export", weights_file(tmp_path, text), "--format", "yaml")
    assert says in one_line_refusal(rc, err)


def test_export_refuses_compare_results_whose_weights_are_not_numbers(tmp_path, cli):
    runs = [{"method": "m", "seed": 0, "weights": {"a": True, "b": False}}]
    p = weights_file(tmp_path, json.dumps({"runs": runs}))
    rc, _, err = cli("export", p, "--format", "yaml")
    assert "runs[0].weights.a" in one_line_refusal(rc, err)


def test_export_datasets_refuses_a_non_positive_rows_per_document(tmp_path, cli):
    p = weights_file(tmp_path, json.dumps({"domain_weights": {"a": 0.5, "b": 0.5},
                                           "rows_per_document": {"a": 0, "b": 1.0}}))
    rc, _, err = cli("export", p, "--format", "datasets")
    assert "rows_per_document.a" in one_line_refusal(rc, err)


@pytest.mark.parametrize("layout", ["plain", "doremi", "yaml"])
def test_weights_files_round_trip_in_every_layout_tandem_writes(tiny_cfg, tmp_path, layout):
    from tandem.mixing.weights import read_weights_file

    w = {"code": 0.5, "docs": 0.25, "prose": 0.25}
    if layout == "yaml":
        p = tmp_path / "w.yaml"
        p.write_text(yaml.safe_dump(w))
    else:
        p = tmp_path / "w.json"
        p.write_text(json.dumps(w if layout == "plain" else {"train_domain_weights": w, "eval_domain_weights": w}))
    assert read_weights_file(p, ["code", "docs", "prose"]) == w


def _optimize_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "opt"
    folder.mkdir()
    (folder / "weights.json").write_text(json.dumps({"domain_weights": {"a": 0.5, "b": 0.5}}))
    (folder / "trajectory.csv").write_text("step,weight_a,weight_b,delta_a,delta_b,distance\n1,0.5,0.5,0,0,0\n")
    return folder


@pytest.mark.parametrize("damage", ["nan weight", "no step column", "text weight"])
def test_report_refuses_damaged_outputs_and_leaves_nothing(tmp_path, cli, monkeypatch, damage):
    import tempfile

    folder = _optimize_folder(tmp_path)
    if damage == "nan weight":
        (folder / "weights.json").write_text('{"domain_weights": {"a": NaN, "b": 0.5}}')
    elif damage == "no step column":
        (folder / "trajectory.csv").write_text("weight_a,weight_b,delta_a,delta_b,distance\n0.5,0.5,0,0,0\n")
    elif damage == "text weight":
        (folder / "trajectory.csv").write_text("step,weight_a,weight_b,delta_a,delta_b,distance\n1,abc,0.5,0,0,0\n")
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    before = files_under(folder)
    rc, _, err = cli("report", folder)
    one_line_refusal(rc, err)
    assert files_under(folder) == before and files_under(tmp) == set()


def test_a_log_with_lines_that_are_not_text_is_read_around_them(tmp_path, cli):
    folder = _optimize_folder(tmp_path)
    (folder / "metrics.jsonl").write_bytes(b"\xff\xfe\x00garbage\n" + b'{"step": 1}\n')
    rc, _, err = cli("report", folder)
    assert rc == 0, err


# --- data sources --------------------------------------------------------------------------------------------------

def _read(path: Path, fmt="auto", field="text") -> list[str]:
    from tandem.data.readers import read_documents

    return list(read_documents([path], fmt, field))


@pytest.mark.parametrize("name, content, says", [
    ("deep.jsonl", '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "nested too deeply"),
    ("surrogate.jsonl", '{"text": "ab\\ud800cd"}\n', "lone surrogate"),
    ("tail.txt", "x" * 9000 + "\0\0\0", "NUL"),
])
def test_sources_that_are_not_text_are_refused(tmp_path, name, content, says):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=says):
        _read(p)


def test_a_fifo_is_refused_before_anything_reads_it(tmp_path):
    from tandem.data.readers import expand_sources

    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(InputError, match="pipe, socket or device"):
        expand_sources("pipe.jsonl", tmp_path, "data.domains.a.train")


def test_csv_with_a_byte_order_mark_and_a_long_field_is_read(tmp_path):
    p = tmp_path / "t.csv"
    long = "y" * 200_000  # over the csv module's default field limit
    p.write_bytes("\ufefftext,id\nhello,1\n".encode("utf-8") + f'"{long}",2\n'.encode())
    assert _read(p) == ["hello", long]


def test_where_compares_values_of_the_same_type_only():
    from tandem.data.readers import row_filter

    keep = row_filter({"id": 1}, "where")
    assert [keep({"id": v}, "") for v in (1, 1.0, True, "1")] == [True, False, False, False]
    keep = row_filter({"flag": True}, "where")
    assert [keep({"flag": v}, "") for v in (True, 1)] == [True, False]


# --- the config ----------------------------------------------------------------------------------------------------

def test_a_quoted_number_is_a_string_and_refused_naming_the_field(tiny_cfg, cli, tmp_path):
    rc, _, err = cli("train", tiny_cfg, "--out", tmp_path / "o", "--set", "train.steps='30'")
    assert "train.steps" in one_line_refusal(rc, err) and not (tmp_path / "o").exists()


def test_exponent_floats_are_numbers_as_in_yaml_1_2():
    from tandem.config import parse_yaml

    assert parse_yaml("lr: 1e-3\nbig: 2E+5\nquoted: '1e-3'") == {"lr": 1e-3, "big": 2e5, "quoted": "1e-3"}


def test_a_typo_under_methods_is_refused(tiny_cfg, cli, tmp_path):
    rc, _, err = cli("optimize", tiny_cfg, "--out", tmp_path / "o", "--set", "methods.doremy={eta_alpha: 0.5}")
    assert "did you mean 'doremi'" in one_line_refusal(rc, err)
    rc, _, err = cli("optimize", tiny_cfg, "--out", tmp_path / "o", "--set", "methods.doremi={eta_alhpa: 0.5}")
    assert "eta_alpha" in one_line_refusal(rc, err)


def test_yaml_merge_keys_work_and_alias_bombs_are_refused(tmp_path):
    from tandem.config import load_config

    base = (tmp_path / "a.jsonl")
    base.write_text('{"text": "hello world"}\n')
    p = tmp_path / "c.yaml"
    p.write_text("split: &s {train: a.jsonl, valid: a.jsonl, test: a.jsonl}\n"
                 "data:\n  domains:\n    a: {<<: *s, test: a.jsonl}\n")
    with pytest.raises(InputError, match="split"):  # the anchor's own key is an unknown field, not a YAML error
        load_config(p)
    p.write_text("data:\n  domains:\n    a: &s {train: a.jsonl, valid: a.jsonl, test: a.jsonl}\n    b: {<<: *s}\n")
    assert list(load_config(p).data.domains) == ["a", "b"]
    bomb = "x: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p_}"] * 10) + "]\n" for p_, c in zip("abcdefgh", "bcdefghi"))
    p.write_text(bomb + "data: {domains: {}}\n")
    with pytest.raises(InputError, match="expand to more than"):
        load_config(p)


# --- inputs are read-only ------------------------------------------------------------------------------------------

def test_the_cache_never_writes_over_a_source(tmp_path, cli):
    src = tmp_path / "code" / "train.bin"  # a text file named like the cache's own shard
    src.parent.mkdir()
    src.write_text("def f():\n    return 1\n" * 50)
    original = src.read_bytes()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"cache_dir": ".", "domains": {"code": {
        "train": "code/train.bin", "valid": "code/train.bin", "test": "code/train.bin", "format": "txt"}}},
        "tokenizer": {"vocab_size": 300}}))
    rc, _, err = cli("prepare", cfg, "-q")
    assert "data.cache_dir" in one_line_refusal(rc, err)
    assert src.read_bytes() == original and not (tmp_path / "index.json").exists()


def test_an_out_folder_holding_an_input_is_refused(tiny_cfg, cli):
    data = tiny_cfg.parent / "data"
    before = files_under(data)
    rc, _, err = cli("train", tiny_cfg, "--out", data, "--force", *FAST)
    assert "holds the input" in one_line_refusal(rc, err)
    assert files_under(data) == before


# --- identity ------------------------------------------------------------------------------------------------------

def test_resume_without_a_readable_identity_is_refused(shared_cfg, tmp_path, cli):
    out = tmp_path / "run"
    assert cli("train", shared_cfg, "--out", out, *FAST, "--set", "train.checkpoint_interval=1")[0] == 0
    (out / "run.json").unlink()
    before = files_under(out)
    rc, _, err = cli("train", shared_cfg, "--out", out, "--resume", *FAST, "--set", "seed=1")
    assert "run.json" in one_line_refusal(rc, err)
    assert files_under(out) == before  # the refused run's files are left as they were
    (out / "run.json").write_text("[1, 2]")
    rc, _, err = cli("train", shared_cfg, "--out", out, "--resume", *FAST)
    assert "unreadable run.json" in one_line_refusal(rc, err)


def test_a_damaged_checkpoint_state_is_one_line_on_resume(shared_cfg, tmp_path, cli):
    out = tmp_path / "run"
    assert cli("train", shared_cfg, "--out", out, *FAST, "--set", "train.checkpoint_interval=1")[0] == 0
    for ckpt in (out / "checkpoint", out / "checkpoint.prev"):
        if ckpt.is_dir():
            (ckpt / "state.json").write_text('{"step": 1}')  # no sampler
    rc, _, err = cli("train", shared_cfg, "--out", out, "--resume", *FAST)
    assert "checkpoint" in one_line_refusal(rc, err)


def test_compare_reruns_a_run_whose_data_changed_and_locks_its_folder(tiny_cfg, tmp_path, cli):
    from tandem.runs import lock, release

    out = tmp_path / "cmp"
    args = ["compare", tiny_cfg, "--methods", "uniform", "--seeds", "1", "--out", out, *FAST]
    assert cli(*args)[0] == 0
    first = json.loads((out / "results.json").read_text())["runs"][0]["test_loss"]["average"]
    rc, spec, err = cli("export", out, "--method", "uniform", "--format", "datasets")  # compare results carry
    assert rc == 0 and json.loads(spec)["weights"] == [pytest.approx(1 / 3)] * 3, err   # rows_per_document
    rc, _, err = cli(*args[:-1])  # not quiet: says what it kept
    assert rc == 0 and "done earlier, kept" in err
    train = tiny_cfg.parent / "data" / "code" / "train.jsonl"
    train.write_text(train.read_text() * 2)
    rc, _, err = cli(*args[:-1])
    assert rc == 0 and "changed since it ran" in err
    assert json.loads((out / "results.json").read_text())["runs"][0]["test_loss"]["average"] != first
    lock(out)  # this process holds the folder, as a running compare would; a second one refuses
    try:
        import subprocess
        import sys

        p = subprocess.run([sys.executable, "-m", "tandem.cli.main", *map(str, args)], capture_output=True, text=True,
                           timeout=300)
        assert "another tandem process" in one_line_refusal(p.returncode, p.stderr)
    finally:
        release()


# --- storage errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("message", ["Error while serializing: I/O error: No space left on device (os error 28)",
                                     "[enforce fail at inline_container.cc:672] . unexpected pos 2624 vs 2516"])
def test_a_full_disk_while_checkpointing_is_an_input_error_and_leaves_no_partial_folder(tmp_path, monkeypatch,
                                                                                        message):
    import torch

    from tandem.training import checkpoint

    def full_disk(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "save", full_disk)
    ckpt = tmp_path / "checkpoint"
    with pytest.raises(InputError, match="cannot write"):
        checkpoint.save_checkpoint(ckpt, {"m": torch.nn.Linear(2, 2)}, {"opt": {"x": 1}}, {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_writer_bug_is_not_taken_for_a_storage_error(tmp_path):
    from tandem.io import storage_errors

    with pytest.raises(KeyError):
        with storage_errors(tmp_path):
            raise KeyError("a bug")


def test_checkpoint_files_get_the_umask_mode(tmp_path):
    import torch

    from tandem.training.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ck", {"m": torch.nn.Linear(2, 2)}, {"rng": torch.get_rng_state()}, {"step": 1})
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ck").iterdir()}
    assert modes and all(m == 0o644 for m in modes.values()), modes


# --- the command line ----------------------------------------------------------------------------------------------

def test_usage_errors_and_paths_with_newlines_are_one_line(tiny_cfg, tmp_path, capsys):
    from tandem.cli.main import main

    assert main(["train", str(tiny_cfg), "--out", str(tmp_path / "o"), "--stpes", "3"]) == 2
    one_line_refusal(2, capsys.readouterr().err)
    assert main(["train", str(tmp_path / "no\nsuch.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "no\\nsuch" in one_line_refusal(2, capsys.readouterr().err)
    assert main(["train", str(tiny_cfg), "--out", ""]) == 2
    one_line_refusal(2, capsys.readouterr().err)
    assert main(["ecommerce", "--scale", "inf", "--out", str(tmp_path / "e")]) == 2
    one_line_refusal(2, capsys.readouterr().err)
    assert not (tmp_path / "e").exists()


# --- model folders and templates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("meta", ["[1, 2]", '{"kind": "gpt"}', '{"kind": "gpt", "config": {"vocab_size": 64, "bogus": 1}}',
                                  '{"kind": "hf"}'])
def test_a_broken_model_folder_is_one_line(tmp_path, meta):
    from tandem.models import load_model

    m = tmp_path / "m"
    m.mkdir()
    (m / "tandem_model.json").write_text(meta)
    with pytest.raises(InputError):
        load_model(m)


def test_chat_templates_that_render_nothing_are_refused(tmp_path):
    from tandem.data.sft import ChatRenderer, resolve_template

    empty = tmp_path / "empty.jinja"
    empty.write_text("")
    with pytest.raises(InputError, match="empty template"):
        resolve_template(str(empty), None, tmp_path)

    class Tok:
        chat_template, eos_token, bos_token = None, "<eos>", "<bos>"

    silent = "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }}{% endif %}{% endfor %}"
    with pytest.raises(InputError, match="renders nothing for an assistant turn"):
        ChatRenderer(Tok(), silent).render([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])


# --- the Python API ------------------------------------------------------------------------------------------------

def test_the_api_refuses_what_the_cli_refuses_with_the_same_error_type(shared_cfg, tmp_path):
    import tandem.api as api

    with pytest.raises(InputError, match="expected a finite non-negative number"):
        api.train(shared_cfg, tmp_path / "t", weights={"code": "x", "docs": 0.5, "prose": 0.5})
    with pytest.raises(InputError, match="missing domain"):
        api.train(shared_cfg, tmp_path / "t", weights={"code": 1.0})
    with pytest.raises(InputError, match="--seeds"):
        api.recommend(shared_cfg, tmp_path / "r", {"u": "uniform", "n": "natural"}, seeds=1)
    with pytest.raises(InputError, match="--steps"):
        api.recommend(shared_cfg, tmp_path / "r", {"u": "uniform"}, seeds=2, steps=0)
    with pytest.raises(InputError, match="--candidates"):
        api.recommend(shared_cfg, tmp_path / "r", {}, seeds=2)
    with pytest.raises(InputError, match="candidates.x"):
        api.recommend(shared_cfg, tmp_path / "r", {"x": {"code": float("inf"), "docs": 0, "prose": 0}}, seeds=2)
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()


def test_infeasible_epoch_caps_say_which_bind(shared_cfg, tmp_path, cli):
    out = tmp_path / "o"
    rc, _, err = cli("optimize", shared_cfg, "--out", out, "-q", "--set", "mixer.max_epochs=1.0e-9",
                     "--set", "mixer.episodes=2", "--set", "mixer.probe_steps=1", "--set", "mixer.free_steps=1",
                     "--set", "mixer.eval_sequences=2", "--set", "mixer.warmup_steps=1")
    assert rc == 0, err
    w = json.loads((out / "weights.json").read_text())
    assert w["caps_feasible"] is False and sorted(w["caps_binding"]) == ["code", "docs", "prose"]


def test_every_export_format_reads_back_as_the_same_mixture(tmp_path, cli):
    """Export a weights.json in each format, read each back with the reader behind --weights: the same mixture."""
    from tandem.mixing.weights import read_weights_file

    names = ["code", "docs", "prose"]
    w = {"code": 0.5, "docs": 0.3, "prose": 0.2}
    src = tmp_path / "weights.json"
    src.write_text(json.dumps({"domain_weights": w, "rows_per_document": {"code": 2.0, "docs": 0.5, "prose": 1.0}}))
    for fmt, suffix, extra in (("megatron", ".txt", ["--prefix-template", "data/{domain}_text_document"]),
                               ("doremi", ".json", []), ("datasets", ".json", []), ("yaml", ".yaml", [])):
        out = tmp_path / f"w-{fmt}{suffix}"
        rc, _, err = cli("export", src, "--format", fmt, "--out", out, *extra)
        assert rc == 0, err
        back = read_weights_file(out, names)
        assert back == pytest.approx(w, abs=1e-9), fmt
    (tmp_path / "blend.txt").write_text("0.7 data/code_text_document 0.3 data/prose_text_document\n")
    assert read_weights_file(tmp_path / "blend.txt", names) == pytest.approx({"code": 0.7, "docs": 0.0, "prose": 0.3})


def test_no_output_is_written_over_an_input_file(tiny_cfg, tmp_path, cli):
    """--out of export, eval, report and init, and an OUT folder holding the config, are refused before writing."""
    w = tmp_path / "w.json"
    w.write_text(json.dumps({"domain_weights": {"code": 0.5, "docs": 0.25, "prose": 0.25}}))
    before = w.read_text()
    rc, _, err = cli("export", w, "--format", "megatron", "--out", w)
    assert "is the input" in one_line_refusal(rc, err) and w.read_text() == before
    cfg_copy = tiny_cfg
    text = cfg_copy.read_text()
    rc, _, err = cli("eval", cfg_copy, "--model", tmp_path / "nope", "--out", cfg_copy)
    assert "is the input" in one_line_refusal(rc, err) and cfg_copy.read_text() == text
    folder = _optimize_folder(tmp_path)
    rc, _, err = cli("report", folder, "--out", folder / "weights.json")
    assert "the report reads" in one_line_refusal(rc, err)
    rc, _, err = cli("train", cfg_copy, "--out", cfg_copy.parent, "--force", *FAST)
    assert "holds the input" in one_line_refusal(rc, err) and cfg_copy.read_text() == text
    src = tmp_path / "d.jsonl"
    src.write_text('{"text": "hello"}\n')
    rc, _, err = cli("init", src, "--out", src, "--force")
    assert "is the input" in one_line_refusal(rc, err) and src.read_text() == '{"text": "hello"}\n'
