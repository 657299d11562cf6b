"""Scenario benchmarks: does a method pick better mixtures than the obvious ones, on real text?

`python -m benchmarks scenarios [--only NAME] [--seeds N] [--quick]` (from the repository root):

1. builds the real-text domains (benchmarks.scenario_data) under data/bench/;
2. runs `tandem compare` on each scenario's config in benchmarks/configs/ (methods x seeds; a finished
   (method, seed) run is kept, so a killed benchmark resumes), plus for the oracle a 66-point grid and the
   grid's best mixture over the same seeds, plus the TANDEM ablations (stage one only);
3. collects everything into benchmarks/results/scenarios.json and rewrites the part of BENCHMARKS.md
   between the scenario markers, with figures in docs/bench/.

Seeds vary the model initialisation and the sampling streams (`seed`, `seed + 1`, ...); the domains'
train/valid/test documents are the same for every seed. Nothing here reads a test split except the final
evaluation that `tandem compare` reports: grid search and every optimizer select on valid data only.

`--quick` runs the same pipeline end to end on tiny standard-library domains in seconds (the test of the
runner), writing to the folder given by `--root`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIG = 1_600_000  # train characters of a large domain (~450k tokens at the 4096 BPE)
SMALL = 9_000  # train characters of a small domain (~3k tokens: 10+ epochs under uniform weights)
ALL_METHODS = ["uniform", "natural", "doremi", "doge", "odm", "aioli", "skillit", "ado", "regmix", "tandem"]


@dataclass
class Scenario:
    name: str
    title: str
    train_chars: dict[str, int | None]
    methods: list[str]
    ood: tuple[str, ...] = ()
    oracle: bool = False
    goal: str = ""
    config: Path | None = None
    models: str = ""
    kind: str = "text"  # "text": pool domains; "sft": tasks as domains; "two-stage": pretrain, then fine-tune


    def config_path(self, root: Path) -> Path:
        return self.config or REPO / "benchmarks" / "configs" / f"{self.name}.yaml"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("abundant", "1. Data-abundant",
                 {d: BIG for d in ("code", "books", "scripture", "legal", "docs", "quotes")},
                 ["uniform", "doge", "tandem"],
                 goal="TANDEM within 0.5% of uniform in average test loss",
                 models="target `tiny` (2 layers, width 64, 0.36M parameters), 150 steps"),
        Scenario("restricted", "2. Data-restricted",
                 {"code": BIG, "docs": BIG, "books": BIG, "scripture": SMALL, "legal": SMALL, "chat": SMALL},
                 ["uniform", "natural", "doremi", "doge", "odm", "tandem"],
                 goal="TANDEM's average test loss below uniform's by more than two seed standard deviations, "
                      "and below DoReMi's and DoGE's",
                 models="target 2 layers, width 96 (0.62M parameters, 4.3x the proxy's 0.15M), 200 steps"),
        Scenario("ood", "3. Out-of-domain target",
                 {"code": 400_000, "books": 400_000, "scripture": 400_000, "legal": 400_000, "quotes": 400_000,
                  "docs": None},
                 ["fixed", "doge", "tandem"], ood=("docs",),
                 goal="report each method's test loss on the held-out domain (docs)",
                 models="target `tiny` (0.36M parameters), 150 steps"),
        Scenario("oracle", "4. Oracle (3 domains, grid over the simplex)",
                 {"code": BIG, "scripture": SMALL, "chat": SMALL},
                 ["uniform", "doremi", "doge", "odm", "regmix", "tandem"], oracle=True,
                 goal="TANDEM closes at least 90% of the uniform-to-oracle gap",
                 models="BPE vocabulary 1024; target the same size as the proxy (1 layer, width 32), 100 steps, so that "
                        "the 66-point grid is affordable"),
        Scenario("sft-tasks", "5. SFT: five real tasks of unequal size (`tandem tasks`)", {}, ALL_METHODS, kind="sft",
                 goal="TANDEM's average task test loss below uniform's by more than two standard errors of the paired "
                      "difference, and its task metrics not worse",
                 models="target `tiny` (0.36M parameters), 300 steps of 16 rows of 96 tokens; proxy 1 layer, width 32; 8 episodes"),
        Scenario("sft-ecommerce", "5b. SFT: the four e-commerce tasks", {}, ALL_METHODS, kind="sft",
                 goal="as 5", models="as 5, rows of 128 tokens"),
        Scenario("sft-two-stage", "5c. Two-stage: pretraining mixture for the five real tasks", {},
                 ["tandem", "doremi"], kind="two-stage",
                 goal="the post-fine-tuning average task test loss of TANDEM's pretraining mixture below uniform's",
                 models="target `tiny`, 300 pretraining steps on the default corpus, then 150 fine-tuning steps"),
    ]
}
# The SFT scenarios' data: built by tandem's own example commands (no pool, no character budgets).
SFT_DATA = {"sft-tasks": [["tasks", "--out", "data/bench/sft-tasks", "--seed", "0"]],
            "sft-ecommerce": [["ecommerce", "--out", "data/ecommerce", "--seed", "0"]],
            "sft-two-stage": [["tasks", "--out", "data/bench/sft-tasks", "--seed", "0"],
                              ["corpus", "--out", "data/default", "--seed", "0"]]}

# TANDEM ablations on the data-restricted scenario, stage one only: (name, --set overrides, seeds). The K variants
# change T so that the proxy-step budget T (K + E) stays about 180; K5 over three seeds is also the gamma/sync baseline.
ABLATIONS: list[tuple[str, list[str], int]] = [
    ("K1", ["mixer.probe_steps=1", "mixer.episodes=16"], 3),
    ("K2", ["mixer.probe_steps=2", "mixer.episodes=15"], 3),
    ("K5", [], 3),
    ("K10", ["mixer.probe_steps=10", "mixer.episodes=9"], 3),
    ("gamma0.25", ["mixer.gamma=0.25"], 1),
    ("gamma4", ["mixer.gamma=4.0"], 1),
    ("nosync", ["mixer.sync=false"], 1),
]
QUICK_ABLATIONS: list[tuple[str, list[str], int]] = [("K1", ["mixer.probe_steps=1"], 2), ("nosync", ["mixer.sync=false"], 1)]
ABLATION_SCENARIO = "restricted"


# Follow-up runs after TANDEM lost scenarios 2 and 4, reported beside the headline rows and never used to pick the
# headline's settings: (key, --set overrides, patch). "eval64": more held sequences for Delta (its sign flipped from
# episode to episode with 8); "heldout": Delta measured on train windows the twins never train on
# (benchmarks.heldout_delta), to test whether memorised windows of small domains bias Delta; "heldout15": the same
# idea through the library's own option, mixer.held_out_fraction.
INVESTIGATIONS: dict[str, list[tuple[str, list[str], str | None]]] = {
    "oracle": [("eval64", ["mixer.eval_sequences=64"], None), ("heldout", [], "heldout"),
               ("heldout15", ["mixer.held_out_fraction=0.15"], None)],
    "restricted": [("eval64", ["mixer.eval_sequences=64"], None), ("heldout", [], "heldout"),
                   ("heldout15", ["mixer.held_out_fraction=0.15"], None)],
}
INVESTIGATION_LABELS = {"eval64": "tandem, eval_sequences 64 (follow-up)",
                        "heldout": "tandem, Delta on held-out train windows (follow-up)",
                        "heldout15": "tandem, mixer.held_out_fraction 0.15 (follow-up)"}


@dataclass
class Plan:
    """Where one benchmark invocation reads and writes."""

    root: Path  # data/bench (data) and runs/bench (runs) live under it, or a quick root
    seeds: int
    quick: bool = False
    extra_set: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def data_root(self) -> Path:
        return self.root / "data" / "bench"

    @property
    def runs_root(self) -> Path:
        return self.root / "runs" / "bench"


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)


def run_tandem(plan: Plan, argv: list[str], log) -> None:
    """One `tandem ...` command, in this process (torch is imported once), recorded for the report."""
    from tandem.cli.main import main as tandem_main

    argv = [*argv, *(a for s in plan.extra_set for a in ("--set", s)), "-q"]
    shown = "tandem " + " ".join(shlex.quote(_rel(Path(a)) if a.endswith(".yaml") else a) for a in argv)
    plan.commands.append(shown)
    log(f"$ {shown}")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the tables it prints are in its output folder
        rc = tandem_main(argv)
    if rc != 0:
        raise RuntimeError(f"{shown} failed with exit code {rc}")
    log(f"  done in {time.perf_counter() - t0:.0f} s")


def prepare_data(plan: Plan, names: list[str], log=print) -> None:
    from benchmarks.scenario_data import build_pool, build_scenario_data

    pool = None
    if any(scenarios_for(plan)[n].kind == "text" for n in names):
        if plan.quick:
            from benchmarks.quick import build_quick_pool

            pool = build_quick_pool(plan.data_root)
        else:
            pool = build_pool(plan.data_root, log=log)
    for name in names:
        sc = scenarios_for(plan)[name]
        if sc.kind != "text":
            for argv in SFT_DATA[name]:
                if not (REPO / argv[2] / "manifest.json").is_file():
                    run_tandem(plan, argv, log)
            continue
        sizes = build_scenario_data(pool, plan.data_root / name, sc.train_chars, train_from_valid=sc.ood,
                                    valid_chars=None if plan.quick else 25_000)
        log(f"{name}: " + ", ".join(f"{d} {s['train']:,}" for d, s in sizes.items()) + " train chars")


def scenarios_for(plan: Plan) -> dict[str, Scenario]:
    if plan.quick:
        from benchmarks.quick import quick_scenarios

        return quick_scenarios(plan.root)
    return SCENARIOS


def compare(plan: Plan, sc: Scenario, methods: list[str], seeds: int, out: Path, extra: list[str], log) -> dict:
    if not (out / "results.json").is_file() or not _complete(out, methods, seeds):
        run_tandem(plan, ["compare", str(sc.config_path(plan.root)), "--methods", ",".join(methods),
                          "--seeds", str(seeds), "--out", str(out), *extra], log)
    return json.loads((out / "results.json").read_text())


def _complete(out: Path, methods: list[str], seeds: int) -> bool:
    return all((out / "runs" / f"{m}-seed{s}" / "result.json").is_file() for m in methods for s in range(seeds))


def run_two_stage(plan: Plan, sc: Scenario, log=print) -> dict:
    """Per seed, `tandem run` of each method with uniform as the baseline (compare refuses two-stage configs): the
    pretraining mixture is learned, then the target is pretrained on it, fine-tuned and scored on the tasks."""
    out = plan.runs_root / sc.name
    runs = []
    for s in range(plan.seeds):
        for m in sc.methods:
            d = out / f"{m}-seed{s}"
            if not (d / "eval.json").is_file():
                run_tandem(plan, ["run", str(sc.config_path(plan.root)), "--out", str(d), "--resume",
                                  "--set", f"seed={s}", "--set", f"mixer.method={m}",
                                  *(["--baseline", "uniform"] if m == sc.methods[0] else [])], log)
            runs.append({"method": m, "seed": s, "eval": json.loads((d / "eval.json").read_text())})
            if m == sc.methods[0]:
                base = json.loads((d / "baseline-uniform" / "eval.json").read_text())
                runs.append({"method": "uniform", "seed": s, "eval": base})
    return {"runs": runs}


def run_scenario(plan: Plan, name: str, log=print) -> dict:
    sc = scenarios_for(plan)[name]
    out = plan.runs_root / name
    if sc.kind == "two-stage":
        return run_two_stage(plan, sc, log)
    res = {"main": compare(plan, sc, sc.methods, plan.seeds, out, [], log)}
    if sc.oracle:
        # One grid (seed 0; 66 target trainings) picks the best mixture on valid; that mixture is then trained
        # with every seed like the other methods, so the oracle's test loss has the same seed statistics.
        grid = compare(plan, sc, ["grid"], 1, plan.runs_root / f"{name}-grid", [], log)
        best = grid["runs"][0]["weights"]
        flow = "{" + ", ".join(f"{d}: {w:.6g}" for d, w in best.items()) + "}"
        res["grid"] = grid
        res["oracle"] = compare(plan, sc, ["fixed"], plan.seeds, plan.runs_root / f"{name}-oracle",
                                ["--set", f"methods.fixed.weights={flow}"], log)
        res["grid_points"] = _read_points(plan.runs_root / f"{name}-grid" / "runs" / "grid-seed0" / "optimize" / "points.csv")
    return res


def run_investigations(plan: Plan, log=print) -> None:
    from benchmarks import heldout_delta

    for name, variants in INVESTIGATIONS.items():
        sc = scenarios_for(plan)[name]
        for key, sets, patch in variants:
            extra = [a for o in sets for a in ("--set", o)]
            with heldout_delta.patched() if patch == "heldout" else contextlib.nullcontext():
                compare(plan, sc, ["tandem"], plan.seeds, plan.runs_root / f"{name}-{key}", extra, log)


def _read_points(path: Path) -> list[dict]:
    import csv

    if not path.is_file():
        return []
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(path.open())]


def _claim(d: Path) -> bool:
    """Claim a run folder for this process, so that a second benchmark process picks other runs; a claim by a
    process that is gone is taken over (the run resumes from its checkpoint)."""
    d.mkdir(parents=True, exist_ok=True)
    marker = d / ".claimed"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(marker.read_text() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid():
            try:
                os.kill(pid, 0)
                return False  # its owner is alive
            except ProcessLookupError:
                pass
            except PermissionError:
                return False
        marker.write_text(str(os.getpid()))
        return True
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def run_ablations(plan: Plan, log=print) -> dict:
    """TANDEM's stage one on the data-restricted scenario under each ablation setting, over seeds.

    Runs go seed by seed through the variants, so a cut-short benchmark still has every variant at seed 0.
    """
    sc = scenarios_for(plan)[ABLATION_SCENARIO]
    ablations = QUICK_ABLATIONS if plan.quick else ABLATIONS
    order = [(name, overrides, s) for s in range(plan.seeds) for name, overrides, seeds in ablations if s < seeds]
    for name, overrides, s in order:
        d = plan.runs_root / "ablations" / f"{name}-seed{s}"
        if (d / "weights.json").is_file() or not _claim(d):
            continue
        sets = [a for o in [*overrides, f"seed={s}"] for a in ("--set", o)]
        run_tandem(plan, ["optimize", str(sc.config_path(plan.root)), "--out", str(d), "--resume", *sets], log)
    from benchmarks.scenario_report import collect_ablations

    return collect_ablations(plan)


def _read_optimize(d: Path) -> dict:
    import csv

    w = json.loads((d / "weights.json").read_text())
    rows = list(csv.DictReader((d / "trajectory.csv").open()))
    names = list(w["domain_weights"])
    return {
        "weights": w["domain_weights"], "wall_time_s": w.get("wall_time_s"), "proxy_steps": w.get("proxy_steps"),
        "train_tokens": w.get("train_tokens"), "probe_steps": w.get("probe_steps"), "gamma": w.get("gamma"),
        "sync": w.get("sync"),
        "delta": [[float(r[f"delta_{n}"]) for n in names] for r in rows],
        "distance": [float(r["distance"]) for r in rows],
        "steps": [int(r["step"]) for r in rows],
    }


def target_cost(plan: Plan, name: str) -> dict:
    """Wall time and tokens of training the target once (uniform, every seed) for the cost ratios."""
    res = json.loads((plan.runs_root / name / "results.json").read_text())
    rs = [r for r in res["runs"] if r["method"] in ("uniform", "fixed")]
    return {"stage2_wall_s": sum(r["stage2_wall_s"] for r in rs) / len(rs), "stage2_tokens": rs[0]["stage2_tokens"]}


def write_sft_table(plan: Plan, sc: Scenario, log=print) -> None:
    """benchmarks/results/NAME.md: the scenario's paired table (Markdown) with the commands that made it."""
    from benchmarks import paired
    from tandem.io import write_text

    folder = plan.runs_root / sc.name
    if not folder.is_dir():
        return
    table = paired.two_stage_table(folder) if sc.kind == "two-stage" else paired.table(folder)
    path = REPO / "benchmarks" / "results" / f"{sc.name}.md"
    write_text(path, f"### {sc.title}\n\n{sc.models}\n\n{table}\n")
    log(f"wrote {path}")


def main(args) -> int:
    from benchmarks import scenario_report

    root = Path(args.root).resolve() if args.root else REPO
    plan = Plan(root=root, seeds=args.seeds, quick=args.quick, extra_set=list(args.set or []))
    names = list(scenarios_for(plan))
    only = args.only or [*names, "investigations", "ablations"]
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    if not args.report_only:
        prepare_data(plan, [n for n in only if n in names], log)
        if args.prepare_only:
            return 0
        for name in only:
            if name == "ablations":
                run_ablations(plan, log)
            elif name == "investigations":
                run_investigations(plan, log)
            else:
                run_scenario(plan, name, log)
    for name in (n for n in only if n in names and scenarios_for(plan)[n].kind != "text"):
        write_sft_table(plan, scenarios_for(plan)[name], log)
    names = [n for n in names if scenarios_for(plan)[n].kind == "text"]
    if not args.report_only and not any(n in names or n in ("ablations", "investigations") for n in only):
        return 0  # only SFT scenarios ran: their tables are written; the text scenarios' report is untouched
    results_path = Path(args.out) if args.out else (
        root / "scenarios.json" if args.quick else REPO / "benchmarks" / "results" / "scenarios.json")
    markdown = Path(args.markdown) if args.markdown else (root / "BENCHMARKS.md" if args.quick else REPO / "BENCHMARKS.md")
    figures = Path(args.figures) if args.figures else (root / "figures" if args.quick else REPO / "docs" / "bench")
    scenario_report.collect_and_write(plan, names, results_path, markdown, figures, log)
    return 0
