"""`tandem ecommerce` (the synthetic product-understanding example) and `tandem metrics` (task metrics)."""

from __future__ import annotations

import time
from pathlib import Path

from tandem.errors import InputError


def cmd_ecommerce(args) -> int:
    from tandem.examples import ecommerce
    from tandem.io import check_writable_dir

    if args.seed < 0:
        raise InputError(f"--seed: expected a non-negative integer, got {args.seed}")
    if not args.scale > 0:
        raise InputError(f"--scale: expected a positive number, got {args.scale}")
    out = check_writable_dir(args.out)
    t0 = time.perf_counter()
    manifest = ecommerce.build_ecommerce(out, seed=args.seed, scale=args.scale)
    print(ecommerce.format_table(manifest))
    print(ecommerce.SYNTHETIC_NOTE)
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_tasks(args) -> int:
    from tandem.examples import tasks
    from tandem.io import check_writable_dir

    if args.seed < 0:
        raise InputError(f"--seed: expected a non-negative integer, got {args.seed}")
    names = tuple(t.strip() for t in (args.tasks or ",".join(tasks.TASKS)).split(",") if t.strip())
    out = check_writable_dir(args.out)
    t0 = time.perf_counter()
    try:
        manifest = tasks.build_tasks(out, seed=args.seed, scale=args.scale, tasks=names)
    except (tasks.CorpusSourceError, ValueError) as err:
        raise InputError(str(err)) from None
    print(tasks.format_table(manifest))
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _metrics_model(cfg, args, data):
    """The model to score: a tandem model folder (--model), or the config's pretrained Hugging Face model."""
    from tandem.models import build_model, load_model

    if args.model:
        model, meta = load_model(args.model)
        fp = meta.get("tokenizer_fingerprint")
        if fp is not None and fp != data.tokenizer.fingerprint:
            raise InputError(f"{args.model}: the model was trained with a different tokenizer than {args.config} produces")
        block = getattr(getattr(model, "config", None), "block_size", None)
        if isinstance(block, int) and cfg.train.seq_len > block:
            raise InputError(f"{args.model}: the model's context is {block} tokens, shorter than train.seq_len="
                             f"{cfg.train.seq_len}; use --set train.seq_len={block}")
        return model
    if cfg.model.preset != "hf" or cfg.model.hf_path is None:
        raise InputError(f"{args.config}: without --model, model must be a pretrained Hugging Face model "
                         "(model.preset: hf with model.hf_path)")
    return build_model(cfg.model, data.vocab_size, cfg.train.seq_len, cfg.seed, cfg.base_dir)


def cmd_metrics(args) -> int:
    from tandem.cli.common import load, log_to, prepare
    from tandem.evaluation.evaluate import evaluate
    from tandem.evaluation.generate import evaluate_tasks, format_metrics, metric_domains
    from tandem.io import check_writable_file, write_json
    from tandem.training.learner import resolve_device

    cfg = load(args)
    if not metric_domains(cfg):
        raise InputError(f"{args.config}: no domain declares a metric (data.domains.NAME.metric: accuracy or exact_match_f1)")
    for flag in ("max_new_tokens", "batch_size"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')}: expected >= 1, got {getattr(args, flag)}")
    if args.max_examples is not None and args.max_examples < 1:
        raise InputError(f"--max-examples: expected >= 1, got {args.max_examples}")
    check_writable_file(args.out, "--out")
    data = prepare(cfg, args)
    log = log_to(args.quiet)
    model = _metrics_model(cfg, args, data)
    device = resolve_device(cfg.train.device)
    model.to(device)
    t0 = time.perf_counter()
    loss = evaluate(model, data, cfg.train.seq_len, cfg.eval.max_tokens, cfg.eval.batch_size, device,
                    cfg.train.precision, splits=(args.split,))
    loss_time = time.perf_counter() - t0
    result = evaluate_tasks(model, cfg, data, args.split, args.max_examples, args.max_new_tokens, args.batch_size,
                            device, log)
    result = {**result, "loss": loss[f"{args.split}_loss"], "loss_tokens": loss[f"{args.split}_tokens"],
              "loss_wall_time_s": loss_time, "model": args.model or cfg.model.hf_path}
    write_json(args.out, result)
    print(format_metrics(result))
    per = result["loss"]["per_domain"]
    print(f"{args.split} loss: " + ", ".join(f"{d} {v:.4f}" for d, v in per.items() if v is not None)
          + f"; average {result['loss']['average']:.4f}")
    print(f"wrote {args.out}")
    return 0


def register(sub, common) -> None:
    sp = sub.add_parser("ecommerce", help="generate the synthetic multi-task product-understanding SFT example",
                        description="Write DIR/<task>/{train,valid,test}.jsonl ({prompt, response} rows) for the tasks "
                                    "category, attributes, brand and match, and DIR/manifest.json. The listings are "
                                    "synthetic, generated from real vocabularies; the same seed gives the same bytes.")
    common(sp, config=False)
    sp.add_argument("--out", default="data/ecommerce", help="output folder (default: data/ecommerce)")
    sp.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    sp.add_argument("--scale", type=float, default=1.0, help="multiply every task's size (default 1)")
    sp.set_defaults(func=cmd_ecommerce)

    sp = sub.add_parser("tasks", help="build five real SFT tasks of unequal size from text that installs offline",
                        description="Write DIR/<task>/{train,valid,test}.jsonl ({prompt, response} rows) for next_line "
                                    "(Shakespeare), verse_book (the Bible), func_name (the standard library's "
                                    "docstrings), chat_reply (chatterbot conversations) and license_id (SPDX), and "
                                    "DIR/manifest.json. Sources: scripts/install_corpus_sources.sh.")
    common(sp, config=False)
    sp.add_argument("--out", default="data/tasks", help="output folder (default: data/tasks)")
    sp.add_argument("--tasks", default=None, help="comma-separated tasks (default: all five)")
    sp.add_argument("--seed", type=int, default=0, help="shuffle seed of the splits (default 0)")
    sp.add_argument("--scale", type=float, default=1.0, help="multiply every task's train size (default 1)")
    sp.set_defaults(func=cmd_tasks)

    sp = sub.add_parser("metrics", help="task metrics (accuracy, exact match, token F1) from greedy generation",
                        description="For every domain that declares `metric`, generate answers greedily on a split "
                                    "and score them; also the per-domain loss on that split. Writes a JSON file.")
    common(sp)
    sp.add_argument("--model", default=None,
                    help="model folder (OUT/model of a train or run); default: the config's pretrained model.hf_path")
    sp.add_argument("--out", required=True, help="output JSON file")
    sp.add_argument("--split", choices=("valid", "test"), default="test", help="split to score (default: test)")
    sp.add_argument("--max-examples", type=int, default=None, help="score at most this many examples per task")
    sp.add_argument("--max-new-tokens", type=int, default=48, help="longest generated answer in tokens (default 48)")
    sp.add_argument("--batch-size", type=int, default=16, help="prompts per generation batch (default 16)")
    sp.set_defaults(func=cmd_metrics)
