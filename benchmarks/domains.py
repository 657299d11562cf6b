"""Cost of many domains: `python -m benchmarks.domains [--quick]` (run from the repository root).

The same proxy, batch and token stream, split into 10 or into 1,000 domains, timed:

1. step: one training step as the trainer and the twins take it: `MixtureSampler.sample` (token
   windows read through a memory map), `objective_coefficients(domain_token_counts(...))`, and
   `Learner.step` (forward, backward, per-domain loss sums and counts by index_add, AdamW), on a
   fixed non-uniform mixture (Dirichlet(1) over the domains, seeded). Its parts are timed too, and
   so are the pure per-domain pieces alone: `domain_sums` + `DomainLossMeter.add` on one batch's
   token losses, and one exponentiated-gradient `update_mixture`.
2. episode: one TANDEM episode of the one loop (`run_loop`, sync, K probe steps of both twins, Delta
   on held batches, mixture update, E free steps) on `LMProblem`. Delta needs held rows of every
   domain, so the held set is kept at the same size for both: eval_sequences * M = 1,000 rows
   (100 per domain for 10 domains, 1 per domain for 1,000).

The token stream is one flat file of random token ids read through `np.memmap` and cut into M
contiguous domains (same total tokens for both M). Both settings are built once and measured in
rounds in which single steps (and episodes) of the two alternate (10, 1000, 1000, 10, ...), so that
drifts in machine speed hit both alike.
Every step and episode is timed twice: wall clock, and this process's CPU time (`time.process_time`,
which other processes on a shared machine do not inflate; with one torch thread it is the work done).
Reported: medians over all rounds, and the median over rounds of each round's 1000/10 ratio (the
paired estimate; goal: within 10%). Each timed segment waits for the machine to be quiet first and
records other processes' CPU use (helpers of benchmarks.speed). Results: benchmarks/results/domains.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.speed import CpuWindow, QuietGate, loadavg, log, machine_info

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "domains.json"
GOAL_RATIO = 1.10
DOMAIN_COUNTS = (10, 1000)
HELD_ROWS = 1000


@dataclass
class Sizes:
    rounds: int = 6
    warmup: int = 2
    steps: int = 20
    episodes: int = 1
    micro_reps: int = 200


FULL = Sizes()
QUICK = Sizes(rounds=2, warmup=1, steps=6, episodes=1, micro_reps=20)

SHAPE = dict(vocab=2048, seq_len=64, batch=16, preset="tiny", train_tokens=4_000_000, valid_tokens=400_000,
             probe_steps=2, free_steps=4)


def _token_file(folder: Path, name: str, n: int, vocab: int, seed: int) -> np.ndarray:
    path = folder / f"{name}.bin"
    np.random.default_rng(seed).integers(0, vocab, n, dtype=np.uint16).tofile(path)
    return np.memmap(path, dtype=np.uint16, mode="r", shape=(n,))


class Setting:
    """Everything needed to time M domains: data cut from the shared memmaps, a learner, samplers, a loop problem."""

    def __init__(self, m: int, train: np.ndarray, valid: np.ndarray, device):
        from tandem.config import ModelConfig, config_from_dict
        from tandem.data.cache import PreparedData
        from tandem.data.sampler import MixtureSampler
        from tandem.mixing import methods
        from tandem.mixing.lm import LMProblem
        from tandem.models import build_model
        from tandem.training.learner import Learner, OptimConfig

        s = SHAPE
        self.m = m
        self.names = [f"d{i:04d}" for i in range(m)]
        cut = lambda a, i: a[i * (len(a) // m) : (i + 1) * (len(a) // m)]  # noqa: E731  (memmap views)
        arrays = {d: {"train": cut(train, i), "valid": cut(valid, i), "test": np.zeros(0, np.uint16)}
                  for i, d in enumerate(self.names)}
        data = PreparedData(domains=self.names, tokenizer=None, cache_dir=Path("."), index={}, arrays=arrays)
        self.cfg = config_from_dict({
            "seed": 0,
            "data": {"domains": {d: {"train": f"{d}.jsonl"} for d in self.names}},
            "train": {"seq_len": s["seq_len"], "batch_size": s["batch"], "lr": 1e-3, "warmup_steps": 0, "steps": 10_000},
            "mixer": {"method": "tandem", "probe_steps": s["probe_steps"], "free_steps": s["free_steps"],
                      "eval_sequences": HELD_ROWS // m, "episodes": 10_000, "checkpoint_interval": 0,
                      "proxy": {"preset": s["preset"]}},
        })
        oc = OptimConfig(lr=1e-3, total_steps=10_000)
        model = lambda: build_model(ModelConfig(preset=s["preset"]), s["vocab"], s["seq_len"], 0)  # noqa: E731
        self.learner = Learner(model(), oc, m, device)
        self.sampler = MixtureSampler(data.split_arrays("train"), s["seq_len"], 0, self.names)
        self.weights = np.random.default_rng(1).dirichlet(np.ones(m))
        # The loop's twins and problem: a TANDEM episode exactly as `tandem optimize` runs it.
        self.problem = LMProblem(self.cfg, data, s["batch"])
        self.proxy = Learner(model(), oc, m, device)
        self.reference = Learner(model(), oc, m, device)
        self.spec = methods.loop_spec(self.cfg.mixer)
        from tandem.mixing.loop import LoopState

        self.state = LoopState(alpha=np.full(m, 1.0 / m), warmed_up=True)

    def step(self) -> dict[str, float]:
        from tandem.training.loss import domain_token_counts, objective_coefficients

        c0, t0 = time.process_time(), time.perf_counter()
        batch = self.sampler.sample(self.weights, SHAPE["batch"])
        t1 = time.perf_counter()
        coef = objective_coefficients(domain_token_counts(batch.y, batch.domain, self.m))
        t2 = time.perf_counter()
        meter = self.learner.step([(batch, coef)])
        meter.losses()
        c3, t3 = time.process_time(), time.perf_counter()
        return {"sample": t1 - t0, "coefficients": t2 - t1, "learner_step": t3 - t2, "total": t3 - t0,
                "total_cpu": c3 - c0}

    def episode(self) -> dict[str, float]:
        import dataclasses

        from tandem.mixing.loop import run_loop

        spec = dataclasses.replace(self.spec, episodes=self.state.episode + 1)
        c0, t0 = time.process_time(), time.perf_counter()
        self.state = run_loop(spec, self.problem, self.proxy, self.reference, self.state)
        return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}

    def accounting(self, reps: int) -> dict[str, float]:
        """The per-domain pieces alone, on one batch's token losses: sums and counts, meter, mixture update."""
        import torch

        from tandem.mixing.updates import update_mixture
        from tandem.training.loss import DomainLossMeter, domain_sums

        batch = self.sampler.sample(self.weights, SHAPE["batch"])
        loss = torch.rand(batch.y.shape)
        mask = torch.ones_like(loss, dtype=torch.bool)
        delta = np.random.default_rng(2).normal(size=self.m) * 0.01
        t0 = time.perf_counter()
        for _ in range(reps):
            meter = DomainLossMeter(self.m)
            meter.add(*domain_sums(loss, mask, batch.domain, self.m))
            meter.losses()
        t1 = time.perf_counter()
        for _ in range(reps):
            update_mixture(self.weights, delta, "eg", 1.0, 0.0, 0.0)
        t2 = time.perf_counter()
        return {"domain_sums_meter": (t1 - t0) / reps, "update_mixture": (t2 - t1) / reps}


def run(args) -> dict:
    import torch

    from tandem.io import write_json
    from tandem.training.learner import resolve_device

    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    device = resolve_device(args.device)
    gate = QuietGate(args.busy_threshold, args.max_wait)
    with tempfile.TemporaryDirectory(prefix="tandem-domains-") as tmp:
        train = _token_file(Path(tmp), "train", SHAPE["train_tokens"], SHAPE["vocab"], 0)
        valid = _token_file(Path(tmp), "valid", SHAPE["valid_tokens"], SHAPE["vocab"], 1)
        settings = {m: Setting(m, train, valid, device) for m in DOMAIN_COUNTS}
        steps: dict[int, list[dict]] = {m: [] for m in DOMAIN_COUNTS}
        episodes: dict[int, list[dict]] = {m: [] for m in DOMAIN_COUNTS}
        acct: dict[int, list[dict]] = {m: [] for m in DOMAIN_COUNTS}
        rounds: list[dict] = []  # per round and M: median step and episode times, for paired ratios
        windows = []
        for r in range(sizes.rounds):
            quiet = gate.wait(f"round {r + 1}")
            st: dict[int, list[dict]] = {m: [] for m in DOMAIN_COUNTS}
            ep: dict[int, list[dict]] = {m: [] for m in DOMAIN_COUNTS}
            with CpuWindow() as w:
                for m in DOMAIN_COUNTS:
                    for _ in range(sizes.warmup):
                        settings[m].step()
                    if r == 0:
                        settings[m].episode()  # the first episode warms the twins' optimizers
                # Single steps alternated A B B A ...: a change in machine speed falls on both settings alike.
                for i in range(sizes.steps):
                    for m in (DOMAIN_COUNTS if i % 2 == 0 else DOMAIN_COUNTS[::-1]):
                        st[m].append(settings[m].step())
                for i in range(sizes.episodes):
                    for m in (DOMAIN_COUNTS if (r + i) % 2 == 0 else DOMAIN_COUNTS[::-1]):
                        ep[m].append(settings[m].episode())
                for m in DOMAIN_COUNTS:
                    acct[m].append(settings[m].accounting(sizes.micro_reps))
            this = {}
            for m in DOMAIN_COUNTS:
                steps[m] += st[m]
                episodes[m] += ep[m]
                this[m] = {k: statistics.median(x[k] for x in st[m]) for k in ("total", "total_cpu")}
                this[m].update({f"episode_{k}": statistics.median(x[k] for x in ep[m]) for k in ("wall", "cpu")})
            windows.append({"round": r + 1, **w.as_dict(), "quiet_wait": quiet})
            rounds.append(this)
            log(f"round {r + 1}: " + "; ".join(
                f"M={m} step {this[m]['total'] * 1e3:.1f} ms wall / {this[m]['total_cpu'] * 1e3:.1f} ms CPU, "
                f"episode {this[m]['episode_wall']:.2f} s" for m in DOMAIN_COUNTS) + f" (other processes {w.foreign_frac})")

    def med(xs):
        return statistics.median(xs)

    per_m = {}
    for m in DOMAIN_COUNTS:
        parts = {k: med([x[k] for x in steps[m]]) * 1e3 for k in steps[m][0]}
        acc = {k: med([x[k] for x in acct[m]]) * 1e6 for k in acct[m][0]}
        per_m[str(m)] = {"step_ms": parts, "episode_s": {k: med([x[k] for x in episodes[m]]) for k in ("wall", "cpu")},
                         "accounting_us": acc, "held_rows": HELD_ROWS, "eval_sequences": HELD_ROWS // m,
                         "steps_timed": len(steps[m]), "episodes_timed": len(episodes[m])}
    lo, hi = DOMAIN_COUNTS
    paired = lambda k: med([r[hi][k] / r[lo][k] for r in rounds])  # noqa: E731
    ratios = {"step_wall": paired("total"), "step_cpu": paired("total_cpu"),
              "episode_wall": paired("episode_wall"), "episode_cpu": paired("episode_cpu")}
    result = {
        "command": "python -m benchmarks.domains" + (" --quick" if args.quick else "") + f" --threads {args.threads}",
        "machine": machine_info(args.threads),
        "device": str(device),
        "shape": SHAPE,
        "sizes": sizes.__dict__,
        "domains": per_m,
        "ratio_1000_over_10": ratios,
        "goal_ratio": GOAL_RATIO,
        "within_goal": {k: v <= GOAL_RATIO for k, v in ratios.items()},
        "rounds": [{str(m): v for m, v in r.items()} for r in rounds],
        "loadavg_end": loadavg(),
        "quiet_gate_gave_up": gate.gave_up,
        "windows": windows,
    }
    write_json(args.out, result)
    return result


def format_table(res: dict) -> str:
    a, b = (res["domains"][str(m)] for m in DOMAIN_COUNTS)
    rows = [("", "10 domains", "1000 domains", "ratio")]
    for k in a["step_ms"]:
        rows.append((f"step: {k} (ms)", f"{a['step_ms'][k]:.2f}", f"{b['step_ms'][k]:.2f}",
                     f"{b['step_ms'][k] / a['step_ms'][k]:.2f}"))
    for k in ("wall", "cpu"):
        rows.append((f"episode: {k} (s)", f"{a['episode_s'][k]:.3f}", f"{b['episode_s'][k]:.3f}",
                     f"{b['episode_s'][k] / a['episode_s'][k]:.2f}"))
    for k in a["accounting_us"]:
        rows.append((f"alone: {k} (us)", f"{a['accounting_us'][k]:.1f}", f"{b['accounting_us'][k]:.1f}",
                     f"{b['accounting_us'][k] / a['accounting_us'][k]:.2f}"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.domains", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run (noisier numbers)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default: benchmarks/results/domains.json)")
    p.add_argument("--max-wait", type=float, default=300.0, help="seconds to wait in total for a quiet machine")
    p.add_argument("--busy-threshold", type=float, default=0.10,
                   help="machine share of CPU used by other processes above which we wait (default 0.10)")
    args = p.parse_args(argv)
    res = run(args)
    print(format_table(res))
    r = res["ratio_1000_over_10"]
    print("1000/10 domains, median of paired per-round ratios: "
          + ", ".join(f"{k} x{v:.3f}" for k, v in r.items()) + f" (goal <= {GOAL_RATIO}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
