"""The `tandem` command: a table of subcommands, each defined (arguments and behaviour) in the module of its family.

Input errors print one line on stderr and exit with code 2; nothing is written for them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from tandem import __version__
from tandem.cli.common import Parser
from tandem.errors import InputError

# The command table: family module (tandem.cli.<module>) -> the subcommands it defines, in `tandem --help` order.
COMMANDS = {
    "data": ("prepare", "corpus", "tasks", "ecommerce"),
    "train": ("train", "eval", "metrics"),
    "mix": ("optimize", "run", "recommend"),
    "compare": ("compare",),
    "report": ("export", "report"),
    "plan": ("init", "validate"),
}


def _common(sp, config=True):
    """The arguments every subcommand shares: the config and its overrides (where it reads one), --quiet."""
    if config:
        sp.add_argument("config", help="YAML config file")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set train.steps=200 (repeatable)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="tandem",
        description="Learn how to mix training data across domains for language models (TANDEM, DoReMi, DoGE and peers).",
    )
    p.add_argument("--version", action="version", version=f"tandem {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(f"tandem.cli.{module}").register(sub, _common)
    return p


def _internal_error_log(args) -> str:
    """Write the current exception's traceback to OUT/tandem-error.log (or the working folder's) and name it."""
    import tempfile
    import traceback

    out = getattr(args, "out", None)
    candidates = []
    if out and Path(out).is_dir():  # never beside OUT: nothing is written outside the output folder
        candidates.append(Path(out) / "tandem-error.log")
    candidates.append(Path(tempfile.gettempdir()) / "tandem-error.log")
    for path in candidates:
        try:
            path.write_text(traceback.format_exc(), encoding="utf-8")
            return str(path)
        except OSError:
            continue
    return "(no writable place for it)"


def _one_line(err) -> str:
    """The message on one line whatever it quotes: a path or value holding a newline is shown escaped."""
    return str(err).replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    from tandem.training import distributed

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error (one line already printed: Parser.error)
        return done.code if isinstance(done.code, int) else 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    for name in ("out", "config", "model"):  # an empty path names no file: outputs would land in the working folder
        value = getattr(args, name, None)
        if value is not None and not str(value).strip():
            print(f"error: tandem {args.command}: --{name if name != 'config' else 'config'}: expected a path, got an "
                  f"empty string", file=sys.stderr)
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
            print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except FloatingPointError as err:
        if distributed.is_main():  # the ranks agree on a refused step (tandem.training.learner); one line says it
            print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except MemoryError:  # an allocation the settings ask for and the machine cannot give
        if distributed.is_main():
            print("error: out of memory: the settings ask for more than this machine has (train.batch_size, "
                  "train.seq_len, the model's size or eval.batch_size)", file=sys.stderr)
        return 2
    except OSError as err:  # the environment: a full or read-only disk, a permission, a file that vanished
        if distributed.is_main():
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            print(f"error: {_one_line(f'{where}{err.strerror or err}')}", file=sys.stderr)
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


def cli() -> None:
    """The console entry point (`tandem`, `python -m tandem`): main(), then exit with its code.

    A process torchrun launched beside others (a process group) ends without the interpreter's finalisation. PyTorch's gloo
    worker threads outlive destroy_process_group (functions in torch.distributed.nn keep the group as a default
    argument), and a worker still releasing its last collective's tensors while the interpreter finalises aborts
    the process ("terminate called without an active exception", exit -6) after a run that succeeded: a few
    launches in a hundred on two busy cores. Every output is written and closed by then; the exit handlers (the
    trackers' close) run here first, as they would at a normal exit.
    """
    from tandem.training import distributed

    code = main()
    if distributed.launched_world_size() <= 1:
        raise SystemExit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    cli()
