"""Data parallelism under torchrun: two CPU ranks (gloo) give the results of one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tandem.data.sampler import Batch
from tandem.training import distributed

# Small enough to run in seconds, shaped so that ranks get unequal rows: the validation part has one row (rank 1
# gets none), the reference's train part 7 (4 and 3), the last held batch one.
SETTINGS = [
    "mixer.episodes=2", "mixer.probe_steps=2", "mixer.free_steps=1", "mixer.eval_sequences=3",
    "mixer.valid_fraction=0.1", "train.steps=8", "train.log_interval=4",
]
# Per mode: data parallel with 3-row micro-batches (4 local rows split unevenly); FSDP with whole local batches.
MODES = {"ddp": ["train.micro_batch_size=3"], "fsdp": ["train.fsdp=true"]}


def _sets(extra: list[str] = ()) -> list[str]:
    return [a for s in [*SETTINGS, *extra] for a in ("--set", s)]


def _launch(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "tandem", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def _torchrun(cfg: Path, out: Path, extra: list[str] = ()) -> subprocess.CompletedProcess:
    proc = _launch("run", str(cfg), "--out", str(out), "--baseline", "", "-q", *_sets(extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _results(out: Path) -> dict:
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    episodes = [json.loads(line) for line in (out / "optimize" / "metrics.jsonl").read_text().splitlines()]
    return {
        "weights": json.loads((out / "weights.json").read_text())["domain_weights"],
        "train_loss": [m["loss"] for m in metrics],
        "test_loss": json.loads((out / "eval.json").read_text())["test_loss"]["per_domain"],
        "episodes": episodes,
    }


@pytest.fixture(scope="module")
def one_rank(shared_cfg, tmp_path_factory):
    """`tandem run` in one process (this also fills the shared token cache the ranks then read)."""
    from tandem.cli.main import main

    out = tmp_path_factory.mktemp("one") / "run"
    assert main(["run", str(shared_cfg), "--out", str(out), "--baseline", "", "-q", *_sets()]) == 0
    return _results(out)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_two_ranks_equal_one_rank(mode, one_rank, shared_cfg, tmp_path):
    out = tmp_path / "run"
    proc = _torchrun(shared_cfg, out, MODES[mode])
    two = _results(out)
    names = list(one_rank["weights"])
    for d in names:
        assert two["weights"][d] == pytest.approx(one_rank["weights"][d], abs=1e-5)
        assert two["test_loss"][d] == pytest.approx(one_rank["test_loss"][d], abs=1e-5)
    # Every record of both stages, not just the last: per-domain losses are all-reduced before they are formed.
    assert len(two["train_loss"]) == len(one_rank["train_loss"]) == 2
    assert two["train_loss"] == pytest.approx(one_rank["train_loss"], abs=1e-5)
    assert len(two["episodes"]) == len(one_rank["episodes"]) == 2
    for a, b in zip(two["episodes"], one_rank["episodes"]):
        for key in ("alpha", "delta", "proxy_loss", "reference_loss"):
            assert [a[key][d] for d in names] == pytest.approx([b[key][d] for d in names], abs=1e-5)
    # One writer: one printed summary, no scratch files left beside the outputs.
    assert proc.stdout.count("wrote ") == 1
    # (OUT/.lock is the folder's lock file, kept: tandem.runs; checkpoint/.metadata is DCP's index)
    assert not [p for p in out.rglob("*") if p.name not in (".lock", ".metadata")
                and (p.name.startswith(".") or p.name.endswith(".tmp"))]
    # The saved model holds whole tensors, gathered from the shards under FSDP; the checkpoint, written by every
    # rank through DCP, holds the same values.
    ckpt = _dcp_tensors(out / "checkpoint", tmp_path)
    from safetensors.torch import load_file

    from tandem.models.gpt import GPTConfig
    from tandem.models.hf_export import from_gpt2

    gpt = json.loads((out / "model" / "tandem_model.json").read_text())["config"]
    saved = from_gpt2(load_file(out / "model" / "model.safetensors"), GPTConfig(**gpt), "model")  # GPT-2 layout
    assert set(ckpt["model"]) <= set(saved) and "wte.weight" in ckpt["model"]
    assert all(torch.equal(saved[k], v) for k, v in ckpt["model"].items())
    assert tuple(saved["wte.weight"].shape) == (gpt["vocab_size"], gpt["n_embd"])
    twins = _dcp_tensors(out / "optimize" / "checkpoint", tmp_path)
    assert {"proxy", "reference", "proxy_opt", "reference_opt", "rng"} <= set(twins)


def _dcp_tensors(folder: Path, scratch: Path) -> dict:
    """A DCP checkpoint folder as one whole state dict (DCP's own converter)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    assert (folder / ".metadata").is_file() and (folder / "COMPLETE").is_file()
    whole = scratch / f"{folder.parent.name}_{folder.name}.pt"
    dcp_to_torch_save(folder, whole)
    return torch.load(whole, weights_only=False)


def test_bad_input_under_torchrun_says_it_once(shared_cfg, tmp_path):
    out = tmp_path / "bad"
    proc = _launch("train", str(shared_cfg), "--out", str(out), "--set", "train.stpes=3")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.stpes" in errors[0]
    assert not out.exists()


def test_one_process_is_untouched():
    """Without torchrun's environment nothing is sharded and every writer writes."""
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    b = Batch(torch.arange(10).view(5, 2), torch.arange(10).view(5, 2), torch.tensor([0, 0, 1, 2, 2]))
    assert distributed.local_rows(b) is b
    parts = distributed.micro_batches(b, len(b), 2, equal_count=True)
    assert [len(p) for p in parts] == [2, 2, 1]
    assert torch.equal(torch.cat([p.domain for p in parts]), b.domain)
    with distributed.main_first():
        pass


# The GPU path's switches, exercised on the CPU: bf16 autocast and torch.compile change speed, not the objective.


def _learners(**kw):
    from tandem.config import ModelConfig
    from tandem.models import build_model
    from tandem.training.learner import Learner, OptimConfig

    oc = OptimConfig(lr=1e-3, total_steps=10)
    model = build_model(ModelConfig(preset="tiny"), 256, 32, 0)
    return Learner(model, oc, 3, torch.device("cpu"), **kw)


def _steps(learner, n: int = 3) -> list[float]:
    from tandem.training.loss import domain_token_counts, objective_coefficients

    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randint(0, 256, (6, 33), generator=g)
        b = Batch(x[:, :-1], x[:, 1:], torch.tensor([0, 0, 1, 1, 2, 2]))
        out.append(learner.step([(b, objective_coefficients(domain_token_counts(b.y, b.domain, 3)))]).mean())
    return out


def test_bf16_autocast_trains_the_same_objective():
    fp32, bf16 = _steps(_learners(precision="fp32")), _steps(_learners(precision="bf16"))
    assert fp32 == pytest.approx(bf16, abs=0.05)  # bf16 rounding, same objective
    assert fp32 != bf16  # the autocast branch really ran


@pytest.mark.slow
def test_compiled_model_gives_eager_losses():
    eager, compiled = _learners(), _learners(compile=True)
    assert compiled.model is not compiled.module
    assert _steps(compiled) == pytest.approx(_steps(eager), abs=1e-5)
