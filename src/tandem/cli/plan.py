"""`--dry-run` (on train, optimize, run, compare) and `tandem validate CONFIG`: every check that needs no work (the
config, each source, the output folder), then the plan: what would be read, trained and written. Nothing is
written, nothing is tokenized or trained."""

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
        ms = [m.strip() for m in args.methods.split(",") if m.strip()]
        lines.append(f"compare: {', '.join(ms)} x {args.seeds} seed(s) = {len(ms) * args.seeds} runs, each stage one "
                     f"on a budget of {target * tc.seq_len:,.0f} proxy-sized tokens, each target as above")
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
    lines.append("nothing was written (--dry-run)" if command != "validate" else "the config is valid")
    print("\n".join(lines))
    return 0


def cmd_validate(args) -> int:
    from tandem.cli.common import load

    return dry_run(load(args), args, "validate")


def register(sub, common) -> None:
    sp = sub.add_parser("validate", help="check a config and its sources and print the plan; writes nothing",
                        description="Load CONFIG (with --set overrides), check every field and that every source "
                                    "exists and is readable, and print the domains, models and budgets; nothing is "
                                    "tokenized, trained or written.")
    common(sp)
    sp.set_defaults(func=cmd_validate)
