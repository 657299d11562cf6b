"""Safe files and no network: a whole `tandem run` with sockets blocked, safetensors models, checkpoints that
load with weights_only=True (a hostile pickle is refused), no trust_remote_code, and damaged checkpoints reported
with a fall-back to the previous good one."""

from __future__ import annotations

import ast
import json
import pickle
import socket
from pathlib import Path

import pytest
import torch

import tandem
from tandem.errors import InputError
from tandem.training.checkpoint import load_checkpoint, save_checkpoint

SRC = Path(tandem.__file__).parent
LLAMA = ("model.hf_config={model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, "
         "num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128}")


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to reach another host raises, and is recorded (a library might swallow the error)."""
    attempts = []

    def refuse(what):
        def blocked(*args, **kwargs):
            attempts.append((what, args[:2]))
            raise OSError(f"network blocked in this test ({what})")
        return blocked

    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            return refuse("connect")(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, a: refuse("connect_ex")(a))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return attempts


def test_full_run_with_the_network_blocked(shared_cfg, tmp_path, cli, no_network):
    out = tmp_path / "run"
    rc, stdout, err = cli("run", shared_cfg, "--out", out, "-q",
                          "--set", "train.steps=4", "--set", "train.device=cpu", "--set", "eval.max_tokens=512",
                          "--set", "mixer.episodes=2", "--set", "mixer.probe_steps=1", "--set", "mixer.free_steps=1",
                          "--set", "mixer.eval_sequences=2", "--set", "model.preset=hf", "--set", LLAMA)
    assert rc == 0, err
    assert no_network == []
    for folder in (out, out / "baseline-uniform"):
        ev = json.loads((folder / "eval.json").read_text())
        assert set(ev["test_loss"]["per_domain"]) == {"code", "docs", "prose"}
        if "same_as" in ev:  # the learned mixture is uniform: the baseline is that same training, not repeated
            continue
        files = {p.name for p in (folder / "model").iterdir()}
        assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    rc, _, err = cli("eval", shared_cfg, "--model", out / "model", "--out", tmp_path / "e.json", "-q",
                     "--set", "model.preset=hf", "--set", LLAMA, "--set", "eval.max_tokens=512")
    assert rc == 0, err
    assert no_network == []


def _calls(name: str):
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if called == name:
                    yield path, node


def test_sources_load_only_safe_formats():
    loads = list(_calls("load"))
    torch_loads = [(p, n) for p, n in loads if isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", "") == "torch"]
    assert torch_loads, "the checkpoint loader uses torch.load"
    for path, node in torch_loads:
        kw = {k.arg: k.value for k in node.keywords}
        assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, (path, node.lineno)
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, (path, node.value.lineno)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle":
                assert node.attr not in ("load", "loads"), (path, node.lineno)


# ---------------------------------------------------------------- checkpoints


def _save(d: Path, value: float, step: int) -> None:
    m = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(m.weight, value)
    save_checkpoint(d, {"model": m}, {"rng": torch.get_rng_state()}, {"step": step})


def _load(d: Path):
    m = torch.nn.Linear(3, 2)
    notes = []
    got = load_checkpoint(d, {"model": m}, ["rng"], log=notes.append)
    return got, m, notes


class Hostile:
    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


@pytest.mark.parametrize("damage", ["truncated model", "garbage state", "missing marker", "hostile pickle"])
def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    d = tmp_path / "checkpoint"
    _save(d, 1.0, step=1)
    _save(d, 2.0, step=2)
    assert not (tmp_path / "checkpoint.prev").exists()  # a completed save removes the previous folder
    # a kill after the new folder is renamed into place, before the previous one is removed, leaves both
    _save(tmp_path / "checkpoint.prev", 1.0, step=1)

    if damage == "truncated model":
        f = d / "model.safetensors"
        f.write_bytes(f.read_bytes()[:40])
    elif damage == "garbage state":
        (d / "state.json").write_text('{"step": 2, "sam')
    elif damage == "missing marker":
        (d / "COMPLETE").unlink()
    else:
        (d / "rng.pt").write_bytes(pickle.dumps(Hostile()))
    (tensors, state), m, notes = _load(d)
    assert state == {"step": 1} and bool((m.weight == 1.0).all())
    assert len(notes) == 1 and str(d) in notes[0] and "trying an older one" in notes[0]


def test_no_loadable_checkpoint_is_one_clear_error(tmp_path, capsys):
    d = tmp_path / "checkpoint"
    _save(d, 1.0, step=1)
    (d / "rng.pt").write_bytes(pickle.dumps(Hostile()))
    with pytest.raises(InputError, match="no loadable checkpoint") as err:
        _load(d)
    assert "\n" not in str(err.value) and "code ran" not in capsys.readouterr().out
    assert _load(tmp_path / "none")[0] is None  # no checkpoint at all: start from the beginning


def test_a_save_killed_before_its_rename_leaves_the_old_checkpoint(tmp_path):
    d = tmp_path / "checkpoint"
    _save(d, 1.0, step=1)
    tmp = tmp_path / "checkpoint.tmp"  # what a kill during the next save leaves: a partial folder, no marker
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"\0" * 10)
    (_, state), m, notes = _load(d)
    assert state == {"step": 1} and notes == []
    _save(d, 3.0, step=3)  # the next save replaces the leftover
    assert not tmp.exists() and _load(d)[0][1] == {"step": 3}
