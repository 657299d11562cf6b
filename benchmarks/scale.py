"""Scale benchmarks: `python -m benchmarks scale ddp|prepare [...]`.

ddp: tokens/s of `Learner.step` on 2 gloo ranks (torchrun, one thread each) with the current code, whose
  gradients are summed by DistributedDataParallel during the backward pass, against the code before it, which
  all-reduced them by hand after the backward pass. The old code is not kept in src/: it is exported from git
  history (`--old-rev`, default the last commit with the hand all-reduce) into a scratch folder and imported
  from there by the same worker; one process (no torchrun) of the current code is measured too. Sides
  alternate round by round (new, old, one, new, old, one, ...) so that the shared machine's drift hits all
  of them; the median round of each is reported.

prepare: MB/s, tokens/s, tokens per CPU-second and peak RSS of `tandem prepare` on a corpus of
  `--size-gb` GB (documents of data/default/*/train.jsonl repeated, each pass in a new seeded order, one jsonl
  under --scratch, deleted afterwards unless --keep), against `datasets.load_dataset("json")` followed by
  `Dataset.map` (batched, num_proc 1 and 2) with the same tokenizer (the default corpus's tokenizer.json, so
  no BPE training is timed). Peak RSS sums the process tree (map's workers included), sampled every 0.1 s.

Results: JSON under benchmarks/results/scale_*.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OLD_REV = "7a39c34"  # the last commit whose Learner all-reduced gradients by hand after the backward pass
TOKENIZER = REPO / "data" / "default" / ".cache" / "tokenizer.json"
MB = 1e6


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def _machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                         text=True).stdout.strip(),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# ---------------------------------------------------------------------------------------------- ddp


def worker(args) -> None:
    """One side of the ddp benchmark (run under torchrun or alone): warm-up, then timed `Learner.step`s on random
    tokens; rank 0 prints {"tokens_per_s": ...} (global tokens of the global batch per wall second)."""
    import torch

    from tandem.config import ModelConfig
    from tandem.data.sampler import Batch
    from tandem.models import build_model
    from tandem.training import distributed
    from tandem.training.learner import Learner, OptimConfig
    from tandem.training.loss import domain_token_counts, objective_coefficients

    torch.set_num_threads(1)
    distributed.init_from_env()
    learner = Learner(build_model(ModelConfig(preset=args.preset), 4096, args.seq_len, 0),
                      OptimConfig(lr=1e-3, total_steps=10**6), 4, torch.device("cpu"), precision="fp32")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4096, (args.batch_size, args.seq_len + 1), generator=g)
    domain = torch.arange(args.batch_size) % 4
    batch = Batch(x[:, :-1], x[:, 1:], domain)
    coef = objective_coefficients(domain_token_counts(batch.y, batch.domain, 4))
    for _ in range(args.warmup):
        learner.step([(batch, coef)])
    distributed.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        learner.step([(batch, coef)])
    distributed.barrier()
    wall = time.perf_counter() - t0
    if distributed.is_main():
        print(json.dumps({"tokens_per_s": args.steps * args.batch_size * args.seq_len / wall,
                          "ms_per_step": 1000 * wall / args.steps}))
    distributed.teardown()


def _old_source(rev: str, scratch: Path) -> Path:
    """src/ of `rev`, exported from git history (git archive) into scratch."""
    out = scratch / f"tandem_{rev}"
    if not (out / "src" / "tandem").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev, "src"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


def _side(src: Path, ranks: int, args) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
              if ranks > 1 else [sys.executable])
    opts = ["--preset", args.preset, "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
            "--warmup", str(args.warmup), "--steps", str(args.steps)]
    proc = subprocess.run([*launch, "-m", "benchmarks.scale", "--worker", *opts], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])


def bench_ddp(args) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="tandem_scale_"))
    try:
        sides = {"ddp (2 ranks)": (REPO / "src", 2), f"hand all-reduce, {args.old_rev} (2 ranks)":
                 (_old_source(args.old_rev, scratch), 2), "one process": (REPO / "src", 1)}
        rounds: dict[str, list[dict]] = {k: [] for k in sides}
        for r in range(args.rounds):
            for name, (src, ranks) in sides.items():
                rounds[name].append(_side(src, ranks, args))
                log(f"round {r + 1}/{args.rounds} {name}: {rounds[name][-1]['tokens_per_s']:,.0f} tokens/s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in rounds.items()}
    return {"machine": _machine(), "settings": {k: getattr(args, k) for k in
                                                ("preset", "batch_size", "seq_len", "warmup", "steps", "rounds",
                                                 "old_rev")},
            "rounds": rounds, "median_tokens_per_s": med}


# ---------------------------------------------------------------------------------------------- prepare


def build_corpus(path: Path, size_bytes: int, seed: int = 0) -> int:
    """A jsonl of about size_bytes: the default corpus's train documents repeated, each pass shuffled anew;
    returns its documents."""
    docs = []
    for f in sorted((REPO / "data" / "default").glob("*/train.jsonl")):
        docs += [line.rstrip("\n") for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    written = n = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size_bytes:
            rng.shuffle(docs)
            for line in docs:
                out.write(line + "\n")
                written += len(line.encode("utf-8")) + 1
                n += 1
                if written >= size_bytes:
                    break
    return n


class TreeSampler:
    """Peak of the summed RSS of a process and its descendants, sampled every 0.1 s."""

    def __init__(self, pid: int):
        import psutil

        self.root, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _measured(cmd: list[str], env: dict) -> dict:
    """Wall time, CPU time (the process and its waited-for children) and peak tree RSS of a command."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(p.pid)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    peak = sampler.stop()
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:4]}: {err[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": peak / MB, "stdout": out}


def _cpu(run) -> tuple[dict, float]:
    """run() with the CPU seconds our waited-for children used during it."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


_MAP = """
import json, sys, time
import datasets
from tokenizers import Tokenizer
path, cache, num_proc = sys.argv[1], sys.argv[2], int(sys.argv[3])
datasets.disable_progress_bars()
t0 = time.perf_counter()
ds = datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache)
t1 = time.perf_counter()
tok = Tokenizer.from_file(sys.argv[4])
eos = tok.token_to_id("<|endoftext|>")

def encode(batch):
    return {"ids": [e.ids + [eos] for e in tok.encode_batch(batch["text"], add_special_tokens=False)]}

ds = ds.map(encode, batched=True, batch_size=1000, num_proc=num_proc, remove_columns=ds.column_names)
t2 = time.perf_counter()
# Counted from the list offsets only: reading every id would page the whole memory-mapped result into RSS.
import pyarrow.compute as pc
tokens = sum(int(pc.sum(pc.list_value_length(chunk)).as_py() or 0) for chunk in ds.data.column("ids").chunks)
print(json.dumps({"load_s": t1 - t0, "map_s": t2 - t1, "tokens": tokens}))
"""


def _prepare_tandem(corpus: Path, scratch: Path) -> dict:
    import yaml

    cfg = scratch / "prepare.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"domains": {"corpus": {"train": str(corpus)}},
                                            "cache_dir": str(scratch / "tandem_cache")},
                                   "tokenizer": {"kind": "file", "path": str(TOKENIZER)}}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r, cpu = _cpu(lambda: _measured([sys.executable, "-m", "tandem", "prepare", str(cfg)], env))
    index = json.loads((scratch / "tandem_cache" / "index.json").read_text())
    tokens = sum(e["tokens"] for e in index["entries"].values())
    shutil.rmtree(scratch / "tandem_cache")
    return {"wall_s": r["wall_s"], "cpu_s": cpu, "peak_rss_mb": r["peak_rss_mb"], "tokens": tokens}


def _prepare_datasets(corpus: Path, scratch: Path, num_proc: int) -> dict:
    cache = scratch / "hf_cache"
    r, cpu = _cpu(lambda: _measured([sys.executable, "-c", _MAP, str(corpus), str(cache), str(num_proc),
                                     str(TOKENIZER)], {**os.environ, "HF_DATASETS_OFFLINE": "1"}))
    shutil.rmtree(cache, ignore_errors=True)
    inner = json.loads([ln for ln in r["stdout"].splitlines() if ln.startswith("{")][-1])
    return {"wall_s": r["wall_s"], "cpu_s": cpu, "peak_rss_mb": r["peak_rss_mb"], **inner}


def bench_prepare(args) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="tandem_prepare_", dir=args.scratch))
    corpus = scratch / f"corpus_{args.size_gb:g}gb.jsonl"
    try:
        t0 = time.perf_counter()
        docs = build_corpus(corpus, int(args.size_gb * 1e9))
        size = corpus.stat().st_size
        log(f"corpus: {size / MB:,.0f} MB, {docs:,} documents ({time.perf_counter() - t0:.0f} s to write)")
        runs = {"tandem prepare": _prepare_tandem(corpus, scratch)}
        log(f"tandem prepare: {runs['tandem prepare']}")
        for n in (n for n in args.num_proc if n > 0):
            runs[f"datasets.map num_proc={n}"] = _prepare_datasets(corpus, scratch, n)
            log(f"datasets.map num_proc={n}: {runs[f'datasets.map num_proc={n}']}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    for r in runs.values():
        r["mb_per_s"] = size / MB / r["wall_s"]
        r["tokens_per_s"] = r["tokens"] / r["wall_s"]
        r["tokens_per_cpu_s"] = r["tokens"] / r["cpu_s"]
    return {"machine": _machine(), "corpus_bytes": size, "documents": docs, "runs": runs}


def _table(res: dict) -> str:
    if "median_tokens_per_s" in res:
        rows = [f"{k:<40} {v:>12,.0f} tokens/s (median of {len(res['rounds'][k])})"
                for k, v in res["median_tokens_per_s"].items()]
        return "\n".join(rows)
    head = f"{'':<26} {'wall s':>8} {'MB/s':>7} {'tokens/s':>11} {'tok/CPU-s':>11} {'peak RSS MB':>12}"
    rows = [f"{k:<26} {r['wall_s']:>8.1f} {r['mb_per_s']:>7.2f} {r['tokens_per_s']:>11,.0f} "
            f"{r['tokens_per_cpu_s']:>11,.0f} {r['peak_rss_mb']:>12,.0f}" for k, r in res["runs"].items()]
    return "\n".join([head, *rows])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="bench", required=True)
    d = sub.add_parser("ddp", help="training step on 2 gloo ranks: DDP against the old hand all-reduce")
    d.add_argument("--preset", default="small", help="GPT preset (default small)")
    d.add_argument("--batch-size", type=int, default=16, help="global batch rows (default 16)")
    d.add_argument("--seq-len", type=int, default=256, help="tokens per row (default 256)")
    d.add_argument("--warmup", type=int, default=3, help="untimed steps per side and round (default 3)")
    d.add_argument("--steps", type=int, default=20, help="timed steps per side and round (default 20)")
    d.add_argument("--rounds", type=int, default=3, help="rounds of every side (default 3)")
    d.add_argument("--old-rev", default=OLD_REV, help=f"git revision of the hand all-reduce (default {OLD_REV})")
    d.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale_ddp.json")
    q = sub.add_parser("prepare", help="`tandem prepare` throughput and memory against datasets.map")
    q.add_argument("--size-gb", type=float, default=1.0, help="corpus size in GB (default 1)")
    q.add_argument("--num-proc", type=int, action="append",
                   help="datasets.map num_proc (repeatable; default 1, 2; 0 alone: tandem prepare only)")
    q.add_argument("--scratch", default="/tmp", help="folder for the corpus and caches (default /tmp)")
    q.add_argument("--keep", action="store_true", help="keep the corpus and caches")
    q.add_argument("--out", type=Path, default=None,
                   help="results JSON (default benchmarks/results/scale_prepare_<size>gb.json)")
    args = p.parse_args(argv)
    for k in ("batch_size", "seq_len", "steps", "rounds", "size_gb"):
        if getattr(args, k, 1) <= 0:
            p.error(f"--{k.replace('_', '-')} must be > 0")
    if args.bench == "ddp":
        res = bench_ddp(args)
    elif not TOKENIZER.is_file():
        print(f"error: {TOKENIZER} not found: run `tandem prepare configs/default.yaml` first", file=sys.stderr)
        return 2
    else:
        args.num_proc = args.num_proc or [1, 2]
        args.out = args.out or REPO / "benchmarks" / "results" / f"scale_prepare_{args.size_gb:g}gb.json"
        res = bench_prepare(args)
    _write_json(args.out, res)
    print(_table(res))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        w = argparse.ArgumentParser()
        w.add_argument("--worker", action="store_true")
        for k in ("--batch-size", "--seq-len", "--warmup", "--steps"):
            w.add_argument(k, type=int)
        w.add_argument("--preset")
        worker(w.parse_args())
    else:
        sys.exit(main(sys.argv[1:]))
