"""The compare job (`tandem compare`): every method's stage one and the same stage two, over paired seeds, each
method on the same stage-one budget; resumable (a finished run, or an unfinished run's checkpoints, are reused only
while the run's identity, its settings and its data's content, is unchanged)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from tandem.config import Config, format_validation_error
from tandem.errors import InputError
from tandem.io import write_json
from tandem.mixing import budget as B
from tandem.mixing import methods
from tandem.mixing.methods import METHODS, ONLINE_METHODS, STATIC_METHODS
from tandem.mixing.optimize import optimize
from tandem.pipeline.common import prepare, removed_on_input_error, write_config
from tandem.pipeline.stage_two import stage_two
from tandem.report.compare import write_report


def method_config(cfg, method: str, seed_offset: int, num_domains: int | None = None, data=None):
    """The config of one (method, seed) run: the method's settings (tandem.mixing.methods.resolve_mixer: published
    defaults, the config's `mixer`, then `methods.<name>`), with as many episodes (rounds; RegMix: steps per proxy)
    as bring its stage-one FLOPs nearest those of the config's own mixer (tandem.mixing.budget.stage_one_flops: 6 N
    per trained token, warm-up, probes, reference steps, graph steps and sweeps; 2 N per scored token, the held
    windows Delta is measured on, validation sets and RegMix's evaluations; DoGE's per-domain gradient norms). The
    counts the data decides (windows a domain holds, tokens an evaluation scores) are read from the prepared `data`
    (compare passes its first seed's); without it they are taken not to bind. An episode count the user sets in
    `methods.<name>` is kept, with a warning when it breaks the equal budget."""
    mc = cfg.mixer
    m = num_domains or len(cfg.data.domains or {}) or 1
    new_mc = methods.resolve_mixer(cfg, method)
    own = cfg.methods.get(method, {})
    if B.has_budget(method) and not {"episodes", "regmix_steps"} & set(own) and method != mc.method:
        try:
            new_mc = B.fit_budget(new_mc, B.compare_flops(cfg, data), lambda c: B.predicted_flops(cfg, c, data))
        except ValidationError as err:
            raise InputError(format_validation_error(err, f"methods.{method}")) from None
    return cfg.model_copy(update={"mixer": new_mc, "seed": cfg.seed + seed_offset})


def budget_lines(cfg, names_m: list[str], plans: list, num_domains: int, data=None) -> list[str]:
    """One line per method whose stage-one FLOPs differ from the budget by more than 10%, with its tokens and FLOPs
    against the budget's (`data`: the prepared data the plans were fitted on)."""
    target = B.compare_flops(cfg, data)
    target_tokens = B.compare_budget(cfg.mixer, num_domains, cfg.train.batch_size) * cfg.train.seq_len
    seen, lines = set(), []
    for method, _, mcfg in plans:
        if method in seen or not B.has_budget(method):
            continue
        seen.add(method)
        flops = B.predicted_flops(mcfg, mcfg.mixer, data)
        off = B.mismatch(flops, target)
        if off > 0.10:
            tokens = B.stage_one_rows(mcfg.mixer, num_domains, cfg.train.batch_size) * cfg.train.seq_len
            count = mcfg.mixer.regmix_steps if method == "regmix" else mcfg.mixer.episodes
            set_ = [k for k in ("episodes", "regmix_steps") if k in cfg.methods.get(method, {})]
            why = (f"methods.{method}.{set_[0]} is set" if set_
                   else ("one step per proxy" if method == "regmix" else "one episode") + " already costs more"
                   if count == 1 else "its episodes are coarse")
            lines.append(f"warning: {method} spends {flops:.3g} stage-one FLOPs ({tokens:,.0f} proxy-sized training "
                         f"tokens) against a budget of {target:.3g} FLOPs ({target_tokens:,.0f} training tokens) "
                         f"({off:.0%} off: {why})")
    return lines


def fingerprint(mcfg) -> str:
    """What a run's result depends on: its whole config, except where its files live."""
    d = mcfg.to_dict()
    d.get("data", {}).pop("cache_dir", None)
    if mcfg.mixer.method in STATIC_METHODS:  # a static mixture ignores every other mixer setting
        d["mixer"] = {"method": mcfg.mixer.method, "weights": mcfg.mixer.weights}
    d.pop("methods", None)  # already applied to this run's mixer
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def check_plan(names_m: list[str], seeds: int) -> None:
    """A list of distinct methods and at least one seed."""
    if not names_m:
        raise InputError("--methods: expected a comma-separated list, e.g. uniform,doremi,tandem")
    if len(set(names_m)) != len(names_m):
        raise InputError(f"--methods: duplicate method in {','.join(names_m)}")
    unknown = [m for m in names_m if m not in METHODS]
    if unknown:
        raise InputError(f"--methods: unknown method {unknown[0]!r}; expected names from {', '.join(METHODS)}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"--seeds: expected a whole number >= 1, got {seeds!r}")


def compare_job(cfg: Config, out: Path, names_m: list[str], seeds: int, quiet: bool = True,
                log: Callable[[str], None] = lambda s: None, where: str = "config",
                online: bool = True) -> tuple[dict, str, list[str]]:
    """`tandem compare`: stage one and stage two of each (method, seed) into OUT/runs/METHOD-seedS/, finished runs
    kept; returns OUT/results.json's content, the table (OUT/results.md) and the budget warnings (for after the
    table). Every plan is validated before any run. With `online` (the default) the online methods (ODM, ADO,
    Skill-It, Aioli) steer the target's own training, as their papers run them, instead of a proxy's stage one."""
    if cfg.stages is not None:
        # Comparing two-stage runs means pretraining and fine-tuning per method; compare would silently mix the SFT
        # tasks into pretraining instead.
        raise InputError(f"{where}: stages: tandem compare does not run two-stage configs; run `tandem run` "
                         f"once per method (--set mixer.method=NAME --set seed=N) and compare their eval.json")
    check_plan(names_m, seeds)
    from tandem.io import refuse_overlap

    refuse_overlap(out, cfg.input_paths())
    m = len(cfg.data.domains or {})
    for m_ in names_m:  # every method's settings are checked before the data is prepared
        method_config(cfg, m_, 0, m)
    with removed_on_input_error(out):
        # episodes are fitted on the first seed's data (what it holds caps the held and validation sets), the same
        # for every seed
        first = prepare(cfg, quiet, log)
        plans = [(m_, s, method_config(cfg, m_, s, m, first)) for s in range(seeds) for m_ in names_m]
        results, data = _run_plans(cfg, out, plans, quiet, log, online, first)
    from tandem.mixing.optimize import rows_measured_with, rows_per_document

    # the budget every method's stage one was fitted to (each run's own: stage1_tokens and stage1_flops)
    budget = {"flops": B.compare_flops(cfg, first),
              "tokens": B.compare_budget(cfg.mixer, m, cfg.train.batch_size) * cfg.train.seq_len}
    # rows_per_document: what `tandem export --format datasets` needs to turn a method's weights into document
    # probabilities (the same data for every method and seed)
    doc = {"methods": names_m, "seeds": seeds, "online_methods": "online" if online else "static",
           "stage1_budget": budget, "runs": results,
           "rows_per_document": rows_per_document(data, cfg.train.seq_len),
           "rows_measured_with": rows_measured_with(cfg, data)}
    write_json(out / "results.json", doc)
    table = write_report(out, results, names_m)
    staged = [p for p in plans if not (online and p[0] in ONLINE_METHODS)]  # the online ones have no stage one
    return doc, table, budget_lines(cfg, names_m, staged, m, first)


def _read_identity(path: Path) -> dict | None:
    """A run folder's recorded identity, or None when it is missing or unreadable (which means: not the same run)."""
    from tandem import schema

    try:
        return schema.read_json(path, schema.RUN_IDENTITY, "run identity")
    except InputError:
        return None


def _run_identity(mcfg, data, fingerprint_: str) -> dict:
    """runs.identity (settings and the data's content), with the whole config's fingerprint (evaluation settings
    included: they change the result); a static mixture's run ignores the mixer's other settings."""
    from tandem.runs import identity

    ident = identity(mcfg, data)
    if mcfg.mixer.method in STATIC_METHODS:
        ident = {k: v for k, v in ident.items()
                 if not k.startswith("mixer.") or k == "mixer.method" or k.startswith("mixer.weights")}
    return {**ident, "config_fingerprint": json.dumps(fingerprint_)}


def _kept_result(done: Path, fingerprint_: str) -> dict | None:
    from tandem import schema

    try:
        kept = schema.read_json(done, schema.COMPARE_RUN, "run result")
    except InputError:
        return None
    return kept if kept.get("config_fingerprint") == fingerprint_ else None


def _run_plans(cfg: Config, out: Path, plans: list, quiet: bool, log, online: bool = True,
               first=None) -> tuple[list[dict], object]:
    """Every (method, seed) run, finished ones kept; returns the results and the first seed's prepared data
    (`first`: already prepared)."""
    from tandem.runs import lock
    from tandem.training.learner import flops_used

    lock(out)  # one compare per folder: a second process on the same OUT refuses instead of racing this one
    data_by_seed = {} if first is None else {0: first}
    results = []
    write_config(cfg, out)
    started, ran = time.perf_counter(), 0  # for the time left: the runs this call trained, and how long they took
    for i, (method, seed, mcfg) in enumerate(plans, 1):
        run_dir = out / "runs" / f"{method}-seed{seed}"
        done = run_dir / "result.json"
        fingerprint_ = fingerprint(mcfg)
        if seed not in data_by_seed:
            data_by_seed[seed] = prepare(mcfg, quiet, log)
        data = data_by_seed[seed]
        # The run's identity (settings and the data's content) guards everything the folder holds: a finished
        # result and the checkpoints of an unfinished one are reused only for the same run.
        run_online = online and method in ONLINE_METHODS
        now = {"command": "compare --online" if run_online else "compare",
               "identity": _run_identity(mcfg, data, fingerprint_)}
        if run_dir.exists():
            before = _read_identity(run_dir / "run.json")
            if before != now:
                why = "has no readable run identity" if before is None else "the config or data changed since it ran"
                log(f"[{i}/{len(plans)}] {method} seed {seed}: {why}; running it again")
                shutil.rmtree(run_dir)
            elif (kept := _kept_result(done, fingerprint_)) is not None:
                results.append(kept)
                log(f"[{i}/{len(plans)}] {method} seed {seed}: done earlier, kept")
                continue
        left = ""
        if ran:
            per_run = (time.perf_counter() - started) / ran
            left = f" (about {per_run * (len(plans) - i + 1) / 60:.0f} min left for the comparison)"
        log(f"[{i}/{len(plans)}] {method} seed {seed}{left}")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "run.json", now)
        f0 = flops_used()
        if run_online:
            from tandem.pipeline.stage_two import train_online_and_evaluate

            ev = train_online_and_evaluate(mcfg, data, run_dir, True, quiet)
            r = {
                "method": method, "seed": mcfg.seed, "weights": ev["weights"], "online": True,
                "test_loss": ev["test_loss"], "valid_loss": ev["valid_loss"], "epochs": ev["epochs"],
                "stage1_wall_s": 0.0, "stage1_tokens": 0, "stage1_proxy_steps": 0,
                "stage2_wall_s": ev["train_wall_time_s"], "stage2_tokens": int(sum(ev["tokens_seen"].values())),
                "stage1_flops": 0.0, "stage2_flops": flops_used() - f0,
                "config_fingerprint": fingerprint_,
            }
            write_json(done, r)
            results.append(r)
            ran += 1
            continue
        t0 = time.perf_counter()
        res = optimize(mcfg, data, run_dir / "optimize", resume=True, progress=not quiet, log=log)
        t1, f1 = time.perf_counter(), flops_used()
        weights = res.as_dict(res.recommended)
        ev = stage_two(mcfg, data, weights, run_dir, True, quiet)
        r = {
            "method": method, "seed": mcfg.seed, "weights": weights,
            "test_loss": ev["test_loss"], "valid_loss": ev["valid_loss"], "epochs": ev["epochs"],
            "stage1_wall_s": t1 - t0, "stage1_tokens": res.train_tokens, "stage1_proxy_steps": res.proxy_steps,
            "stage2_wall_s": ev.get("train_wall_time_s"),
            "stage2_tokens": int(sum(ev["tokens_seen"].values())),
            # compute of this process (a resumed run counts only what it spent after resuming)
            "stage1_flops": f1 - f0, "stage2_flops": flops_used() - f1,
            "config_fingerprint": fingerprint_,
        }
        write_json(done, r)
        results.append(r)
        ran += 1
    return results, data_by_seed[min(data_by_seed)]
