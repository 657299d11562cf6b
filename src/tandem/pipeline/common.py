"""What every job shares: the prepared data (built once under torchrun), and its output folder: what it created is
removed when its input turns out to be bad, and the resolved config is written beside its results."""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml

from tandem.data.cache import PreparedData, prepare_data
from tandem.errors import InputError
from tandem.io import write_text
from tandem.runs import resolved_dict
from tandem.training.distributed import main_first


def prepare(cfg, quiet: bool = True, log=lambda s: None) -> PreparedData:
    """The token cache for cfg; under torchrun rank 0 fills it, then the other ranks read it."""
    with main_first():
        return prepare_data(cfg, log=log, progress=not quiet)


@contextlib.contextmanager
def removed_on_input_error(out: Path):
    """Remove the folders this command creates for `out` if an InputError turns up once work has started (a
    domain shorter than one sequence, a model the data does not fit), or the machine refuses what the input asks
    (memory, storage: the CLI ends those as input errors too), so bad input leaves nothing behind."""
    created = None  # the outermost folder that does not exist yet
    if not out.exists():
        created = out
        while not created.parent.exists():
            created = created.parent
    # In a folder that existed but held no run, the files that claim a run (tandem.runs) must go too, or the
    # corrected rerun would be refused as a rerun into a used folder.
    # Only those this command creates: a refused --resume must not delete the files of the run it refused.
    claimed = [] if created is not None else [f for f in (out / "run.json", out / "config.yaml") if not f.exists()]
    try:
        yield
    except (InputError, MemoryError, OSError):
        if created is not None:
            import shutil

            shutil.rmtree(created, ignore_errors=True)
        for f in claimed:
            f.unlink(missing_ok=True)
        raise


def write_config(cfg, out: Path) -> None:
    write_text(out / "config.yaml", yaml.safe_dump(resolved_dict(cfg), sort_keys=False))
