"""What every `tandem` subcommand shares: loading the config, preparing the data, logging, writing the resolved
config, and removing what a command created when its input turns out to be bad."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from tandem.errors import InputError


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


@contextlib.contextmanager
def removed_on_input_error(out: Path):
    """Remove the folders this command creates for `out` if an InputError turns up once work has started (a
    domain shorter than one sequence, a model the data does not fit), so bad input leaves nothing behind."""
    created = None  # the outermost folder that does not exist yet
    if not out.exists():
        created = out
        while not created.parent.exists():
            created = created.parent
    # In a folder that existed but held no run, the files that claim a run (tandem.runs) must go too, or the
    # corrected rerun would be refused as a rerun into a used folder.
    claimed = [] if created is not None or (out / "run.json").exists() else [out / "run.json", out / "config.yaml"]
    try:
        yield
    except InputError:
        if created is not None:
            import shutil

            shutil.rmtree(created, ignore_errors=True)
        for f in claimed:
            f.unlink(missing_ok=True)
        raise


def write_config(cfg, out: Path) -> None:
    import yaml

    from tandem.io import write_text

    from tandem.runs import resolved_dict

    write_text(out / "config.yaml", yaml.safe_dump(resolved_dict(cfg), sort_keys=False))
