"""Checkpoints as folders swapped in atomically: model (safetensors), optimizer and RNG (torch, loaded with
weights_only=True) and JSON state. A checkpoint folder is complete or absent; the previous one is kept as
`<name>.prev` until the new one is in place, and used if the newest fails to load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from tandem.errors import InputError
from tandem.io import write_json


def _discard(d: Path) -> None:
    """Remove a checkpoint folder without ever leaving it half-deleted under its own name (a kill during rmtree
    would leave a `.prev` without its files): rename it aside, then delete."""
    if not d.exists():
        return
    aside = d.with_name(d.name + ".old")
    if aside.exists():
        shutil.rmtree(aside)
    d.rename(aside)
    shutil.rmtree(aside)


def save_checkpoint(ckpt_dir: Path, models: dict[str, torch.nn.Module], tensors: dict[str, object], state: dict) -> None:
    """models: saved as safetensors; tensors: name -> object saved with torch.save (optimizer states, RNG
    states); state: JSON-able dict."""
    from safetensors.torch import save_model
    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    prev = ckpt_dir.with_name(ckpt_dir.name + ".prev")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, m in models.items():
        save_model(getattr(m, "_orig_mod", m), str(tmp / f"{name}.safetensors"))
    for name, obj in tensors.items():
        torch.save(obj, tmp / f"{name}.pt")
    write_json(tmp / "state.json", state)
    (tmp / "COMPLETE").write_text("ok\n")
    if ckpt_dir.exists():
        _discard(prev)
        ckpt_dir.rename(prev)
    tmp.rename(ckpt_dir)
    _discard(prev)


def _load_one(d: Path, models: dict[str, torch.nn.Module], names: list[str]) -> tuple[dict, dict]:
    from safetensors.torch import load_model

    if not (d / "COMPLETE").is_file():
        raise ValueError("incomplete")
    for name, m in models.items():
        load_model(getattr(m, "_orig_mod", m), str(d / f"{name}.safetensors"))
    state = json.loads((d / "state.json").read_text())
    tensors = {n: torch.load(d / f"{n}.pt", map_location="cpu", weights_only=True) for n in names}
    return tensors, state


def load_checkpoint(ckpt_dir: Path, models: dict[str, torch.nn.Module], names: list[str], log=print) -> tuple[dict, dict] | None:
    """Fill `models` from the newest loadable checkpoint (falling back to `.prev`) and return
    (tensors, state), or None if there is no checkpoint."""
    ckpt_dir = Path(ckpt_dir)
    candidates = [ckpt_dir, ckpt_dir.with_name(ckpt_dir.name + ".prev")]
    errors = []
    for d in candidates:
        if not d.exists():
            continue
        try:
            return _load_one(d, models, names)
        except Exception as err:  # corrupt pickle, truncated file, bad JSON: try the older one
            errors.append(f"{d}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            log(f"warning: checkpoint {d} cannot be loaded ({errors[-1]}); trying an older one")
    if errors:
        raise InputError(f"no loadable checkpoint in {ckpt_dir.parent}: " + "; ".join(errors))
    return None
