"""Checkpoints as folders swapped in atomically. A checkpoint folder is complete or absent; the previous one is kept
as `<name>.prev` until the new one is in place, and used if the newest fails to load.

One process writes model (safetensors), optimizer and RNG (torch, loaded with weights_only=True) and JSON state.
Under torchrun every rank writes its own part through `torch.distributed.checkpoint` (DCP): sharded models and
optimizer states are never gathered, and DCP reshards on load, so a run resumes on any number of ranks, one
process included, with or without FSDP. Learners go through `save_learners` / `load_learners`, which pick the
format.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from tandem.errors import InputError
from tandem.io import chmod_like_open, storage_errors, write_json
from tandem.training import distributed

Learners = dict  # model name -> (Learner, the name its optimizer state is saved under)


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
    with storage_errors(ckpt_dir, cleanup=lambda: shutil.rmtree(tmp, ignore_errors=True)):
        _fresh(tmp)
        for name, m in models.items():
            save_model(getattr(m, "_orig_mod", m), str(tmp / f"{name}.safetensors"))
        for name, obj in tensors.items():
            torch.save(obj, tmp / f"{name}.pt")
        _finish(tmp, ckpt_dir, state)


def _fresh(tmp: Path) -> None:
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)


def _finish(tmp: Path, ckpt_dir: Path, state: dict) -> None:
    """Mark a fully written folder complete and swap it in for the previous checkpoint."""
    prev = ckpt_dir.with_name(ckpt_dir.name + ".prev")
    write_json(tmp / "state.json", state)
    (tmp / "COMPLETE").write_text("ok\n")
    for f in tmp.iterdir():  # safetensors and DCP write 0600; the outputs get the mode the umask gives
        if f.is_file():
            chmod_like_open(f)
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
    state = _state(d)
    tensors = {n: torch.load(d / f"{n}.pt", map_location="cpu", weights_only=True) for n in names}
    if "rng" in tensors and not _is_rng_state(tensors["rng"]):
        raise ValueError("rng.pt does not hold a random generator state")
    return tensors, state


def _state(d: Path) -> dict:
    from tandem import schema

    return schema.read_json(d / "state.json", schema.mapping(schema.ANY), "checkpoint state")


def _is_rng_state(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 1


@contextmanager
def restoring(ckpt_dir: Path):
    """Around handing a loaded checkpoint's state to the run (step counts, samplers, the loop): a field missing or
    of the wrong type or shape means the checkpoint is damaged or not this run's, which is one line naming it, not a
    KeyError from deep inside."""
    try:
        yield
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputError(f"{ckpt_dir}: cannot resume from this checkpoint ({type(err).__name__}"
                         f"{': ' + detail if detail else ''}); start over with --force") from None


def load_checkpoint(ckpt_dir: Path, models: dict[str, torch.nn.Module], names: list[str], log=print) -> tuple[dict, dict] | None:
    """Fill `models` from the newest loadable checkpoint (falling back to `.prev`) and return
    (tensors, state), or None if there is no checkpoint."""
    return _newest(ckpt_dir, lambda d: _load_one(d, models, names), log)


def _newest(ckpt_dir: Path, load_one, log):
    """load_one(folder) on the checkpoint, else on `.prev`; None when neither exists."""
    ckpt_dir = Path(ckpt_dir)
    candidates = [ckpt_dir, ckpt_dir.with_name(ckpt_dir.name + ".prev")]
    errors = []
    for d in candidates:
        if not d.exists():
            continue
        try:
            return load_one(d)
        except Exception as err:  # corrupt pickle, truncated file, bad JSON: try the older one
            errors.append(f"{d}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            log(f"warning: checkpoint {d} cannot be loaded ({errors[-1]}); trying an older one")
    if errors:
        raise InputError(f"no loadable checkpoint in {ckpt_dir.parent}: " + "; ".join(errors))
    return None


def save_learners(ckpt_dir: Path, learners: Learners, rng: torch.Tensor, state: dict) -> None:
    """Checkpoint learners (model and optimizer), the RNG state and JSON state. One process: save_checkpoint's
    files. Under torchrun a collective: every rank writes its shards with DCP into the temporary folder, then rank
    0 marks it complete and swaps it in."""
    if not distributed.active():
        save_checkpoint(ckpt_dir, {m: lr.module for m, (lr, _) in learners.items()},
                        {**{o: lr.optimizer.state_dict() for lr, o in learners.values()}, "rng": rng}, state)
        return
    import torch.distributed.checkpoint as dcp

    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if distributed.is_main():
        _fresh(tmp)
    distributed.barrier()
    dcp.save(_sharded_state(learners, rng, optimizers=None), checkpoint_id=str(tmp))  # returns once all ranks wrote
    if distributed.is_main():
        _finish(tmp, ckpt_dir, state)
    distributed.barrier()  # no rank moves on (or reads the checkpoint) before it is in place


def _sharded_state(learners: Learners, rng: torch.Tensor, optimizers: set[str] | None) -> dict:
    """DCP's state dict: models and optimizers keyed by parameter name (DTensor shards under FSDP), and the RNG.
    optimizers: the optimizer states to include (None: those of learners that have stepped; an optimizer without
    state has nothing to save, and DCP's helper would initialise it with a step, changing its next update)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    out = {"rng": rng}
    for m, (lr, o) in learners.items():
        out[m] = get_model_state_dict(lr.module)
        if (o in optimizers) if optimizers is not None else bool(lr.optimizer.state):
            out[o] = get_optimizer_state_dict(lr.module, lr.optimizer)
    return out


def load_learners(ckpt_dir: Path, learners: Learners, log=print) -> tuple[torch.Tensor, dict] | None:
    """Fill the learners' models and optimizers from the newest loadable checkpoint of either format (falling back
    to `.prev`); returns (RNG state, JSON state), or None if there is no checkpoint. Step counts are in the JSON
    state, for the caller."""
    return _newest(ckpt_dir, lambda d: _load_sharded(d, learners) if (d / ".metadata").is_file()
                   else _load_whole(d, learners), log)


def _load_whole(d: Path, learners: Learners) -> tuple[torch.Tensor, dict]:
    """A one-process checkpoint: every rank reads the whole files into its plain or DDP learners, or hands them to
    its FSDP shards."""
    plain = {m: lr.module for m, (lr, _) in learners.items() if not lr.fsdp}
    tensors, state = _load_one(d, plain, [*(o for _, o in learners.values()), "rng"])
    for m, (lr, o) in learners.items():
        if lr.fsdp:
            from safetensors.torch import load_file

            _set_whole(lr, load_file(str(d / f"{m}.safetensors")), tensors[o])
        else:
            lr.optimizer.load_state_dict(tensors[o])
    return tensors["rng"], state


def _set_whole(learner, model_state: dict, optimizer_state: dict) -> None:
    """Hand whole model and optimizer states to an FSDP learner's shards. A plain optimizer state numbers its
    parameters in the optimizer's order; DCP's helper wants their names."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    names = {id(p): n for n, p in learner.module.named_parameters()}
    order = [names[id(p)] for g in learner.optimizer.param_groups for p in g["params"]]
    named = {"state": {order[int(i)]: v for i, v in optimizer_state["state"].items()},
             "param_groups": [{**g, "params": [order[int(i)] for i in g["params"]]}
                              for g in optimizer_state["param_groups"]]}
    full = StateDictOptions(full_state_dict=True)
    set_model_state_dict(learner.module, model_state, options=full)
    if named["state"]:  # an optimizer that had not stepped stays fresh
        set_optimizer_state_dict(learner.module, learner.optimizer, named, options=full)


def _load_sharded(d: Path, learners: Learners) -> tuple[torch.Tensor, dict]:
    """A DCP checkpoint, written on any number of ranks, into learners on this many (one process included)."""
    import warnings

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    if not (d / "COMPLETE").is_file():
        raise ValueError("incomplete")
    saved = {k.split(".")[0] for k in dcp.FileSystemReader(str(d)).read_metadata().state_dict_metadata}
    state = _sharded_state(learners, torch.get_rng_state(), optimizers=saved)
    with warnings.catch_warnings():  # one process: DCP says it assumes a single process, which it is
        warnings.simplefilter("ignore")
        dcp.load(state, checkpoint_id=str(d), no_dist=not distributed.active())
    for m, (lr, o) in learners.items():
        set_model_state_dict(lr.module, state[m])
        if o in state:
            set_optimizer_state_dict(lr.module, lr.optimizer, state[o])
    if not _is_rng_state(state["rng"]):
        raise ValueError("the checkpoint's rng does not hold a random generator state")
    return state["rng"], _state(d)
