"""Optional reporters for the records written to metrics.jsonl: TensorBoard and Weights & Biases (`report_to`).

`append_metrics` is the one call the trainer and the optimizer make per record: it appends the record to
metrics.jsonl and hands its numbers to each reporter of `train.report_to`, opened on first use for the
record's folder. Nested maps become slash-separated tags (`domain_loss/code`, `alpha/books`); the step is
the record's `step`. TensorBoard writes OUT/tensorboard/; W&B runs offline (OUT/wandb/) unless WANDB_MODE says
otherwise, in project WANDB_PROJECT (default `tandem`). Only the writing rank reports.
"""

from __future__ import annotations

import atexit
import math
import os
from pathlib import Path
from typing import Any

from tandem.errors import InputError
from tandem.io import append_jsonl

REPORTERS = ("tensorboard", "wandb")

_open: dict[tuple[str, str], Any] = {}  # (reporter, folder) -> its writer


def _is_main() -> bool:
    try:
        from tandem.training.distributed import is_main
    except ImportError:
        return True
    return is_main()


def flatten(record: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a record as {"a/b": value}; None, NaN, strings and the step itself are left out."""
    out: dict[str, float] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and key != "step":
            out[key] = float(v)
    return out


def require(reporters: list[str]) -> None:
    """Fail early, with the install hint, when a reporter's package is missing."""
    for r in reporters:
        if r == "tensorboard":
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise InputError("train.report_to: tensorboard needs the `tensorboard` package; "
                                 "pip install 'tandem-mix[tracking]'") from None
        elif r == "wandb":
            try:
                import wandb  # noqa: F401
            except ImportError:
                raise InputError("train.report_to: wandb needs the `wandb` package; pip install 'tandem-mix[tracking]'") from None
        elif r != "none":
            raise InputError(f"train.report_to: unknown reporter {r!r}; expected none, {', '.join(REPORTERS)}")


def _writer(reporter: str, folder: Path):
    key = (reporter, str(folder.resolve()))
    if key in _open:
        return _open[key]
    require([reporter])
    if reporter == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
    else:
        import wandb

        # One W&B run per process at a time: a record for a new folder (the next run of a compare) ends the last.
        for k in [k for k in _open if k[0] == "wandb"]:
            _open.pop(k).finish()
        config = None
        if (folder / "config.yaml").is_file():
            import yaml

            config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        writer = wandb.init(project=os.environ.get("WANDB_PROJECT", "tandem"), name=folder.name, dir=str(folder),
                            mode=os.environ.get("WANDB_MODE", "offline"), config=config, reinit="finish_previous")
    _open[key] = writer
    return writer


def append_metrics(path: str | os.PathLike, record: dict, report_to: list[str] | None = None) -> None:
    """Append `record` to the metrics.jsonl at `path` and send its numbers to the `report_to` reporters."""
    append_jsonl(path, record)
    reporters = [r for r in (report_to or []) if r != "none"]
    if not reporters or not _is_main():
        return
    folder = Path(path).parent
    values = flatten(record)
    step = int(record.get("step", 0))
    for r in reporters:
        w = _writer(r, folder)
        if r == "tensorboard":
            for tag, v in values.items():
                w.add_scalar(tag, v, step)
            w.flush()  # records are sparse (log_interval); readers should see them while the run goes on
        else:
            w.log(values, step=step)


def close(folder: str | os.PathLike | None = None) -> None:
    """Close the reporters of `folder` (all of them when None)."""
    target = None if folder is None else str(Path(folder).resolve())
    for key in [k for k in _open if target is None or k[1] == target]:
        w = _open.pop(key)
        (w.close if key[0] == "tensorboard" else w.finish)()


atexit.register(close)
