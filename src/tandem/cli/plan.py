"""`--dry-run` (on train, optimize, run, compare) and `tandem validate CONFIG`: every check that needs no training (the
config, each source, the output folder), then the plan: what would be read, trained and written. `validate` reads
only the config and the sources' names; `--dry-run` also tokenizes the data into the token cache (as `tandem
prepare` does) to show tokens per domain and split and the epochs at the target's budget, and times two steps of
each model for an estimate of the run's time. Neither writes to OUT or trains the run."""

from __future__ import annotations

import os
from pathlib import Path

from tandem.errors import InputError


def _size(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.exists():
            total += p.stat().st_size
    return total


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} KB"


def plan_lines(cfg, command: str, args=None) -> list[str]:
    """The plan of `command` on `cfg` (already validated): domains and their sources, models, budgets."""
    from tandem.data.readers import expand_sources
    from tandem.mixing import budget, methods

    lines = []
    base = Path(cfg.base_dir)
    names = list(cfg.data.domains)
    lines.append(f"domains ({len(names)}):")
    width = max(len(n) for n in names)
    for name, spec in cfg.data.domains.items():
        parts = []
        for split in ("train", "valid", "test", "source"):
            value = getattr(spec, split, None)
            if value is None:
                continue
            paths = expand_sources(value, base, f"data.domains.{name}.{split}")
            parts.append(f"{split} {len(paths)} file{'s' if len(paths) != 1 else ''} ({_mb(_size(paths))})")
        kind = f" [{spec.kind}]" if getattr(spec, "kind", "text") != "text" else ""
        where = f" where {spec.where}" if spec.where else ""
        lines.append(f"  {name:<{width}}  {', '.join(parts) or 'no train split (target only)'}{kind}{where}")
    tc = cfg.train
    lines.append(f"tokenizer: {cfg.tokenizer.kind} (vocab {cfg.tokenizer.vocab_size}); token cache "
                 f"{cfg.resolve(cfg.data.cache_dir)}")
    model = cfg.model.preset if cfg.model.preset != "hf" else f"hf ({cfg.model.hf_path or 'hf_config'})"
    if command in ("train", "run", "compare"):
        lines.append(f"target: {model}, {tc.steps} steps x {tc.batch_size} rows x {tc.seq_len} tokens = "
                     f"{tc.steps * tc.batch_size * tc.seq_len:,} training tokens")
    if command in ("optimize", "run"):
        mc = methods.effective(methods.resolve_mixer(cfg))
        rows = budget.stage_one_rows(mc, len(names), tc.batch_size)
        settings = {k: getattr(mc, k) for k in ("episodes", "probe_steps", "free_steps", "gamma", "eta_alpha", "update",
                                               "eval_sequences") if hasattr(mc, k)}
        proxy = mc.proxy.preset if not isinstance(mc.proxy, str) else mc.proxy
        lines.append(f"stage one: {mc.method} on a {proxy} proxy, {rows * tc.seq_len:,.0f} proxy-sized training "
                     f"tokens; " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    if command == "compare" and args is not None:
        target = budget.compare_budget(cfg.mixer, len(names), tc.batch_size)
        flops = budget.compare_flops(cfg)  # before the data is read: as if no data cap binds
        ms = [m.strip() for m in args.methods.split(",") if m.strip()]
        lines.append(f"compare: {', '.join(ms)} x {args.seeds} seed(s) = {len(ms) * args.seeds} runs, each stage one "
                     f"on a budget of about {flops:.3g} FLOPs (the config's own mixer: {target * tc.seq_len:,.0f} "
                     f"proxy-sized training tokens), each target as above")
    return lines


def _step_seconds(model_cfg, data, seq_len: int, batch: int, seed: int) -> float:
    """Seconds of one optimizer step of a model on this machine (the second of two, on random tokens)."""
    import time

    import torch

    from tandem.models import build_model
    from tandem.training.learner import Learner, OptimConfig
    from tandem.data.sampler import Batch

    learner = Learner(build_model(model_cfg, data.vocab_size, seq_len, seed), OptimConfig(lr=1e-4, total_steps=2),
                      len(data.domains), torch.device("cpu"))
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, data.vocab_size, (batch, seq_len), generator=g)
    part = (Batch(x, x.clone(), torch.zeros(batch, dtype=torch.long)),
            torch.full((len(data.domains),), 1.0 / (batch * seq_len), dtype=torch.float64))
    learner.step([part])
    t0 = time.perf_counter()
    learner.step([part])
    return time.perf_counter() - t0


def data_lines(cfg, command: str, args) -> list[str]:
    """Tokens per domain and split (the token cache, filled as `tandem prepare` fills it), the epochs of each train
    split the target sees at its budget under uniform weights, and the run's time estimated from two timed steps."""
    from tandem.cli.common import prepare
    from tandem.data.cache import format_table
    from tandem.mixing import budget, methods
    from tandem.mixing.optimize import target_epochs

    data = prepare(cfg, args)
    lines = ["tokens per domain and split (the token cache):", format_table(data)]
    rows, target_rows, _ = target_epochs(cfg, data)
    trainable = data.trainable
    share = trainable / max(trainable.sum(), 1)
    eps = [f"{d} {float(share[i] * target_rows / rows[i]) if rows[i] else 0.0:.2f}" for i, d in enumerate(data.domains)]
    tc = cfg.train
    lines.append(f"epochs of each train split at the target's {int(target_rows):,} rows under uniform weights: "
                 + ", ".join(eps))
    seconds = 0.0
    if command in ("train", "run", "compare"):
        seconds += tc.steps * _step_seconds(cfg.model, data, tc.seq_len, tc.batch_size, cfg.seed)
    if command in ("optimize", "run", "compare"):
        mc = methods.effective(methods.resolve_mixer(cfg))
        rows_one = budget.stage_one_rows(mc, len(data.domains), tc.batch_size)
        proxy = mc.proxy if not isinstance(mc.proxy, str) else cfg.model
        b = mc.batch_size or tc.batch_size
        seconds += (rows_one / b) * _step_seconds(proxy, data, tc.seq_len, b, cfg.seed)
    if command == "compare" and args is not None:
        ms = [m.strip() for m in args.methods.split(",") if m.strip()]
        seconds *= len(ms) * args.seeds
    if seconds:
        lines.append(f"estimated time on this machine: about {seconds / 60:.1f} min of training steps (two timed "
                     f"steps per model; evaluation and scoring come on top)")
    return lines


def _check_out(out: Path, command: str, args) -> str:
    """The output folder as the command would find it; raises what the command would raise before any work."""
    from tandem.io import check_writable_dir

    check_writable_dir(out)
    run = out / "run.json"
    if command == "compare":
        return f"{out} ({'finished runs there are kept' if (out / 'runs').is_dir() else 'new'})"
    if run.exists():
        if getattr(args, "resume", False):
            return f"{out} (resumed: the run's identity is checked against run.json when it starts)"
        if getattr(args, "force", False):
            return f"{out} (the run there is replaced: --force)"
        raise InputError(f"{out}: already holds a run; add --resume to continue it, --force to replace it, or use "
                         f"another --out")
    return f"{out} ({'exists' if out.exists() else 'new'})"


def dry_run(cfg, args, command: str) -> int:
    """Check what can be checked without work, print the plan, write nothing; exit code 0 when the run would start."""
    from tandem.io import refuse_overlap

    inputs = cfg.input_paths()  # every source resolved: a missing file or an empty glob is refused here
    for p in inputs:
        if not os.access(p, os.R_OK):
            raise InputError(f"{p}: not readable")
    lines = [f"plan: tandem {command} {getattr(args, 'config', '')}"]
    if getattr(args, "out", None) is not None:
        out = Path(args.out)
        refuse_overlap(out, inputs)
        lines.append(f"output: {_check_out(out, command, args)}")
    weights = getattr(args, "weights", None)
    if weights is not None and weights not in ("uniform", "natural"):
        from tandem.mixing.weights import resolve_weights

        resolve_weights(weights, cfg.domain_names)
        lines.append(f"mixture: {weights}")
    lines += plan_lines(cfg, command, args)
    if command != "validate":
        lines += data_lines(cfg, command, args)
    lines.append("nothing was trained or written to the output folder (--dry-run)" if command != "validate"
                 else "the config is valid")
    print("\n".join(lines))
    return 0


def cmd_validate(args) -> int:
    from tandem.cli.common import load

    return dry_run(load(args), args, "validate")


def register(sub, common) -> None:
    register_init(sub, common)
    sp = sub.add_parser("validate", help="check a config and its sources and print the plan; writes nothing",
                        description="Load CONFIG (with --set overrides), check every field and that every source "
                                    "exists and is readable, and print the domains, models and budgets; nothing is "
                                    "tokenized, trained or written.")
    common(sp)
    sp.set_defaults(func=cmd_validate)


# --- tandem init ---------------------------------------------------------------------------------------------------

_SPLIT_NAMES = {"train": ("train",), "valid": ("valid", "validation", "dev", "val"), "test": ("test",)}


def _domain_name(path: Path) -> str:
    """A domain name from a file or folder name: the stem without data and compression extensions, made valid."""
    from tandem.data.readers import COMPRESSED

    name = path.name
    for ext in COMPRESSED:
        name = name.removesuffix(ext)
    for ext in (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".txt", ".parquet"):
        name = name.removesuffix(ext)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "domain"
    from tandem.config import domain_name_problem

    return name if domain_name_problem(name) is None else f"{name}_data"


def _split_files(folder: Path) -> dict[str, Path] | None:
    """A folder holding one file per split (train.jsonl, validation.parquet, ...): {split: file}, else None."""
    from tandem.data.readers import _plain_name

    found: dict[str, Path] = {}
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        stem = _plain_name(f).split(".")[0]
        for split, names in _SPLIT_NAMES.items():
            if stem in names and split not in found:
                found[split] = f
    return found if "train" in found else None


def _datasetdict_splits(folder: Path) -> list[str] | None:
    meta = folder / "dataset_dict.json"
    if not meta.is_file():
        return None
    from tandem import schema

    return list(schema.read_json(meta, {"splits": [schema.STR]}, "datasets folder")["splits"])


def domain_entry(path: Path, rel, fractions: dict[str, float]) -> dict:
    """The config entry that reads `path` as one domain: its own splits where it has them (a DatasetDict with train,
    validation and test; a folder of train/valid/test files), else the whole source cut by document."""
    splits = _datasetdict_splits(path) if path.is_dir() else None
    if splits is not None:
        have = {s for s, names in _SPLIT_NAMES.items() if any(n in splits for n in names)}
        if have == set(_SPLIT_NAMES):
            return {s: rel(path) for s in _SPLIT_NAMES}
        if len(splits) == 1:
            return {"source": rel(path), "split": fractions}
        raise InputError(f"{path}: a DatasetDict with splits {splits}: tandem init needs train, validation and test, "
                         f"or a single split to cut; point at one split's folder")
    files = _split_files(path) if path.is_dir() else None
    if files is not None and len(files) == 3:
        return {s: rel(files[s]) for s in _SPLIT_NAMES}
    return {"source": rel(path), "split": fractions}


def write_init_config(sources: list[str], out: Path, domain_column: str | None, text_field: str | None,
                      valid: float, test: float) -> dict:
    """A commented config reading `sources` as the user has them; checked by loading it before it is written."""
    import yaml

    from tandem.config import config_from_dict
    from tandem.io import write_text

    if not sources:
        raise InputError("tandem init: expected at least one SOURCE (files, folders or datasets folders)")
    if not (0 < valid < 0.5 and 0 < test < 0.5 and valid + test < 0.9):
        raise InputError(f"--valid/--test: expected fractions above 0 that leave most documents for training, got "
                         f"{valid} and {test}")
    folder = out.parent.resolve()
    paths = []
    for s in sources:
        p = Path(s).expanduser()
        if not p.exists():
            raise InputError(f"{s}: not found")
        paths.append(p.resolve())

    def rel(p: Path) -> str:  # relative to the config where the data sits beside or below it, else absolute
        r = os.path.relpath(p, folder)
        return str(p) if r.startswith("..") else r

    fractions = {"train": round(1 - valid - test, 6), "valid": valid, "test": test}
    domains: dict[str, dict] = {}
    if domain_column:
        if len(paths) != 1:
            raise InputError("--domain-column: expected one SOURCE (a file, folder or datasets folder) holding every "
                             "domain's rows")
        entry = domain_entry(paths[0], rel, fractions)
        domains["all"] = {**entry, "domain_field": domain_column}
    else:
        for p in paths:
            name = _domain_name(p)
            while name in domains:
                name += "_2"
            domains[name] = domain_entry(p, rel, fractions)
    for entry in domains.values():
        if text_field:
            entry["text_field"] = text_field
    raw = {"seed": 0, "data": {"domains": domains, "cache_dir": ".tandem_cache"},
           "tokenizer": {"kind": "bpe", "vocab_size": 4096},
           "model": {"preset": "mini"},
           "train": {"steps": 300, "batch_size": 16, "seq_len": 128},
           "mixer": {"method": "tandem", "proxy": {"preset": "tiny"}}}
    cfg = config_from_dict(raw, base_dir=folder, source=str(out))  # every source read as the run will (groups too)
    cfg.input_paths()  # every source resolved and checked (a pipe or device is refused) before the file is written
    head = ("# Written by `tandem init`: one domain per source"
            + (f", one per value of '{domain_column}'" if domain_column else "")
            + ". Check it with `tandem validate` and see the plan with `--dry-run`.\n"
            "# Sources without their own splits are cut by document (`split` fractions, seeded by `seed`).\n"
            "# Sizes below are a first run on a CPU; the config reference lists every field (README).\n")
    body = yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=120)
    write_text(out, head + body)
    return {"domains": list(cfg.data.domains), "config": raw}


def cmd_init(args) -> int:
    from tandem.io import check_writable_file

    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"--out {out}: exists; add --force to replace it")
    check_writable_file(out, "--out")
    from tandem.io import refuse_input_file

    refuse_input_file(out, args.sources)
    made = write_init_config(args.sources, out, args.domain_column, args.text_field, args.valid, args.test)
    print(f"wrote {out}: {len(made['domains'])} domain(s): {', '.join(made['domains'])}")
    print(f"next: tandem validate {out}   then   tandem run {out} --out runs/first")
    return 0


def register_init(sub, common) -> None:
    sp = sub.add_parser("init", help="write a config from data as you have it (files, folders, datasets folders)",
                        description="One domain per SOURCE (a file, a folder of shards, a folder of train/valid/test "
                                    "files, a datasets save_to_disk folder), or with --domain-column one domain per "
                                    "value of a column of one SOURCE. Splits come from the source where it has them, "
                                    "else documents are cut by --valid/--test fractions.")
    common(sp, config=False)
    sp.add_argument("sources", nargs="+", metavar="SOURCE", help="files, folders or datasets folders")
    sp.add_argument("--out", required=True, help="the config file to write")
    sp.add_argument("--domain-column", default=None, help="a (dotted) field naming each row's domain")
    sp.add_argument("--text-field", default=None, help="the field holding the text (default: text)")
    sp.add_argument("--valid", type=float, default=0.05, help="share of documents for validation (default 0.05)")
    sp.add_argument("--test", type=float, default=0.05, help="share of documents for test (default 0.05)")
    sp.add_argument("--force", action="store_true", help="replace --out if it exists")
    sp.set_defaults(func=cmd_init)
