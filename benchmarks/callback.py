"""`python -m benchmarks callback`: what steering a Hugging Face Trainer costs, per Trainer step.

The same Trainer run (a GPT-2 of the default config's target size, the default data, one torch thread) is timed
with no callback (the dataset draws a fixed uniform mixture), with `TandemCallback` (tandem) and with
`OnlineCallback` (odm, ado, skillit, aioli). The runs alternate, `--repeats` rounds of all of them, and each
callback's cost is its median time per step over the plain run's median, both from the same rounds: on a shared
machine the load drifts, and alternation spreads that drift over every variant alike.

What each callback adds, and why: ODM and ADO score the step's own rows once more before the update (one forward
without gradients); Skill-It evaluates the validation sets every `free_steps` steps and measures its skills graph
at the start; Aioli evaluates after each probe; TANDEM's reference takes `probe_steps` steps per episode (a forward
and backward of train and validation rows) and measures Delta on held batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("plain", "tandem", "odm", "ado", "skillit", "aioli")


def _one_run(variant: str, config: Path, overrides: list[str], cfg, data, steps: int, out: Path) -> float:
    """Seconds per Trainer step of one run after its first `warm` steps (model build and graph excluded)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    from tandem.config import load_config
    from tandem.integrations.hf import MixtureDataset, OnlineCallback, TandemCallback
    from tandem.models import gpt_config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = gpt_config(cfg.model, data.vocab_size, cfg.train.seq_len)  # the preset's sizes and the config's overrides
    model = GPT2LMHeadModel(GPT2Config(vocab_size=data.vocab_size, n_positions=cfg.train.seq_len, n_embd=g.n_embd,
                                       n_layer=g.n_layer, n_head=g.n_head, bos_token_id=0, eos_token_id=0))
    dataset = MixtureDataset(data, cfg.train.seq_len, seed=cfg.seed, draw_size=8)
    callbacks = []
    if variant != "plain":
        vcfg = load_config(config, [*overrides, f"mixer.method={variant}"])
        cls = TandemCallback if variant == "tandem" else OnlineCallback
        callbacks.append(cls(vcfg, data, dataset, out_dir=None))

    class Clock(TrainerCallback):
        """Wall time from the end of step `warm` to the end of the run: the steady state of every variant."""

        def __init__(self, warm: int):
            self.warm, self.t0, self.t1 = warm, None, None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == self.warm:
                self.t0 = time.perf_counter()
            self.t1 = time.perf_counter()

    warm = cfg.mixer.warmup_steps + 1
    clock = Clock(warm)
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=cfg.train.batch_size,
                             learning_rate=cfg.train.lr, logging_steps=10_000, save_strategy="no", report_to="none",
                             use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    Trainer(model=model, args=args, train_dataset=dataset, callbacks=[*callbacks, clock]).train()
    return (clock.t1 - clock.t0) / (steps - warm)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks callback", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=Path("configs/default.yaml"))
    p.add_argument("--steps", type=int, default=120, help="Trainer steps per run (default 120)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of every variant, alternating (default 3)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/callback.json"))
    a = p.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "plain" not in variants:
        print(f"error: --variants: expected plain and any of {', '.join(VARIANTS[1:])}, got {a.variants}",
              file=sys.stderr)
        return 2

    from tandem.config import load_config
    from tandem.data.cache import prepare_data

    cfg = load_config(a.config, a.set)
    data = prepare_data(cfg)
    times: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for v in variants:
                times[v].append(_one_run(v, a.config, a.set, cfg, data, a.steps, Path(tmp) / f"{v}-{r}"))
                print(f"round {r}: {v} {times[v][-1] * 1000:.1f} ms per step", flush=True)
    plain = statistics.median(times["plain"])
    result = {"config": str(a.config), "overrides": a.set, "steps": a.steps, "repeats": a.repeats,
              "seconds_per_step": times,
              "ratio_to_plain": {v: statistics.median(t) / plain for v, t in times.items()}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| variant | ms per step (median) | x plain |\n|---|---|---|")
    for v in variants:
        print(f"| {v} | {statistics.median(times[v]) * 1000:.1f} | {result['ratio_to_plain'][v]:.3f} |")
    return 0
