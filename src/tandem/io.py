"""Atomic file output: write to a temporary file beside the target, then rename.

A killed run therefore leaves either the previous file or the new one, never a truncated one.
Under torchrun only rank 0 writes: on other ranks the writers here do nothing (and `atomic_path`
hands out a scratch file that is thrown away), so every caller is rank-safe without checks of its own.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _writes() -> bool:
    from tandem.training.distributed import is_main

    return is_main()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path` atomically."""
    path = Path(path)
    if not _writes():
        with tempfile.TemporaryDirectory(prefix="tandem-rank-") as scratch:
            yield Path(scratch) / path.name
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file 0600; give it the mode a plain open() would, so teammates can read the outputs.
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    if not _writes():
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines log (metrics.jsonl, a search's points); a torn last line (a killed writer) and
    a missing file give what there is."""
    out = []
    path = Path(path)
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one line; a log, so a torn last line on kill is acceptable and skipped by readers."""
    if not _writes():
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Fail early (before any work) if `path` cannot be created or written."""
    from tandem.errors import InputError

    path = Path(path)
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{what} {path}: {probe} exists and is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: not writable")
    return path


def check_writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Fail early (before any work) if `path` cannot be written as a file: an existing folder there, or a folder
    above it that cannot be created or written."""
    from tandem.errors import InputError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path}: is a folder; expected a file name")
    check_writable_dir(path.parent, f"{what}'s folder")
    return path
