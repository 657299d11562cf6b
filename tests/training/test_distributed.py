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
    "mixer.valid_fraction=0.1", "train.steps=8", "train.log_interval=4", "train.eval_interval=4",
]
# Per mode: data parallel with 3-row micro-batches (4 local rows split unevenly); FSDP with whole local batches.
MODES = {"ddp": ["train.micro_batch_size=3"], "fsdp": ["train.fsdp=true"]}


def _sets(extra: list[str] = ()) -> list[str]:
    return [a for s in [*SETTINGS, *extra] for a in ("--set", s)]


def _launch(*argv: str, program: tuple[str, ...] = ("-m", "tandem")) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *program, *argv]
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
        "train_loss": [m["loss"] for m in metrics if "loss" in m],
        "valid_loss": [m["valid_loss"] for m in metrics if "valid_loss" in m],  # periodic, split across ranks
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
    assert len(two["valid_loss"]) == len(one_rank["valid_loss"]) == 2
    for a, b in zip(two["valid_loss"], one_rank["valid_loss"]):
        assert [a[d] for d in names] == pytest.approx([b[d] for d in names], abs=1e-5)
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


# ---------------------------------------------------------------- sharded checkpoints and faults under FSDP

# Stage two alone, sharded; a checkpoint every 4 steps. The killed run dies after step 6: its newest checkpoint is
# step 4's, written by both ranks through DCP.
TRAIN = ["train.steps=8", "train.checkpoint_interval=4", "train.log_interval=2", "train.fsdp=true"]
KILLED_AFTER = 6
KILLER = Path(__file__).with_name("killed_after_step.py")


def _train_argv(cfg: Path, out: Path, extra: list[str] = ()) -> list[str]:
    return ["train", str(cfg), "--out", str(out), "--weights", "natural", "-q",
            *(a for s in [*TRAIN, *extra] for a in ("--set", s))]


def _model(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(out / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(shared_cfg, tmp_path_factory):
    from tandem.cli.main import main

    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(_train_argv(shared_cfg, out)) == 0
    return out


@pytest.fixture(scope="module")
def killed(shared_cfg, tmp_path_factory):
    """A run killed after step 6, by the number of ranks that ran it (2: a DCP checkpoint; 1: safetensors)."""
    runs = {}

    def on(ranks: int) -> Path:
        if ranks not in runs:
            out = tmp_path_factory.mktemp(f"killed{ranks}") / "run"
            argv = [str(KILLED_AFTER), *_train_argv(shared_cfg, out)]
            if ranks == 2:
                proc = _launch(*argv, program=(str(KILLER),))
                assert proc.returncode != 0 and "exitcode  : 75" in proc.stderr, proc.stderr[-3000:]
            else:
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                proc = subprocess.run([sys.executable, str(KILLER), *argv], env=env, capture_output=True, text=True,
                                      timeout=180)
                assert proc.returncode == 75, proc.stderr[-3000:]
            assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 4
            assert (out / "checkpoint" / ".metadata").is_file() == (ranks == 2) and not (out / "model").exists()
            runs[ranks] = out
        return runs[ranks]

    return on


@pytest.mark.parametrize(("written", "resumed"), [(2, 1), (2, 2), (1, 2)])
def test_checkpoint_resumes_on_another_number_of_ranks(written, resumed, killed, uninterrupted, shared_cfg, tmp_path):
    """A sharded (DCP) checkpoint of 2 ranks resumes on 1 or 2; a one-process checkpoint resumes on 2 sharded ranks;
    each to the uninterrupted run's model and log."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(killed(written), out)
    argv = [*_train_argv(shared_cfg, out), "--resume"]
    if resumed == 1:
        from tandem.cli.main import main

        assert main(argv) == 0
    else:
        proc = _launch(*argv)
        assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _model(out), _model(uninterrupted)
    assert set(got) == set(want)
    for k in want:
        assert torch.allclose(got[k], want[k], rtol=0, atol=1e-5), k
    # the log is the uninterrupted one: steps 6 and 8 retaken after the checkpoint of step 4, none twice
    losses = lambda o: [(r["step"], r["loss"]) for r in map(json.loads, (o / "metrics.jsonl").read_text().splitlines())
                        if "loss" in r]  # noqa: E731
    assert [s for s, _ in losses(out)] == [s for s, _ in losses(uninterrupted)] == [2, 4, 6, 8]
    assert [v for _, v in losses(out)] == pytest.approx([v for _, v in losses(uninterrupted)], abs=1e-5)


def test_nonfinite_gradient_under_fsdp_is_refused_like_one_process(shared_cfg, tmp_path, cli):
    """A step whose gradient is NaN is refused on every rank before anything moves, with the one-process message,
    and the checkpoint saved is the last good step's."""
    blow_up = ["train.lr=1e30", "train.log_interval=1"]  # the first update blows the weights up
    one, two = tmp_path / "one", tmp_path / "two"
    rc, _, err = cli(*_train_argv(shared_cfg, one, blow_up))
    proc = _launch(*_train_argv(shared_cfg, two, blow_up))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert rc == proc.returncode == 1, proc.stderr[-3000:]
    assert errors == [err.strip().replace(str(one), str(two))]
    assert "non-finite gradient in the model at step 2" in errors[0] and "checkpoint of step 1" in errors[0]
    for out in (one, two):
        assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 1
        assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()] == [1]
        assert not (out / "model").exists()
    from safetensors.torch import load_file

    kept = _dcp_tensors(two / "checkpoint", tmp_path)["model"]
    want = load_file(one / "checkpoint" / "model.safetensors")
    assert set(want) <= set(kept)  # safetensors keeps one name of the tied embedding, DCP both
    for k, v in want.items():  # finite: the refused update was not applied
        # One good step at lr 1e30 puts each weight near +-lr (AdamW's first step is about the gradient's sign);
        # where a gradient is near AdamW's eps, float order moves it by up to about 1%.
        assert bool(torch.isfinite(kept[k]).all()) and torch.allclose(kept[k], v, rtol=0.05, atol=0), k


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


@pytest.mark.parametrize("equal_count", [False, True])
def test_ranks_share_the_evaluation_batches(monkeypatch, equal_count):
    """Each batch is scored by one rank; a sharded model's ranks forward equally often (None: an empty batch)."""
    shares = []
    for r in (0, 1):
        monkeypatch.setattr(distributed, "world_size", lambda: 2)
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shares.append(distributed.share(list("abcde"), equal_count=equal_count))
    assert shares == ([["a", "c", "e"], ["b", "d", None]] if equal_count else [["a", "c", "e"], ["b", "d"]])


def test_one_process_imports_no_distributed_machinery(tmp_path):
    """A learner with fsdp asked for, its step, checkpoint and resume in one process import no distributed module
    beyond those that importing torch and tandem and building an optimizer already brought."""
    code = f"""
import sys, torch
from tandem.config import ModelConfig
from tandem.data.sampler import Batch
from tandem.models import build_model
from tandem.training.checkpoint import load_learners, save_learners
from tandem.training.learner import Learner, OptimConfig
torch.optim.AdamW(torch.nn.Linear(1, 1).parameters(), foreach=True)  # (torch's optimizers import some on their own)
before = set(sys.modules)
learner = Learner(build_model(ModelConfig(preset="tiny"), 256, 16, 0), OptimConfig(lr=1e-3, total_steps=2), 2,
                  torch.device("cpu"), fsdp=True)
x = torch.randint(0, 256, (4, 17))
learner.step([(Batch(x[:, :-1], x[:, 1:], torch.tensor([0, 0, 1, 1])), torch.full((2,), 0.01))])
save_learners({str(tmp_path / 'ckpt')!r}, {{"model": (learner, "optimizer")}}, torch.get_rng_state(), {{"step": 1}})
assert load_learners({str(tmp_path / 'ckpt')!r}, {{"model": (learner, "optimizer")}}) is not None
print(sorted(m for m in set(sys.modules) - before if m.startswith(("torch.distributed", "torch.nn.parallel"))))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()  # the one-process format


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
