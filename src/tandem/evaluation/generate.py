"""Task metrics from greedy generation on SFT domains that declare `metric` (accuracy or exact_match_f1).

For every example of a split, the conversation up to its last assistant turn is rendered with the
same chat template the domain was trained with (`PreparedData.chat`) plus the generation prompt;
the model continues it greedily and the answer is scored against that assistant turn
(tandem.evaluation.metrics). Generation stops at the tokenizer's end-of-text token (the end of an
assistant turn in every template) or at the first newline: metric tasks have one-line answers.

The built-in GPT generates in right-padded batches, recomputing the full (short) sequence each
step: under causal attention a row's last real token never sees the padding after it, so a batched
answer is the answer the model gives the example alone. A Hugging Face model generates one example
at a time with its key-value cache (no padding at all), which makes a 135M-parameter model
affordable on CPU. Prompts longer than `seq_len - max_new_tokens` keep their last tokens.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
import torch.nn as nn

from tandem.errors import InputError
from tandem.evaluation.metrics import average_tasks, score_task
from tandem.training.learner import autocast_for

STOP_STRINGS = ("\n",)


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    decode: Callable[[list[int]], str],
    eos_id: int,
    max_new_tokens: int = 48,
    stop_strings: Sequence[str] = STOP_STRINGS,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    precision: str = "auto",
) -> list[str]:
    """The greedy continuation of each prompt (token ids), as text cut before the first stop string."""
    if any(len(p) == 0 for p in prompts):
        raise ValueError("greedy_generate: every prompt needs at least one token")
    model.eval()
    device = torch.device(device)
    autocast = autocast_for(device, precision)
    answers: list[str] = [""] * len(prompts)
    hf = getattr(getattr(model, "_orig_mod", model), "hf", None)
    if hf is not None:
        for i, p in enumerate(prompts):
            with autocast():
                new_ids = _greedy_cached(hf, p, decode, eos_id, max_new_tokens, stop_strings, device)
            answers[i] = _cut(decode(new_ids), stop_strings)
        return answers
    # Similar lengths share a batch, so little compute goes to padding.
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        seqs = {i: list(prompts[i]) for i in rows}
        new: dict[int, list[int]] = {i: [] for i in rows}
        active = list(rows)
        for _ in range(max_new_tokens):
            if not active:
                break
            lens = torch.tensor([len(seqs[i]) for i in active])
            x = torch.full((len(active), int(lens.max())), eos_id, dtype=torch.long)
            for r, i in enumerate(active):
                x[r, : len(seqs[i])] = torch.tensor(seqs[i], dtype=torch.long)
            with autocast():
                logits = model(x.to(device))
            nxt = logits[torch.arange(len(active)), (lens - 1).to(device)].float().argmax(-1).tolist()
            still = []
            for i, t in zip(active, nxt):
                if t == eos_id:
                    continue
                seqs[i].append(t)
                new[i].append(t)
                if not any(s in decode(new[i]) for s in stop_strings):
                    still.append(i)
            active = still
        for i in rows:
            answers[i] = _cut(decode(new[i]), stop_strings)
    return answers


def _cut(text: str, stop_strings: Sequence[str]) -> str:
    for s in stop_strings:
        text = text.split(s, 1)[0]
    return text.strip()


def _greedy_cached(hf: nn.Module, prompt: Sequence[int], decode, eos_id: int, max_new_tokens: int,
                   stop_strings: Sequence[str], device: torch.device) -> list[int]:
    """One prompt through a Hugging Face causal LM, feeding one new token per step on its key-value cache."""
    ids = torch.tensor([list(prompt)], dtype=torch.long, device=device)
    past, new = None, []
    for _ in range(max_new_tokens):
        out = hf(input_ids=ids, past_key_values=past, use_cache=True)
        past = out.past_key_values
        t = int(out.logits[0, -1].float().argmax())
        if t == eos_id:
            break
        new.append(t)
        if any(s in decode(new) for s in stop_strings):
            break
        ids = torch.tensor([[t]], dtype=torch.long, device=device)
    return new


def task_examples(cfg, data, domain: str, split: str, limit: int | None = None) -> tuple[list[list[int]], list[str]]:
    """Prompt token ids (chat-template rendered, with the generation prompt) and gold answers of a split."""
    from tandem.data.cache import _documents, resolve_domains

    if data.chat is None or not data.is_sft(domain):
        raise InputError(f"data.domains.{domain}: metric needs an SFT domain (kind: sft)")
    ds = next(d for d in resolve_domains(cfg) if d.name == domain)
    convs = _documents(ds, split, cfg) or []
    prompts, golds = [], []
    for conv in convs[:limit] if limit is not None else convs:
        last = max(k for k, m in enumerate(conv) if m["role"] == "assistant")
        prompts.append(data.tokenizer.encode(data.chat.prompt(conv[:last])))
        golds.append(conv[last]["content"])
    return prompts, golds


def metric_domains(cfg) -> dict[str, str]:
    """{domain: metric} for the domains that declare one."""
    return {d: spec.metric for d, spec in cfg.data.domains.items() if spec.metric is not None}


def evaluate_tasks(model: nn.Module, cfg, data, split: str = "test", max_examples: int | None = None,
                   max_new_tokens: int = 48, batch_size: int = 16, device: torch.device | str = "cpu",
                   log: Callable[[str], None] = lambda s: None) -> dict:
    """Per-task metrics and their averages on `split`, with a few examples of each task's answers."""
    tasks = metric_domains(cfg)
    if not tasks:
        raise InputError("data.domains: no domain declares a metric (set metric: accuracy or exact_match_f1)")
    budget = cfg.train.seq_len - max_new_tokens
    if budget < 1:
        raise InputError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in train.seq_len={cfg.train.seq_len}")
    per_task, samples = {}, {}
    t0 = time.perf_counter()
    for domain, metric in tasks.items():
        prompts, golds = task_examples(cfg, data, domain, split, max_examples)
        if not golds:
            log(f"{domain}: no {split} examples; skipped")
            continue
        truncated = sum(len(p) > budget for p in prompts)
        prompts = [p[-budget:] for p in prompts]
        preds = greedy_generate(model, prompts, data.tokenizer.decode, data.tokenizer.eos_id, max_new_tokens,
                                batch_size=batch_size, device=device, precision=cfg.train.precision)
        per_task[domain] = {**score_task(metric, preds, golds), "metric": metric, "truncated_prompts": truncated}
        samples[domain] = [{"gold": g, "prediction": p} for g, p in list(zip(golds, preds))[:5]]
        log(f"{domain}: {metric} score {per_task[domain]['score']:.3f} on {len(golds)} examples")
    return {"split": split, "per_task": per_task, "average": average_tasks(per_task), "samples": samples,
            "max_new_tokens": max_new_tokens, "wall_time_s": time.perf_counter() - t0}


def sft_outcome(cfg, data, model, device, log) -> dict:
    """SFT domains: how many responses do not fit in seq_len, and task metrics where a domain declares one."""
    from tandem.data.sft import fit_report

    out = {}
    fit = fit_report(data.arrays, cfg.train.seq_len)
    if fit:
        out["sft_examples"] = fit
    if cfg.eval.task_metrics and metric_domains(cfg):
        res = evaluate_tasks(model, cfg, data, "test", max_examples=cfg.eval.task_examples,
                             max_new_tokens=min(48, cfg.train.seq_len // 2), batch_size=cfg.eval.batch_size,
                             device=device, log=log)
        out["task_metrics"] = {k: res[k] for k in ("per_task", "average", "max_new_tokens", "wall_time_s")}
    return out


def format_metrics(result: dict) -> str:
    """A table: one row per task with its metrics, then the averages."""
    cols = ("accuracy", "exact_match", "f1")
    rows = [("task", "n", *cols)]

    def cell(v) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    for d, r in result["per_task"].items():
        rows.append((d, str(r["examples"]), *(cell(r.get(c)) for c in cols)))
    avg = result["average"]
    rows.append(("average", "", *(cell(avg.get(c)) for c in cols)))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(f"{c:<{w[0]}}" if k == 0 else f"{c:>{w[k]}}" for k, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return f"{result['split']} task metrics (greedy generation)\n" + "\n".join(lines)
