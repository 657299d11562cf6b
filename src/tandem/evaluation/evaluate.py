"""Per-domain evaluation on the valid and test splits: exact token-mean loss, perplexity, average and worst."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from tandem.data.cache import PreparedData
from tandem.data.sampler import eval_windows
from tandem.data.sft import SFTExamples, eval_rows, trim_padding
from tandem.training import distributed
from tandem.training.learner import autocast_for, count_flops
from tandem.training.loss import DomainLossMeter, domain_sums, token_losses


def summarize(per_domain: dict[str, float]) -> dict:
    """{per_domain, average (unweighted mean over domains), worst (max)} plus perplexities."""
    vals = [v for v in per_domain.values() if v is not None and math.isfinite(v)]
    avg = float(np.mean(vals)) if vals else float("nan")
    worst = float(np.max(vals)) if vals else float("nan")
    return {
        "per_domain": per_domain,
        "average": avg,
        "worst": worst,
        "perplexity": {d: (math.exp(v) if v is not None and math.isfinite(v) else None) for d, v in per_domain.items()},
    }


@torch.no_grad()
def domain_split_losses(
    model: nn.Module,
    arrays: list[np.ndarray | SFTExamples],
    seq_len: int,
    max_tokens: int | None,
    batch_size: int,
    device: torch.device,
    precision: str = "auto",
    flops_params: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Token-mean loss and token count per array, scoring every (capped) target token once.

    SFT examples are scored one per row with the training rows' masking: only response tokens count. Under torchrun
    each rank scores a share of the batches and the per-domain sums are added over ranks (a collective: every rank
    calls it); a sharded model is forwarded equally often on every rank, with empty batches where a share is short.
    `flops_params`: the model's parameters N, to add its forward (2 N per input position, this rank's) to the
    process's FLOPs meter (tandem.training.learner.flops_used), as a search's evaluation of its models counts.
    """
    model.eval()
    autocast = autocast_for(device, precision)
    meter = DomainLossMeter(len(arrays))
    for item in distributed.share(_eval_batches(arrays, seq_len, max_tokens, batch_size),
                                  equal_count=distributed.is_sharded(model)):
        i, x, y = _stacked(*(item or (0, [], False)), seq_len)
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        dom = torch.full((len(x),), i, dtype=torch.long, device=device)
        with autocast():
            logits = model(x)
        if flops_params is not None:
            count_flops(2.0 * flops_params * x.numel())
        loss, mask = token_losses(logits, y)
        meter.add(*domain_sums(loss, mask, dom, len(arrays)))
    distributed.all_reduce_meter(meter)
    return meter.losses(), meter.counts


def _eval_batches(arrays: list[np.ndarray | SFTExamples], seq_len: int, max_tokens: int | None,
                  batch_size: int) -> list[tuple[int, list, bool]]:
    """(domain index, rows, whether SFT) of every evaluation batch, in a fixed order: full windows in batches, each
    shorter tail window alone. Rows stay views of the token files until their batch is stacked."""
    out = []
    for i, arr in enumerate(arrays):
        if isinstance(arr, SFTExamples):
            rows = list(eval_rows(arr, seq_len, max_tokens))
            groups = [rows[j : j + batch_size] for j in range(0, len(rows), batch_size)]
        else:
            if len(arr) < 2:
                continue
            full, tail = [], []
            for x, y in eval_windows(arr, seq_len, max_tokens):
                (full if len(x) == seq_len else tail).append((x, y))
            groups = [full[j : j + batch_size] for j in range(0, len(full), batch_size)] + [[t] for t in tail]
        out += [(i, g, isinstance(arr, SFTExamples)) for g in groups]
    return out


def eval_positions(arrays: list[np.ndarray | SFTExamples], seq_len: int, max_tokens: int | None,
                   batch_size: int) -> int:
    """Input positions domain_split_losses forwards over `arrays` (one process): what one evaluation costs, 2 N
    FLOPs each. A text split of n scored tokens (capped) is n - 1 of them; an SFT split's batches are trimmed of
    their common padding, so they are counted batch by batch."""
    total = 0
    for i, arr in enumerate(arrays):
        if isinstance(arr, SFTExamples):
            total += sum(_stacked(j, rows, True, seq_len)[1].size
                         for j, rows, _ in _eval_batches([arr], seq_len, max_tokens, batch_size))
        elif len(arr) >= 2:
            total += (len(arr) if max_tokens is None else min(len(arr), max_tokens + 1)) - 1
    return total


def _stacked(i: int, rows: list, sft: bool, seq_len: int) -> tuple[int, np.ndarray, np.ndarray]:
    """A batch's inputs and targets as arrays (SFT examples trimmed of their common padding); no rows: an empty
    batch, which a sharded model still forwards with the other ranks."""
    if not rows:
        return i, np.zeros((0, seq_len), np.int64), np.zeros((0, seq_len), np.int64)
    x, y = np.stack([a for a, _ in rows]), np.stack([b for _, b in rows])
    return (i, *trim_padding(x, y)) if sft else (i, x, y)


def evaluate(model: nn.Module, data: PreparedData, seq_len: int, max_tokens: int | None, batch_size: int,
             device: torch.device, precision: str = "auto", splits=("valid", "test")) -> dict:
    """{f"{split}_loss": summary} for each split; domains without text in a split are reported as null."""
    out = {}
    for split in splits:
        losses, counts = domain_split_losses(model, data.split_arrays(split), seq_len, max_tokens, batch_size, device, precision)
        per = {d: (float(l) if c > 0 else None) for d, l, c in zip(data.domains, losses, counts)}
        out[f"{split}_loss"] = summarize(per)
        out[f"{split}_tokens"] = {d: int(c) for d, c in zip(data.domains, counts)}
    return out


def format_eval(result: dict, split: str = "test") -> str:
    s = result[f"{split}_loss"]
    rows = [("domain", "loss", "ppl")]
    for d, v in s["per_domain"].items():
        rows.append((d, "-" if v is None else f"{v:.4f}", "-" if v is None else f"{math.exp(v):.2f}"))
    rows.append(("average", f"{s['average']:.4f}", ""))
    rows.append(("worst", f"{s['worst']:.4f}", ""))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}" for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return f"{split} loss per domain\n" + "\n".join(lines)


def finished_eval(out: Path, weights: dict) -> dict | None:
    """OUT/eval.json of a finished stage two on these weights, if there is one (what --resume keeps)."""
    import json

    done = out / "eval.json"
    if done.is_file():
        try:
            ev = json.loads(done.read_text())
            if ev.get("weights") == weights:
                return ev
        except json.JSONDecodeError:
            pass
    return None
