"""An output folder holds one run: a lock for the process writing it, the run's identity, and its resolved config.

- Lock: `OUT/.lock`, held (flock) by the process that writes OUT until it exits; a second process on the same
  folder refuses with one line instead of racing it. Under torchrun rank 0 holds it (the only writer).
- Identity (`OUT/run.json`): every setting that changes results, flattened to dotted keys: the resolved config
  with each method's defaults written out, each domain split's cache key (its sources' content hashes, the
  tokenizer and the reading options) and the tokenizer's fingerprint. `--resume` with another identity is refused
  with the keys that differ, before anything in OUT changes; a new run into a folder that already holds one is
  refused unless `--force`.
- `OUT/config.yaml`: the resolved config (paths absolute, method defaults written out): `tandem <command>
  OUT/config.yaml` reruns the same run.
"""

from __future__ import annotations

import json
from pathlib import Path

from tandem.errors import InputError

# Settings that change how a run is carried out or logged, not its results.
# mixer.on_nonfinite only decides what happens after a fault, and switching it to `skip` to get past one is the
# documented way to continue a stopped run. methods.*: the run's own method's section is in mixer.* (resolved_dict),
# and the other methods' sections do not change this run.
NOT_IDENTITY = ("train.log_interval", "train.checkpoint_interval", "train.report_to", "train.threads",
                "train.device", "train.compile", "train.micro_batch_size", "train.fsdp", "mixer.checkpoint_interval",
                "mixer.compile", "mixer.fsdp", "mixer.on_nonfinite", "eval.", "methods.")

_held: dict[str, object] = {}  # folder -> its open lock file, until release() (the end of the command)


def resolved_dict(cfg) -> dict:
    """The config as a rerunnable dict: the method's settings as it runs them (published defaults and its own
    `methods.<name>` section applied, tandem.mixing.methods.resolve_mixer, whichever command reads them), every path
    absolute, no loader fields."""
    from tandem.mixing.methods import resolve_mixer

    d = cfg.to_dict()
    d.pop("base_dir", None)
    d["mixer"] = resolve_mixer(cfg).model_dump(mode="json")

    def absolute(p):
        if p is None:
            return None
        if isinstance(p, list):
            return [absolute(x) for x in p]
        return str(cfg.resolve(p)) if not any(c in p for c in "*?[") else str(Path(cfg.base_dir) / Path(p).expanduser())

    for spec in d["data"]["domains"].values():
        for key in ("train", "valid", "test", "source"):
            spec[key] = absolute(spec.get(key))
    d["data"]["cache_dir"] = absolute(d["data"]["cache_dir"])
    if d["data"].get("chat_template") not in ("auto", "default"):
        d["data"]["chat_template"] = absolute(d["data"]["chat_template"])
    d["tokenizer"]["path"] = absolute(d["tokenizer"].get("path"))
    for model in (d["model"], d["mixer"]["proxy"]):
        model["hf_path"] = absolute(model.get("hf_path"))
    return d


def _flatten(obj, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict) and obj:
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(obj, sort_keys=True)}


def identity(cfg, data) -> dict[str, str]:
    """Dotted key -> JSON value of everything that changes the run's results."""
    d = resolved_dict(cfg)
    for spec in d["data"]["domains"].values():  # the sources' content is in the cache keys below, not their paths
        for key in ("train", "valid", "test", "source"):
            spec.pop(key, None)
    d["data"].pop("cache_dir", None)
    flat = {k: v for k, v in _flatten(d).items()
            if not any(k == x or k.startswith(x) or k == x.rstrip(".") for x in NOT_IDENTITY)}
    flat["data.domains"] = json.dumps(list(data.domains))
    entries = data.index.get("entries", {})
    for name in data.domains:
        for split in ("train", "valid", "test"):
            e = entries.get(f"{name}/{split}")
            if e is not None:
                flat[f"data.{name}.{split}.content"] = json.dumps(e.get("key"))
    flat["tokenizer.fingerprint"] = json.dumps(data.tokenizer.fingerprint)
    return flat


def lock(out: Path) -> None:
    """Hold OUT/.lock for the rest of the process, or refuse if another process holds it."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    key = str(path.resolve())
    if key in _held:  # this process holds it already (a command that claims a folder twice)
        return
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise InputError(f"{out}: another tandem process is writing this folder (it holds {path}); wait for it "
                         f"to finish or use another --out") from None
    _held[key] = f


def release() -> None:
    """Let go of every folder this process locked (the command is over)."""
    while _held:
        _, f = _held.popitem()
        f.close()


def claim(out: Path, cfg, data, command: str, resume: bool, force: bool) -> None:
    """Lock OUT, check that it may hold this run, then record the run's identity and resolved config."""
    import yaml

    from tandem.io import write_json, write_text

    from tandem.training import distributed

    from tandem.io import refuse_overlap

    refuse_overlap(out, cfg.input_paths())
    _lock_on_every_rank(out)
    now = identity(cfg, data)
    path = out / "run.json"
    before, unreadable = None, False
    if path.exists():
        from tandem import schema

        try:
            before = schema.read_json(path, schema.RUN_IDENTITY, "run identity")
        except InputError:
            unreadable = True
    distributed.barrier()  # every rank has read run.json before rank 0 rewrites it below
    if before is None and resume and (held := _run_files(out)):
        # No identity to compare means not the same run: continuing its checkpoints could mix two configs.
        raise InputError(f"--resume: {out} holds files of a run ({', '.join(held[:3])}) but "
                         f"{'an unreadable' if unreadable else 'no'} "
                         f"run.json (the run's identity), so it cannot be told to be this run; start over with "
                         f"--force (without --resume) or use another --out")
    if before is None and unreadable and not force:
        raise InputError(f"{out}: holds an unreadable run.json; add --force to replace the run, or use another --out")
    if before is not None:
        _check_same_run(out, before, now, command, resume, force)
    if distributed.is_main():  # only the writer touches the folder (the other ranks have read run.json already)
        if resume:  # scratch files of writes a killed process never finished (we hold the lock: nobody else writes)
            for tmp in out.rglob(".*.tmp"):
                if tmp.is_file():
                    tmp.unlink(missing_ok=True)
        elif before is not None or unreadable:  # --force: the old run goes, checkpoints included, so no later --resume finds them
            import shutil

            for child in out.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    distributed.barrier()
    write_json(path, {"command": command, "identity": now})
    write_text(out / "config.yaml", yaml.safe_dump(resolved_dict(cfg), sort_keys=False))


def _run_files(out: Path) -> list[str]:
    """What OUT holds that a run wrote (a checkpoint, metrics, results): not hidden files (the lock, scratch files)
    nor an error log."""
    if not out.is_dir():
        return []
    return sorted(c.name for c in out.iterdir() if not c.name.startswith(".") and c.name not in
                  ("tandem-error.log", "run.json"))


def _lock_on_every_rank(out: Path) -> None:
    """Under torchrun rank 0 takes the lock and every rank must agree on the outcome before any of them goes on."""
    from tandem.training import distributed

    problem = None
    if distributed.is_main():
        try:
            lock(out)
        except InputError as err:
            problem = str(err)
        except OSError as err:  # a lock file we may not open: say so on every rank, not only this one
            problem = f"{out}: cannot lock the folder ({err.strerror or err})"
    if distributed.active():
        import torch.distributed as dist

        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem is not None:
        raise InputError(problem)


def _check_same_run(out: Path, before: dict, now: dict, command: str, resume: bool, force: bool) -> None:
    """A folder that holds a run: --resume continues only the same command with the same identity; otherwise
    --force replaces it, and without either the run is refused."""
    if not resume:
        if not force:
            raise InputError(f"{out}: already holds a `tandem {before.get('command')}` run; add --resume to "
                             f"continue it, --force to replace it, or use another --out")
        return
    old = before.get("identity", {})
    # Settings first, then what follows from them (content hashes change with the tokenizer).
    derived = lambda k: k.endswith(".content") or k == "tokenizer.fingerprint"  # noqa: E731
    changed = sorted((k for k in set(old) | set(now) if old.get(k) != now.get(k)), key=lambda k: (derived(k), k))
    if before.get("command") != command:
        raise InputError(f"--resume: {out} holds a `tandem {before.get('command')}` run, not `tandem "
                         f"{command}`; use another --out")
    if changed:
        short = lambda v: v if v is None or len(v) <= 40 else v[:37] + "..."  # noqa: E731
        shown = ", ".join(f"{k} ({short(old.get(k, 'unset'))} -> {short(now.get(k, 'unset'))})" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise InputError(f"--resume: {out} holds a different run: {shown}{more} changed; resume with the "
                         f"same settings, use another --out, or start over with --force (without --resume)")
