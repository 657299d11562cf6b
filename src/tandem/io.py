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


# What a writer library says when the disk is full or a file size limit is hit: safetensors names the OS error,
# torch.save's zip writer only notices that fewer bytes landed than it wrote.
_STORAGE_SIGNS = {"No space left": "no space left on device", "File too large": "file too large (a file size limit)",
                  "Read-only file system": "read-only file system", "Permission denied": "permission denied",
                  "Disk quota exceeded": "disk quota exceeded", "unexpected pos": "the write was cut short (disk full "
                  "or a file size limit)", "I/O error": "I/O error"}


def storage_reason(err: BaseException) -> str | None:
    """Why a write failed, when it failed for lack of storage (or permission), else None (a bug, re-raised)."""
    if isinstance(err, OSError) and err.errno is not None:
        return err.strerror or os.strerror(err.errno)
    text = str(err)
    for sign, reason in _STORAGE_SIGNS.items():
        if sign in text:
            return reason
    return None


@contextmanager
def storage_errors(where: str | os.PathLike, cleanup=None) -> Iterator[None]:
    """Around a write by a library (safetensors, torch.save, matplotlib): a full disk, a file size limit or a
    read-only folder becomes one InputError naming `where`, after `cleanup()` removes the partial write."""
    from tandem.errors import InputError

    try:
        yield
    except InputError:
        if cleanup is not None:
            cleanup()
        raise
    except Exception as err:
        reason = storage_reason(err)
        if cleanup is not None:
            cleanup()
        if reason is None:
            raise
        raise InputError(f"{where}: cannot write ({reason})") from None


def chmod_like_open(path: str | os.PathLike) -> None:
    """Give a file written by a library that makes it 0600 the mode a plain open() would (the umask's)."""
    os.chmod(path, 0o666 & ~_umask())


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
    """The records of a JSON-lines log (metrics.jsonl, a search's points): a line that does not decode or parse (a
    torn last line of a killed writer, bytes that are not text) is skipped, as is a missing file."""
    out = []
    path = Path(path)
    if path.is_file():
        for raw in path.read_bytes().splitlines():
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one line; a log, so a torn last line on kill is acceptable and skipped by readers."""
    if not _writes():
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def real_path(p: str | os.PathLike) -> Path:
    """The path with symlinks resolved, as far as they resolve (a symlink loop is left as it is, not an exception)."""
    return Path(os.path.realpath(p))


def _within(path, folder) -> bool:
    """`path` is `folder` or lies inside it, symlinks resolved."""
    p, f = real_path(Path(path).expanduser()), real_path(Path(folder).expanduser())
    return p == f or f in p.parents


def refuse_overlap(out: str | os.PathLike, inputs, what: str = "--out") -> None:
    """Inputs are read-only: an output folder that is, or holds, an input (a data source, the config's tokenizer or
    model) is refused before anything is written; `--force` would otherwise delete it, and a run could write over
    it."""
    from tandem.errors import InputError

    for p in inputs:
        if _within(p, out):
            raise InputError(f"{what} {out}: holds the input {p}; tandem never writes where its inputs are, so "
                             f"choose another {what}")


def refuse_input_file(out: str | os.PathLike, inputs, what: str = "--out") -> None:
    """An output file that is one of the inputs, or inside an input folder, is refused before anything is written."""
    from tandem.errors import InputError

    for p in inputs:
        if _within(out, p):
            same = real_path(Path(out).expanduser()) == real_path(p)
            raise InputError(f"{what} {out}: {'is' if same else 'lies inside'} the input {p}; tandem never writes "
                             f"over its inputs, so choose another {what}")


def refuse_targets(targets, inputs, what: str) -> None:
    """No file tandem is about to write (the token cache's shards and index) is one of the inputs."""
    from tandem.errors import InputError

    given = {real_path(p): p for p in inputs}
    for t in targets:
        r = real_path(t)
        if r in given:
            raise InputError(f"{what}: would write {t}, which is the input {given[r]}; choose another {what}")


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
