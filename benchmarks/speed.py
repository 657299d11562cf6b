"""Speed benchmarks: `python -m benchmarks speed [--quick]`.

1. train_loop: tokens/s of the tandem training step (`MixtureSampler.sample` +
   `objective_coefficients(domain_token_counts(...))` + `Learner.step`, exactly what
   `tandem.training.trainer.train` does per step) against a bare PyTorch loop on the same GPT with
   the same AdamW settings (pre-sampled random tokens, `F.cross_entropy`, backward, clip, step).
   Same process; rounds of warm-up + timed steps interleaved in ABBA order (tandem, bare | bare,
   tandem | ...), median tokens/s of each side; plus a cross-check with single steps alternated.

2. overhead: wall time of `tandem.mixing.optimize.optimize` (TANDEM, default config, tiny proxy)
   divided by the wall time of training the same proxy alone for the same number of proxy steps
   (W + T (K + E)) with the trainer's step. The floor is the step count ratio
   (W + T (E + K + K (1 + v))) / (W + T (E + K)), v = mixer.valid_fraction (a reference step runs the proxy's
   rows plus v x batch validation rows), to which Delta evaluation adds its forward passes.

   Paired measurement: the shared 2-CPU VMs this is sized for change speed by up to 2x over minutes
   with no other process of ours running (seen while writing this), which swamps a 10% goal when
   the two sides are timed one after the other. So the proxy-alone baseline is run *inside* the
   same time window: after every proxy step of optimize(), one step of an independent proxy-alone
   learner (own model, optimizer, sampler, same settings) is taken and timed; optimize's time is its
   wall time minus those baseline steps. An A/A run (proxy alone paired with proxy alone) checks
   that pairing itself is neutral (ratio ~1.00).

   The optimize runs are instrumented (perf_counter around the twins' steps, batch drawing, Delta
   evaluation, sync, checkpointing and output writing) to break the wall time down; the wrappers
   cost microseconds against steps of tens of milliseconds.

Results go to benchmarks/results/speed.json (atomic write) and a table is printed. Other processes'
CPU use is measured (from /proc/stat minus this process's own CPU time) during every timed
segment and recorded next to the numbers; before each segment the benchmark waits (up to
--max-wait seconds in total) until the machine is quiet.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "speed.json"
BENCHES = ("train_loop", "overhead")

GOAL_TRAIN_RATIO = 0.95  # tandem tokens/s >= 95% of the bare loop's
GOAL_OVERHEAD = 1.10  # optimize wall time within 10% of the twin floor


@dataclass
class Sizes:
    # train_loop
    presets: tuple[str, ...] = ("small", "mini")
    batch_size: int = 16
    seq_len: int = 256
    rounds: int = 3
    warmup: int = 5
    steps: int = 30
    alt_pairs: int = 16  # cross-check: tandem and bare steps alternated one by one, this many of each
    # overhead: (E, K) pairs with checkpoint_interval 0, then (E, K) with the default checkpointing
    ek: tuple[tuple[int, int], ...] = ((10, 5), (20, 5), (5, 5))
    ek_ckpt: tuple[tuple[int, int], ...] = ((10, 5),)
    loop_steps: int = 300  # T (E + K) for every pair: T = loop_steps / (E + K)
    mixer_warmup: int | None = None  # W; None: the config's mixer.warmup_steps
    overhead_rounds: int = 1


FULL = Sizes()
QUICK = Sizes(rounds=2, warmup=2, steps=6, alt_pairs=3, ek=((10, 5), (5, 5)), loop_steps=90, mixer_warmup=10)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# The machine: description, load, and other processes' CPU use while we measure
# ----------------------------------------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=REPO).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(threads: int) -> dict:
    import torch

    import tandem

    model = ""
    for line in _run(["lscpu"]).splitlines():
        if line.lower().startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    status = _run(["git", "status", "--porcelain", "--", "src"])
    return {
        "cpu_model": model or platform.processor(),
        "cpus": os.cpu_count(),
        "torch_threads": threads,
        "ram_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tandem": tandem.__version__,
        "tandem_cli_version": _run(["tandem", "--version"]),
        "git_commit": _run(["git", "rev-parse", "HEAD"]),
        "src_modified": bool(status),  # uncommitted changes under src/ when measured
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _proc_stat() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs together, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class CpuWindow:
    """Wall time, this process's CPU time and other processes' CPU time over a `with` block.

    foreign_frac is the share of the whole machine (all CPUs) used by anything but this process:
    0.5 on a 2-CPU machine means one other core-second per wall second.
    """

    def __enter__(self) -> "CpuWindow":
        self._stat0, self._own0, self._t0 = _proc_stat(), _own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self.own_cpu = _own_cpu() - self._own0
        stat1 = _proc_stat()
        self.foreign_frac = None
        if self._stat0 is not None and stat1 is not None:
            hz = os.sysconf("SC_CLK_TCK")
            busy = (stat1[0] - self._stat0[0]) / hz
            total = (stat1[1] - self._stat0[1]) / hz
            if total > 0:
                self.foreign_frac = round(max(busy - self.own_cpu, 0.0) / total, 4)

    def as_dict(self) -> dict:
        return {"window_s": round(self.wall, 4), "own_cpu_s": round(self.own_cpu, 3), "foreign_cpu_frac": self.foreign_frac}


class QuietGate:
    """Waits until other processes use less than `threshold` of the machine, within a total time budget."""

    def __init__(self, threshold: float, budget_s: float, window_s: float = 2.0):
        self.threshold, self.budget, self.window = threshold, budget_s, window_s
        self.waited = 0.0
        self.gave_up = 0  # segments measured while still busy (budget spent)

    def sample(self) -> float | None:
        with CpuWindow() as w:
            time.sleep(self.window)
        return w.foreign_frac

    def wait(self, what: str) -> dict:
        start = time.perf_counter()
        busy = self.sample()
        while busy is not None and busy > self.threshold:
            left = self.budget - self.waited - (time.perf_counter() - start)
            if left <= 0:
                self.gave_up += 1
                log(f"  [load] other processes use {busy:.0%} of the CPUs; wait budget spent, measuring {what} anyway")
                break
            top = _run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"]).splitlines()[:3]
            log(f"  [load] other processes use {busy:.0%} of the CPUs ({'; '.join(t.strip() for t in top)}); "
                f"waiting before {what}")
            time.sleep(min(20.0, max(left, 0.0)))
            busy = self.sample()
        waited = time.perf_counter() - start
        self.waited += waited
        return {"foreign_cpu_frac_before": busy, "loadavg_before": loadavg(), "waited_s": round(waited, 1)}


# ----------------------------------------------------------------------------------------------
# Shared set-up
# ----------------------------------------------------------------------------------------------


def load(config: Path, overrides: list[str]):
    from tandem.config import load_config
    from tandem.data.cache import prepare_data

    cfg = load_config(config, overrides)
    data = prepare_data(cfg, log=log)
    return cfg, data


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# ----------------------------------------------------------------------------------------------
# 1. Training loop vs a bare PyTorch loop
# ----------------------------------------------------------------------------------------------


class TandemLoop:
    """The per-step work of tandem.training.trainer.train (without its logging every log_interval steps)."""

    name = "tandem"

    def __init__(self, cfg, data, preset: str):
        from tandem.config import ModelConfig
        from tandem.data.sampler import MixtureSampler
        from tandem.models import build_model
        from tandem.training.learner import Learner
        from tandem.training.trainer import optim_config, setup_torch

        tc = cfg.train
        device = setup_torch(tc)
        self.names = data.domains
        model = build_model(ModelConfig(preset=preset), data.vocab_size, tc.seq_len, cfg.seed, cfg.base_dir)
        self.learner = Learner(model, optim_config(tc), len(self.names), device, tc.precision)
        self.sampler = MixtureSampler(data.split_arrays("train"), tc.seq_len, cfg.seed, self.names)
        self.weights = np.full(len(self.names), 1.0 / len(self.names))
        self.batch_size = tc.batch_size
        self.tokens = 0

    def step(self) -> None:
        from tandem.training.loss import domain_token_counts, objective_coefficients

        batch = self.sampler.sample(self.weights, self.batch_size)
        coef = objective_coefficients(domain_token_counts(batch.y, batch.domain, len(self.names)))
        self.learner.lr()
        meter = self.learner.step([(batch, coef)])
        loss = meter.mean()
        if not np.isfinite(loss):
            raise FloatingPointError("non-finite loss in the benchmark")
        self.tokens += batch.x.numel()


class BareLoop:
    """The same GPT and AdamW settings, random tokens drawn beforehand, nothing but the step."""

    name = "bare"

    def __init__(self, cfg, data, preset: str, n_batches: int):
        import torch

        from tandem.config import ModelConfig
        from tandem.models import build_model
        from tandem.training.trainer import optim_config

        tc = cfg.train
        oc = optim_config(tc)
        self.model = build_model(ModelConfig(preset=preset), data.vocab_size, tc.seq_len, cfg.seed, cfg.base_dir)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": oc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=oc.lr, betas=(oc.beta1, oc.beta2), foreach=True,
        )
        self.params = params
        self.clip = oc.grad_clip
        self.V = data.vocab_size
        g = torch.Generator().manual_seed(1234)
        rows = [torch.randint(0, self.V, (tc.batch_size, tc.seq_len + 1), generator=g) for _ in range(n_batches)]
        self.batches = [(r[:, :-1].contiguous(), r[:, 1:].contiguous()) for r in rows]
        self.i = 0
        self.tokens = 0

    def step(self) -> None:
        import torch
        import torch.nn.functional as F

        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = F.cross_entropy(logits.view(-1, self.V), y.view(-1))
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        self.tokens += x.numel()


def _timed_round(loop, warmup: int, steps: int, tokens_per_step: int, gate: QuietGate, what: str) -> dict:
    gate_info = gate.wait(what)
    for _ in range(warmup):
        loop.step()
    times = []
    with CpuWindow() as w:
        for _ in range(steps):
            t = time.perf_counter()
            loop.step()
            times.append(time.perf_counter() - t)
    total = float(sum(times))
    return {
        "tokens_per_s": steps * tokens_per_step / total,
        "step_s_median": _median(times),
        "step_s_min": min(times),
        "timed_s": total,
        **w.as_dict(),
        **gate_info,
    }


def _alternated(loops, pairs: int, tokens_per_step: int, gate: QuietGate, preset: str) -> dict:
    """Steps of the loops alternated one by one (order flipped every pair): drift-free, no per-round warm-up."""
    gate.wait(f"{preset} step-alternated")
    times: dict[str, list[float]] = {lp.name: [] for lp in loops}
    with CpuWindow() as w:
        for i in range(pairs):
            for lp in (loops if i % 2 == 0 else loops[::-1]):
                t = time.perf_counter()
                lp.step()
                times[lp.name].append(time.perf_counter() - t)
    med = {k: _median(v) for k, v in times.items()}
    return {"pairs": pairs, "step_s_median": med, "tokens_per_s": {k: tokens_per_step / v for k, v in med.items()},
            "ratio": med["bare"] / med["tandem"], **w.as_dict()}


def bench_train_loop(config: Path, sizes: Sizes, threads: int, gate: QuietGate) -> dict:
    cfg, data = load(config, [f"train.seq_len={sizes.seq_len}", f"train.batch_size={sizes.batch_size}",
                              f"train.threads={threads}", "train.device=cpu"])
    tokens_per_step = sizes.batch_size * sizes.seq_len
    out = {"settings": {"batch_size": sizes.batch_size, "seq_len": sizes.seq_len, "rounds": sizes.rounds,
                        "step_alternated_pairs": sizes.alt_pairs,
                        "warmup_steps_per_round": sizes.warmup, "timed_steps_per_round": sizes.steps,
                        "vocab_size": data.vocab_size, "precision": cfg.train.precision, "order": "tandem, bare | bare, tandem | ... (ABBA)"},
           "presets": {}}
    for preset in sizes.presets:
        loops = [TandemLoop(cfg, data, preset), BareLoop(cfg, data, preset, sizes.warmup + sizes.steps)]
        n_params = sum(p.numel() for p in loops[0].learner.model.parameters())
        rounds: dict[str, list[dict]] = {lp.name: [] for lp in loops}
        for r in range(sizes.rounds):
            for lp in (loops if r % 2 == 0 else loops[::-1]):  # ABBA: a linear drift of the machine cancels
                res = _timed_round(lp, sizes.warmup, sizes.steps, tokens_per_step, gate, f"{preset}/{lp.name} round {r + 1}")
                rounds[lp.name].append(res)
                log(f"  {preset:5s} round {r + 1} {lp.name:6s} {res['tokens_per_s']:9.0f} tok/s  "
                    f"(step {res['step_s_median'] * 1e3:.0f} ms, others' CPU {res['foreign_cpu_frac'] or 0:.0%})")
        alt = _alternated(loops, sizes.alt_pairs, tokens_per_step, gate, preset)
        log(f"  {preset:5s} alternated step by step: tandem/bare {alt['ratio']:.3f}")
        med = {k: _median([x["tokens_per_s"] for x in v]) for k, v in rounds.items()}
        per_round = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(rounds["tandem"], rounds["bare"])]
        ratio = med["tandem"] / med["bare"]
        out["presets"][preset] = {
            "params": int(n_params),
            "tandem_tokens_per_s": med["tandem"],
            "bare_tokens_per_s": med["bare"],
            "ratio": ratio,
            "ratio_per_round": per_round,
            "tandem_step_ms": 1e3 * _median([x["step_s_median"] for x in rounds["tandem"]]),
            "bare_step_ms": 1e3 * _median([x["step_s_median"] for x in rounds["bare"]]),
            "ratio_median_of_rounds": _median(per_round),
            "ratio_step_alternated": alt["ratio"],
            "step_alternated": alt,
            "goal": GOAL_TRAIN_RATIO,
            "goal_met": bool(ratio >= GOAL_TRAIN_RATIO),
            "goal_met_step_alternated": bool(alt["ratio"] >= GOAL_TRAIN_RATIO),
            "max_foreign_cpu_frac": max((x["foreign_cpu_frac"] or 0.0) for v in rounds.values() for x in v),
            "rounds": rounds,
        }
        del loops
    return out


# ----------------------------------------------------------------------------------------------
# 2. TANDEM overhead vs the twin floor
# ----------------------------------------------------------------------------------------------


class Probe:
    """Accumulated seconds and calls per category, filled by the wrappers below."""

    def __init__(self):
        self.s: dict[str, float] = {}
        self.n: dict[str, int] = {}

    def add(self, key: str, dt: float) -> None:
        self.s[key] = self.s.get(key, 0.0) + dt
        self.n[key] = self.n.get(key, 0) + 1

    def wrap(self, key: str, fn: Callable) -> Callable:
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.add(key, time.perf_counter() - t)

        timed.__wrapped__ = fn
        return timed


class ProxyAlone:
    """The proxy trained alone: same model, optimizer settings, schedule, batch size and per-step work as
    tandem.training.trainer.train (sample, objective coefficients, Learner.step, finiteness check)."""

    def __init__(self, cfg, data, total_steps: int):
        from tandem.data.sampler import MixtureSampler
        from tandem.mixing import methods
        from tandem.mixing.optimize import twin_optim_config
        from tandem.models import build_model
        from tandem.training.learner import Learner
        from tandem.training.trainer import setup_torch

        mc = methods.effective(cfg.mixer)
        device = setup_torch(cfg.train)
        self.batch_size = mc.batch_size or cfg.train.batch_size
        self.names = data.domains
        model = build_model(mc.proxy, data.vocab_size, cfg.train.seq_len, cfg.seed, cfg.base_dir)
        self.learner = Learner(model, twin_optim_config(cfg, total_steps), len(self.names), device, cfg.train.precision)
        self.sampler = MixtureSampler(data.split_arrays("train"), cfg.train.seq_len, cfg.seed, self.names)
        self.alpha = np.full(len(self.names), 1.0 / len(self.names))
        self.steps = 0
        self.batches_s = 0.0
        self.step_s = 0.0

    def step(self) -> None:
        from tandem.training.loss import domain_token_counts, objective_coefficients

        t0 = time.perf_counter()
        batch = self.sampler.sample(self.alpha, self.batch_size)
        coef = objective_coefficients(domain_token_counts(batch.y, batch.domain, len(self.names)))
        t1 = time.perf_counter()
        meter = self.learner.step([(batch, coef)])
        if not np.isfinite(meter.mean()):
            raise FloatingPointError("non-finite loss in the benchmark")
        t2 = time.perf_counter()
        self.batches_s += t1 - t0
        self.step_s += t2 - t1
        self.steps += 1

    @property
    def total_s(self) -> float:
        return self.batches_s + self.step_s

    def summary(self) -> dict:
        return {"steps": self.steps, "total_s": self.total_s, "step_s": self.step_s, "batches_s": self.batches_s,
                "step_ms": 1e3 * self.step_s / max(self.steps, 1)}


@contextlib.contextmanager
def instrumented(probe: Probe, pair: Callable[[], None] | None = None):
    """Time the parts of optimize() by wrapping what it calls; restores everything afterwards.

    The first Learner optimize() builds is the proxy, the second the reference. After every proxy step
    `pair` (one proxy-alone step) is called and timed as `paired_alone`. A name that a future
    optimize.py no longer uses is skipped (its time then shows up as `other`).
    """
    import tandem.mixing.optimize as opt_mod
    import tandem.report.plots as plots_mod

    saved: list[tuple[object, str, object]] = []

    def patch(obj, name: str, value) -> None:
        if hasattr(obj, name):
            saved.append((obj, name, getattr(obj, name)))
            setattr(obj, name, value)

    Learner = getattr(opt_mod, "Learner", None)
    LMProblem = getattr(opt_mod, "LMProblem", None)
    built: list = []

    if Learner is not None:
        class TimedLearner(Learner):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self.role = "proxy" if not built else "reference"
                built.append(self)

            def step(self, parts, valid=None, valid_scale=1.0):
                t = time.perf_counter()
                try:
                    return super().step(parts, valid=valid, valid_scale=valid_scale)
                finally:
                    t1 = time.perf_counter()
                    probe.add(f"{self.role}_step", t1 - t)
                    if pair is not None and self.role == "proxy":
                        pair()
                        probe.add("paired_alone", time.perf_counter() - t1)

            def domain_losses(self, batches):
                t = time.perf_counter()
                try:
                    return super().domain_losses(batches)
                finally:
                    probe.add("delta_eval", time.perf_counter() - t)

            def distance(self, other):
                t = time.perf_counter()
                try:
                    return super().distance(other)
                finally:
                    probe.add("distance", time.perf_counter() - t)

            def copy_from(self, other):
                t = time.perf_counter()
                try:
                    return super().copy_from(other)
                finally:
                    probe.add("sync", time.perf_counter() - t)

        patch(opt_mod, "Learner", TimedLearner)

    if LMProblem is not None:
        class TimedProblem(LMProblem):
            pass

        for name, key in (("train_part", "batches"), ("reference_train_part", "batches"), ("valid_part", "batches"),
                          ("held_batches", "delta_eval")):
            if hasattr(LMProblem, name):
                setattr(TimedProblem, name, probe.wrap(key, getattr(LMProblem, name)))
        patch(opt_mod, "LMProblem", TimedProblem)

    for name, key in (("save_checkpoint", "checkpoint"), ("append_jsonl", "outputs"), ("write_weights", "outputs"),
                      ("write_text", "outputs"), ("trajectory_csv", "outputs")):
        if hasattr(opt_mod, name):
            patch(opt_mod, name, probe.wrap(key, getattr(opt_mod, name)))
    if hasattr(plots_mod, "plot_trajectories"):
        patch(plots_mod, "plot_trajectories", probe.wrap("outputs", plots_mod.plot_trajectories))
    try:
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def run_optimize(cfg, data, probe: Probe, pair: Callable[[], None] | None = None) -> tuple[float, float, int]:
    """(external wall, optimize's own wall_time, proxy steps) of one optimize() call in a scratch folder."""
    from tandem.mixing.optimize import optimize

    out = Path(tempfile.mkdtemp(prefix="tandem-bench-"))
    try:
        with instrumented(probe, pair):
            t = time.perf_counter()
            res = optimize(cfg, data, out, progress=False, log=lambda s: None)
            wall = time.perf_counter() - t
        return wall, res.wall_time, res.proxy_steps
    finally:
        shutil.rmtree(out, ignore_errors=True)


def bench_overhead(config: Path, sizes: Sizes, threads: int, gate: QuietGate) -> dict:
    from tandem.config import load_config

    base = [f"train.threads={threads}", "train.device=cpu", "mixer.method=tandem"]
    if sizes.mixer_warmup is not None:
        base.append(f"mixer.warmup_steps={sizes.mixer_warmup}")
    cfg0, data = load(config, base)
    W = cfg0.mixer.warmup_steps
    ckpt_default = cfg0.mixer.checkpoint_interval or 1
    n_steps = W + sizes.loop_steps
    runs = [(E, K, 0) for E, K in sizes.ek] + [(E, K, ckpt_default) for E, K in sizes.ek_ckpt]
    for E, K, _ in runs:
        if sizes.loop_steps % (E + K):
            raise ValueError(f"loop_steps={sizes.loop_steps} is not a multiple of E + K = {E + K}")

    def cfg_for(E: int, K: int, ck: int):
        return load_config(config, base + [f"mixer.free_steps={E}", f"mixer.probe_steps={K}",
                                           f"mixer.episodes={sizes.loop_steps // (E + K)}", f"mixer.checkpoint_interval={ck}"])

    # Untimed warm-up of both code paths (imports such as matplotlib, allocator, thread pool).
    log("  warm-up run (untimed)")
    warm = load_config(config, base + ["mixer.free_steps=2", "mixer.probe_steps=2", "mixer.episodes=2",
                                       "mixer.warmup_steps=2", "mixer.checkpoint_interval=1"])
    run_optimize(warm, data, Probe())
    alone = ProxyAlone(cfg0, data, 10)
    for _ in range(10):
        alone.step()

    # A/A: the proxy alone paired with the proxy alone; pairing is neutral if the ratio is ~1.
    info = gate.wait("A/A pairing check")
    a, b = ProxyAlone(cfg0, data, n_steps), ProxyAlone(cfg0, data, n_steps)
    with CpuWindow() as w:
        for _ in range(n_steps):
            a.step()
            b.step()
    aa = {"a": a.summary(), "b": b.summary(), "ratio": a.total_s / b.total_s, **w.as_dict(), **info}
    log(f"  A/A pairing check, {n_steps} steps each: {a.total_s:.2f} s / {b.total_s:.2f} s = {aa['ratio']:.3f}")
    del a, b

    results: dict[str, dict] = {}
    for r in range(sizes.overhead_rounds):
        for E, K, ck in (runs if r % 2 == 0 else list(reversed(runs))):
            key = f"E{E}_K{K}" + (f"_ckpt{ck}" if ck else "")
            info = gate.wait(f"optimize {key} (round {r + 1})")
            probe = Probe()
            alone = ProxyAlone(cfg0, data, n_steps)
            with CpuWindow() as w:
                wall_paired, inner, proxy_steps = run_optimize(cfg_for(E, K, ck), data, probe, pair=alone.step)
            if proxy_steps != n_steps or alone.steps != n_steps:
                raise RuntimeError(f"optimize made {proxy_steps} proxy steps and the baseline {alone.steps}, "
                                   f"expected {n_steps}")
            paired = probe.s.pop("paired_alone")
            probe.n.pop("paired_alone")
            wall = wall_paired - paired  # optimize's own time; `paired` includes the timer calls around each pair
            base_s = alone.total_s
            run = {"wall_s": wall, "wall_with_pairs_s": wall_paired, "baseline": alone.summary(),
                   "ratio": wall / base_s, "breakdown_s": dict(probe.s), "calls": dict(probe.n),
                   "optimize_wall_time_s_incl_pairs": inner, **w.as_dict(), **info}
            results.setdefault(key, {"E": E, "K": K, "T": sizes.loop_steps // (E + K), "W": W,
                                     "checkpoint_interval": ck, "runs": []})["runs"].append(run)
            log(f"  optimize {key}: {wall:6.2f} s, proxy alone {base_s:6.2f} s "
                f"({alone.summary()['step_ms']:.1f} ms/step): ratio {run['ratio']:.3f}")

    for key, res in results.items():
        E, K, T = res["E"], res["K"], res["T"]
        ratio = _median([x["ratio"] for x in res["runs"]])
        run = min(res["runs"], key=lambda x: abs(x["ratio"] - ratio))  # the median run (odd rounds)
        base_wall = run["baseline"]["total_s"]
        base_step = run["baseline"]["step_s"] / n_steps
        bd = dict(run["breakdown_s"])
        bd["other"] = run["wall_s"] - sum(bd.values())
        v = cfg0.mixer.valid_fraction  # a reference step: the proxy's rows plus v x batch validation rows
        floor_steps = (W + T * (E + K + K * (1 + v))) / (W + T * (E + K))
        eval_s = bd.get("delta_eval", 0.0) + bd.get("distance", 0.0)
        floor_eval = floor_steps + eval_s / base_wall
        ref_steps = run["calls"].get("reference_step", 0)
        prx_steps = run["calls"].get("proxy_step", 0)
        prx_step_s = bd.get("proxy_step", 0.0) / max(prx_steps, 1)
        non_step_share = 1 - n_steps * base_step / base_wall  # the baseline's own batch drawing
        # Where the time above the step floor went, in units of the proxy-alone time (sums to ratio - floor_steps).
        gap = {
            "delta_eval": eval_s / base_wall,
            "proxy_steps_vs_alone": (bd.get("proxy_step", 0.0) - prx_steps * base_step) / base_wall,
            "reference_steps_vs_alone": (bd.get("reference_step", 0.0) - ref_steps * base_step) / base_wall,
            "sync": bd.get("sync", 0.0) / base_wall,
            "checkpoint": bd.get("checkpoint", 0.0) / base_wall,
            "outputs": bd.get("outputs", 0.0) / base_wall,
            "batches_and_other": (bd.get("batches", 0.0) + bd["other"]) / base_wall
            - non_step_share * (prx_steps + ref_steps) / max(n_steps, 1),
        }
        res.update({
            "proxy_steps": n_steps,
            "reference_steps": ref_steps,
            "wall_s": run["wall_s"],
            "baseline_wall_s": base_wall,
            "ratio": ratio,
            "floor_asymptotic": (E + K + K * (1 + v)) / (E + K),
            "floor_steps": floor_steps,
            "floor_with_delta_eval": floor_eval,
            "ratio_over_floor_steps": ratio / floor_steps,
            "ratio_over_floor_with_delta_eval": ratio / floor_eval,
            # Cross-check without any baseline: optimize's time in units of its own proxy steps (plus the
            # baseline's batch-drawing share).
            "ratio_in_own_proxy_steps": run["wall_s"] / (n_steps * prx_step_s / (1 - non_step_share)),
            "goal": f"ratio <= {GOAL_OVERHEAD} x floor_with_delta_eval",
            "goal_met": bool(ratio <= GOAL_OVERHEAD * floor_eval),
            "goal_met_vs_step_floor": bool(ratio <= GOAL_OVERHEAD * floor_steps),
            "breakdown_s": bd,
            "gap_over_step_floor": gap,
            "proxy_step_ms": 1e3 * prx_step_s,
            "reference_step_ms": 1e3 * bd.get("reference_step", 0.0) / max(ref_steps, 1),
            "baseline_step_ms": 1e3 * base_step,
            "delta_eval_ms_per_episode": 1e3 * eval_s / T,
            "sync_ms_per_episode": 1e3 * bd.get("sync", 0.0) / T,
            "checkpoint_ms_per_episode": 1e3 * bd.get("checkpoint", 0.0) / T,
            "max_foreign_cpu_frac": max((x["foreign_cpu_frac"] or 0.0) for x in res["runs"]),
        })
    return {
        "settings": {"config": str(config.relative_to(REPO)) if config.is_relative_to(REPO) else str(config),
                     "proxy": cfg0.mixer.proxy.preset, "batch_size": cfg0.mixer.batch_size or cfg0.train.batch_size,
                     "seq_len": cfg0.train.seq_len, "eval_sequences": cfg0.mixer.eval_sequences,
                     "valid_fraction": cfg0.mixer.valid_fraction, "W": W, "loop_steps_T_times_E_plus_K": sizes.loop_steps,
                     "proxy_steps": n_steps, "rounds": sizes.overhead_rounds, "instrumented": True,
                     "baseline": "paired: one proxy-alone step after every proxy step of optimize, timed and subtracted"},
        "aa_check": aa,
        "runs": results,
    }


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def tables(results: dict) -> str:
    lines = []
    tl = results.get("train_loop")
    if tl:
        st = tl["settings"]
        lines.append(f"Training loop vs bare PyTorch (batch {st['batch_size']} x seq {st['seq_len']}, "
                     f"{st['rounds']} interleaved rounds of {st['warmup_steps_per_round']} warm-up + "
                     f"{st['timed_steps_per_round']} timed steps; medians)")
        lines.append("| preset | params | tandem tok/s | bare tok/s | tandem/bare | per round | step-alternated | "
                     "goal >= 0.95 | others' CPU (max) |")
        lines.append("|---|---:|---:|---:|---:|---|---:|---|---:|")
        for p, r in tl["presets"].items():
            pr = ", ".join(f"{x:.3f}" for x in r["ratio_per_round"])
            ok = r["goal_met"] and r["goal_met_step_alternated"]
            lines.append(f"| {p} | {r['params'] / 1e6:.2f}M | {r['tandem_tokens_per_s']:,.0f} | {r['bare_tokens_per_s']:,.0f} | "
                         f"{r['ratio']:.3f} | {pr} | {r['ratio_step_alternated']:.3f} | {_met(ok)} | "
                         f"{r['max_foreign_cpu_frac']:.1%} |")
    ov = results.get("overhead")
    if ov:
        st = ov["settings"]
        if lines:
            lines.append("")
        aa = ov["aa_check"]
        lines.append(f"TANDEM overhead vs the twin floor (proxy {st['proxy']}, batch {st['batch_size']} x seq {st['seq_len']}, "
                     f"W={st['W']}, {st['proxy_steps']} proxy steps per run; paired proxy-alone baseline, "
                     f"A/A check {aa['ratio']:.3f})")
        lines.append("| E | K | T | ckpt | optimize s | alone s | ratio | floor (E+K+K(1+v))/(E+K) | floor incl. W | + Delta eval | "
                     "ratio / floor+eval | goal <= 1.10 | ratio / floor incl. W | in own proxy steps | others' CPU |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        for r in ov["runs"].values():
            lines.append(f"| {r['E']} | {r['K']} | {r['T']} | {r['checkpoint_interval']} | {r['wall_s']:.2f} | "
                         f"{r['baseline_wall_s']:.2f} | {r['ratio']:.3f} | "
                         f"{r['floor_asymptotic']:.3f} | {r['floor_steps']:.3f} | {r['floor_with_delta_eval']:.3f} | "
                         f"{r['ratio_over_floor_with_delta_eval']:.3f} | {_met(r['goal_met'])} | "
                         f"{r['ratio_over_floor_steps']:.3f} | {r['ratio_in_own_proxy_steps']:.3f} | "
                         f"{r['max_foreign_cpu_frac']:.1%} |")
        lines.append("")
        keys = ["proxy_step", "reference_step", "batches", "delta_eval", "distance", "sync", "checkpoint", "outputs", "other"]
        lines.append("Breakdown of optimize wall time (s)")
        lines.append("| run | " + " | ".join(keys) + " | proxy ms/step | ref ms/step | alone ms/step |")
        lines.append("|---|" + "---:|" * (len(keys) + 3))
        for k, r in ov["runs"].items():
            bd = r["breakdown_s"]
            lines.append(f"| {k} | " + " | ".join(f"{bd.get(x, 0.0):.2f}" for x in keys) +
                         f" | {r['proxy_step_ms']:.1f} | {r['reference_step_ms']:.1f} | {r['baseline_step_ms']:.1f} |")
        lines.append("")
        gk = list(next(iter(ov["runs"].values()))["gap_over_step_floor"])
        lines.append("Ratio above the step floor (floor incl. W), by cause, in units of the proxy-alone time")
        lines.append("| run | ratio - floor | " + " | ".join(gk) + " |")
        lines.append("|---|---:|" + "---:|" * len(gk))
        for k, r in ov["runs"].items():
            g = r["gap_over_step_floor"]
            lines.append(f"| {k} | {r['ratio'] - r['floor_steps']:+.3f} | " + " | ".join(f"{g[x]:+.3f}" for x in gk) + " |")
    return "\n".join(lines)


def main(args) -> int:
    from tandem.errors import InputError

    try:
        return _main(args)
    except InputError as err:
        log(f"error: {err}")
        log("(the default corpus is built with `tandem corpus --out data/default`)")
        return 2


def _main(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    benches = args.only or list(BENCHES)
    gate = QuietGate(args.busy_threshold, args.max_wait)
    results: dict = {}
    if args.only and args.out.is_file():
        with contextlib.suppress(json.JSONDecodeError, OSError):
            results = json.loads(args.out.read_text())
    results["machine"] = machine_info(args.threads)
    results["mode"] = "quick" if args.quick else "full"
    results["command"] = "python -m benchmarks " + " ".join(sys.argv[1:])
    t0 = time.perf_counter()
    results["loadavg_start"] = loadavg()
    if "train_loop" in benches:
        log("benchmark 1: training loop vs bare PyTorch loop")
        t = time.perf_counter()
        results["train_loop"] = bench_train_loop(args.config, sizes, args.threads, gate)
        results["train_loop"]["duration_s"] = time.perf_counter() - t
    if "overhead" in benches:
        log("benchmark 2: TANDEM overhead vs the twin floor")
        t = time.perf_counter()
        results["overhead"] = bench_overhead(args.config, sizes, args.threads, gate)
        results["overhead"]["duration_s"] = time.perf_counter() - t
    results["loadavg_end"] = loadavg()
    results["waited_for_quiet_s"] = round(gate.waited, 1)
    results["segments_measured_while_busy"] = gate.gave_up
    results["duration_s"] = time.perf_counter() - t0

    from tandem.io import write_json

    write_json(args.out, results)
    with contextlib.suppress(OSError):
        args.out.chmod(0o644)  # the atomic writer's temporary file is private
    print(tables(results))
    print(f"\nresults: {args.out}  ({results['duration_s']:.0f} s; load average {results['loadavg_start']} -> "
          f"{results['loadavg_end']})")
    return 0
