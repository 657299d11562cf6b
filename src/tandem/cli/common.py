"""What every `tandem` subcommand shares: loading the config (with its --set overrides), preparing the data, and
where its log lines go."""

from __future__ import annotations

import sys


def log_to(quiet: bool):
    return (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))


def load(args):
    from tandem.config import load_config

    return load_config(args.config, args.set)


def prepare(cfg, args):
    from tandem.data.cache import prepare_data
    from tandem.training.distributed import main_first

    with main_first():  # under torchrun rank 0 fills the token cache, then the other ranks read it
        return prepare_data(cfg, log=log_to(args.quiet), progress=not args.quiet)
