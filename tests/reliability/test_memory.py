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
