"""`tandem train` (the target on a fixed mixture), `tandem eval` (a saved model per domain) and `tandem metrics`
(task metrics from greedy generation)."""

from __future__ import annotations

import time

from tandem.cli.common import add_dry_run, load, log_to, prepare
from tandem.errors import InputError
from tandem.io import check_writable_dir, check_writable_file, write_json


def cmd_train(args) -> int:
    from tandem.data.cache import natural_weights
    from tandem.evaluation.evaluate import format_eval
    from tandem.mixing.weights import resolve_weights
    from tandem.pipeline.common import removed_on_input_error
    from tandem.pipeline.stage_two import train_and_evaluate
    from tandem.runs import claim

    cfg = load(args)
    if args.dry_run:
        from tandem.cli.plan import dry_run

        return dry_run(cfg, args, "train")
    out = check_writable_dir(args.out)
    if args.weights not in ("uniform", "natural"):
        resolve_weights(args.weights, cfg.domain_names)  # validate before any work
    if args.online:
        from tandem.pipeline.stage_two import online_mixer, train_online_and_evaluate

        if args.weights != "uniform":
            raise InputError("--online: the online method (mixer.method) chooses the mixture as training goes; "
                             "leave out --weights")
        online_mixer(cfg, len(cfg.data.domains))  # an online method, before any work
        data = prepare(cfg, args)
        with removed_on_input_error(out):
            claim(out, cfg, data, "train --online", args.resume, args.force)
            ev = train_online_and_evaluate(cfg, data, out, args.resume, args.quiet)
        print(format_eval(ev))
        print(f"wrote {out / 'eval.json'} (the mixture over the run: {out / 'online' / 'trajectory.csv'})")
        return 0
    data = prepare(cfg, args)
    weights = resolve_weights(args.weights, data.domains, natural_weights(data))
    with removed_on_input_error(out):
        claim(out, cfg, data, "train", args.resume, args.force)
        ev = train_and_evaluate(cfg, data, weights, out, args.resume, args.quiet)
    print(format_eval(ev))
    print(f"wrote {out / 'eval.json'}")
    return 0


def _refuse_inputs(args, cfg) -> None:
    """--out is never the config, the model folder or a data source (nor inside one)."""
    from tandem.io import refuse_input_file

    refuse_input_file(args.out, [args.config, *([args.model] if getattr(args, "model", None) else []),
                                 *cfg.input_paths()])


def _saved_model(cfg, args, data):
    """A model folder (--model) that fits the config: the same tokenizer, a context of at least train.seq_len."""
    from tandem.models import load_model

    model, meta = load_model(args.model)
    fp = meta.get("tokenizer_fingerprint")
    if fp is not None and fp != data.tokenizer.fingerprint:
        raise InputError(f"{args.model}: the model was trained with a different tokenizer than {args.config} produces")
    emb = getattr(model, "hf", None)
    if emb is not None and emb.get_input_embeddings().num_embeddings < data.vocab_size:
        raise InputError(f"{args.model}: the model's vocabulary ({emb.get_input_embeddings().num_embeddings}) is smaller "
                         f"than the tokenizer's ({data.vocab_size}); evaluate with the model's own tokenizer "
                         f"(tokenizer.kind: hf, tokenizer.path: the model folder)")
    block = getattr(getattr(model, "config", None), "block_size", None)
    if isinstance(block, int) and cfg.train.seq_len > block:
        raise InputError(f"{args.model}: the model's context is {block} tokens, shorter than train.seq_len="
                         f"{cfg.train.seq_len}; use --set train.seq_len={block}")
    return model


def cmd_eval(args) -> int:
    from tandem.evaluation.evaluate import evaluate, format_eval
    from tandem.training.learner import resolve_device

    cfg = load(args)
    check_writable_file(args.out, "--out")
    _refuse_inputs(args, cfg)
    data = prepare(cfg, args)
    model = _saved_model(cfg, args, data)
    device = resolve_device(cfg.train.device)
    model.to(device)
    result = evaluate(model, data, cfg.train.seq_len, cfg.eval.max_tokens, cfg.eval.batch_size, device, cfg.train.precision)
    ev = {"test_loss": result["test_loss"], "valid_loss": result["valid_loss"],
          "eval_tokens": {"valid": result["valid_tokens"], "test": result["test_tokens"]}}
    write_json(args.out, ev)
    print(format_eval(ev))
    print(f"wrote {args.out}")
    return 0


def _metrics_model(cfg, args, data):
    """The model to score: a tandem model folder (--model), or the config's pretrained Hugging Face model."""
    from tandem.models import build_model

    if args.model:
        return _saved_model(cfg, args, data)
    if cfg.model.preset != "hf" or cfg.model.hf_path is None:
        raise InputError(f"{args.config}: without --model, model must be a pretrained Hugging Face model "
                         "(model.preset: hf with model.hf_path)")
    return build_model(cfg.model, data.vocab_size, cfg.train.seq_len, cfg.seed, cfg.base_dir)


def cmd_metrics(args) -> int:
    from tandem.evaluation.evaluate import evaluate
    from tandem.evaluation.generate import evaluate_tasks, format_metrics, metric_domains
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
    _refuse_inputs(args, cfg)
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
    sp = sub.add_parser("train", help="train the target model on a fixed mixture and evaluate it per domain",
                        description="Train cfg.model for train.steps on the mixture W and write OUT/eval.json, "
                                    "OUT/metrics.jsonl and OUT/model/.")
    common(sp)
    sp.add_argument("--weights", default="uniform",
                    help="weights JSON file ({\"domain_weights\": {...}}), `uniform` or `natural` (default: uniform)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    sp.add_argument("--force", action="store_true", help="replace a run already in OUT instead of refusing")
    sp.add_argument("--online", action="store_true",
                    help="let mixer.method (odm, ado, skillit or aioli) steer the mixture during this training, as "
                         "those methods run in their papers")
    add_dry_run(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("eval", help="evaluate a saved model per domain on the valid and test splits",
                        description="Evaluate a model folder written by `tandem train` on the config's domains.")
    common(sp)
    sp.add_argument("--model", required=True, help="model folder (OUT/model of a train run)")
    sp.add_argument("--out", required=True, help="output JSON file")
    sp.set_defaults(func=cmd_eval)

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
