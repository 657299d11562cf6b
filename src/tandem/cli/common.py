"""What every `tandem` subcommand shares: loading the config (with its --set overrides), preparing the data, and
where its log lines go."""

from __future__ import annotations

import argparse
import math
import sys


def log_to(quiet: bool):
    return (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))


def load(args):
    from tandem.config import load_config

    return load_config(args.config, args.set)


def prepare(cfg, args):
    from tandem.data.cache import prepare_data
    from tandem.io import refuse_overlap
    from tandem.training.distributed import main_first

    if getattr(args, "out", None):  # before the cache is written: an OUT that holds an input is refused first
        refuse_overlap(args.out, cfg.input_paths())  # the config file among them

    with main_first():  # under torchrun rank 0 fills the token cache, then the other ranks read it
        return prepare_data(cfg, log=log_to(args.quiet), progress=not args.quiet)


def positive_number(text: str) -> float:
    """An argparse type: a finite number above zero (`--scale inf` or `nan` is refused up front)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
    return x


class Parser(argparse.ArgumentParser):
    """argparse with tandem's error contract: a usage mistake is one `error:` line on stderr and exit code 2."""

    def error(self, message: str):
        one_line = " ".join(message.split()).removeprefix("argument ")
        sys.stderr.write(f"error: {one_line} (see {self.prog} --help)\n")
        raise SystemExit(2)


def add_dry_run(sp) -> None:
    """--dry-run: check what needs no work (config, sources, OUT), print the plan, write nothing (tandem.cli.plan)."""
    sp.add_argument("--dry-run", action="store_true", help="check the config, sources and OUT, print the plan, write "
                    "nothing")
