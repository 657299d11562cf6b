"""Memory is bounded by the batch and the model, not by the corpus: token files are read through memory maps.

One domain's train split is grown to 2 GiB of tokens (a sparse file: no disk is used) and `tandem train` runs in a
subprocess whose private data segment is capped (RLIMIT_DATA) below the corpus size; its peak resident memory,
read with wait4, must stay far below the corpus.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

from conftest import tiny_config
from tandem.config import load_config
from tandem.data.cache import prepare_data

GIB = 2**30


def test_training_on_a_corpus_larger_than_the_memory_cap(tmp_path):
    path = tiny_config(tmp_path, train={"steps": 3, "device": "cpu", "threads": 1, "log_interval": 1},
                       eval={"max_tokens": 512})
    data = prepare_data(load_config(path))
    index_path = data.cache_dir / "index.json"
    index = json.loads(index_path.read_text())
    entry = index["entries"]["prose/train"]
    assert entry["dtype"] == "uint16"
    tokens = GIB  # 2 GiB of uint16 tokens
    os.truncate(data.cache_dir / entry["file"], tokens * 2)  # sparse: the real tokens, then zeros
    entry["tokens"] = tokens
    index_path.write_text(json.dumps(index))
    corpus_bytes = tokens * 2

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (corpus_bytes // 2, corpus_bytes // 2))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    p = subprocess.Popen([sys.executable, "-m", "tandem", "train", str(path), "--out", str(tmp_path / "run"),
                          "--weights", "natural", "-q"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, preexec_fn=cap)
    err = p.stderr.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, err[-2000:]
    peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    assert peak < corpus_bytes / 2, f"peak RSS {peak / GIB:.2f} GiB for a {corpus_bytes / GIB:.0f} GiB corpus"
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    # natural weights put nearly all of the batch on the huge domain, so it was really sampled from
    assert ev["weights"]["prose"] > 0.99 and ev["tokens_seen"]["prose"] > 0
    assert ev["epochs"]["prose"] < 1e-5


# `tandem prepare` in a subprocess that reports its address-space peak (VmPeak) when done.
_PREPARE = """
import sys
from tandem.cli.main import main
rc = main(sys.argv[1:])
print("VmPeak", *[line.split()[1] for line in open("/proc/self/status") if line.startswith("VmPeak:")], file=sys.stderr)
sys.exit(rc)
"""
HEADROOM = 3 * 2**20  # address space allowed beyond what preparing a tiny corpus needs


def _prepare(config, limit: int | None = None) -> tuple[int, int, str]:
    """(exit code, VmPeak in bytes, stderr) of `tandem prepare config`, its address space capped at `limit`."""
    # glibc reserves 64 MiB of address space per malloc arena, and how many arenas threads get varies from run to
    # run; fixing their number makes the baseline repeatable (reserved space, not memory).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONWARNINGS": "ignore"}
    cap = (lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))) if limit else None
    p = subprocess.run([sys.executable, "-c", _PREPARE, "prepare", str(config)], env=env, preexec_fn=cap,
                       capture_output=True, text=True, timeout=300)
    peak = [int(line.split()[1]) * 1024 for line in p.stderr.splitlines() if line.startswith("VmPeak ")]
    return p.returncode, (peak[0] if peak else -1), p.stderr


def _corpus_config(root, tokenizer, documents: list[str], size: int):
    """A one-domain config over a jsonl of about `size` bytes: `documents` repeated, each pass in a new order."""
    import random

    import yaml

    rng, written, lines = random.Random(0), 0, 0
    path = root / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            rng.shuffle(documents)
            for d in documents:
                line = json.dumps({"text": d}) + "\n"
                f.write(line)
                written, lines = written + len(line.encode()), lines + 1
                if written >= size:
                    break
    cfg = root / "config.yaml"
    data = {"domains": {"corpus": {"train": str(path)}}, "cache_dir": str(root / "cache")}
    cfg.write_text(yaml.safe_dump({"data": data, "tokenizer": {"kind": "file", "path": str(tokenizer)}}))
    return cfg, path.stat().st_size, lines


def test_prepare_of_a_corpus_larger_than_the_address_space_cap(tmp_path):
    """Tokenizing streams the corpus: with the address space capped at what a tiny corpus needs plus HEADROOM,
    a corpus four times HEADROOM and more is prepared whole (a command that held the corpus in memory would fail).
    The cap is relative: importing torch alone maps hundreds of MiB."""
    from conftest import make_domains

    small = tiny_config(tmp_path / "tok")
    tokenizer = prepare_data(load_config(small)).cache_dir / "tokenizer.json"  # a BPE trained on the tiny domains
    documents = [d for docs in make_domains(tmp_path).values() for d in docs]
    (tmp_path / "tiny").mkdir()
    (tmp_path / "big").mkdir()
    tiny, _, _ = _corpus_config(tmp_path / "tiny", tokenizer, documents, 200_000)
    rc, baseline, err = _prepare(tiny)
    assert rc == 0 and baseline > 0, err[-2000:]
    big, size, lines = _corpus_config(tmp_path / "big", tokenizer, documents, 4 * HEADROOM + 2**20)
    assert size > 4 * HEADROOM
    rc, peak, err = _prepare(big, limit=baseline + HEADROOM)
    assert rc == 0, err[-2000:]
    assert peak <= baseline + HEADROOM
    entry = json.loads((tmp_path / "big" / "cache" / "index.json").read_text())["entries"]["corpus/train"]
    assert entry["documents"] == lines  # every document was tokenized
    assert entry["tokens"] * 2 > size / 4  # (a few bytes of text per token)
