"""The scenario benchmark runner end to end in quick mode: data, compare runs, grid oracle, ablations, results
JSON, the regenerated markdown section (and only it), figures, and resuming without rerunning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.__main__ import main as bench_main
from benchmarks.scenario_report import BEGIN, END, replace_section

HEAD = "# Benchmarks\n\nHand-written speed section.\n\n"
TAIL = "\n## 1,000 domains\n\nHand-written, must survive.\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    md = root / "BENCHMARKS.md"
    md.write_text(HEAD + f"{BEGIN}\nold generated text\n{END}" + TAIL, encoding="utf-8")
    argv = ["scenarios", "--quick", "--root", str(root), "--seeds", "2", "-q"]
    assert bench_main(argv) == 0
    return root, argv


def test_results_file_holds_every_scenario_and_ablation(quick_run):
    root, _ = quick_run
    res = json.loads((root / "scenarios.json").read_text())
    assert res["mode"] == "quick"
    assert set(res["scenarios"]) == {"restricted", "oracle"}
    for sc in res["scenarios"].values():
        for m in ("uniform", "tandem"):
            row = sc["summary"][m]
            assert row["seeds"] == [0, 1]
            mean, std = row["average"]
            assert np.isclose(mean, np.mean(row["average_by_seed"])) and std >= 0
            assert np.isclose(sum(row["weights"].values()), 1.0)
        assert np.allclose(list(sc["summary"]["uniform"]["weights"].values()), 1 / 3)
    # TANDEM moved its weights away from where it started
    assert not np.allclose(list(res["scenarios"]["restricted"]["summary"]["tandem"]["weights"].values()), 1 / 3)
    assert set(res["ablations"]) == {"K1", "nosync"}
    assert len(res["ablations"]["K1"]["runs"]) == 2 and len(res["ablations"]["nosync"]["runs"]) == 1
    assert res["ablations"]["K1"]["probe_steps"] == 1 and res["ablations"]["nosync"]["sync"] is False


def test_oracle_is_the_grid_point_with_the_lowest_validation_loss(quick_run):
    root, _ = quick_run
    sc = json.loads((root / "scenarios.json").read_text())["scenarios"]["oracle"]
    pts = sc["grid_points"]
    assert len(pts) == 6  # 3 domains at resolution 2
    best = min(pts, key=lambda p: p["valid_loss"])
    assert sc["grid_best"] == pytest.approx({d: best[f"weight_{d}"] for d in ("code", "docs", "prose")})
    oracle = sc["summary"]["oracle (grid best)"]
    assert oracle["weights"] == pytest.approx(sc["grid_best"])
    v = json.loads((root / "scenarios.json").read_text())["verdicts"]["oracle"]
    u, o, t = (sc["summary"][k]["average"][0] for k in ("uniform", "oracle (grid best)", "tandem"))
    assert v["gap_closed"]["tandem"] == pytest.approx((u - t) / (u - o))
    assert v["gap_closed"]["oracle (grid best)"] == pytest.approx(1.0)


def test_markdown_section_is_regenerated_and_the_rest_kept(quick_run):
    root, _ = quick_run
    text = (root / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert text.startswith(HEAD + BEGIN) and text.endswith(END + TAIL)
    assert "old generated text" not in text
    section = text[text.index(BEGIN): text.index(END)]
    res = json.loads((root / "scenarios.json").read_text())
    tandem_avg = res["scenarios"]["restricted"]["summary"]["tandem"]["average"]
    assert f"{tandem_avg[0]:.4f} ± {tandem_avg[1]:.4f}" in section
    assert "tandem compare" in section and "gap closed" in section and "Goal:" in section
    for fig in ("restricted_weights.png", "oracle_weights.png", "oracle_grid.png", "ablations.png"):
        assert (root / "figures" / fig).stat().st_size > 1000
        assert f"figures/{fig}" in section


def test_rerun_resumes_without_training_again(quick_run):
    root, argv = quick_run
    results = sorted((root / "runs" / "bench").rglob("result.json")) + sorted((root / "runs" / "bench").rglob("weights.json"))
    before = {p: p.stat().st_mtime_ns for p in results}
    text = (root / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert bench_main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in results} == before
    assert (root / "BENCHMARKS.md").read_text(encoding="utf-8") == text


def test_replace_section_appends_when_markers_are_missing():
    out = replace_section("# B\n\ntext\n", f"{BEGIN}\nnew\n{END}\n")
    assert out == f"# B\n\ntext\n\n{BEGIN}\nnew\n{END}\n"
    again = replace_section(out, f"{BEGIN}\nnewer\n{END}\n")
    assert again == f"# B\n\ntext\n\n{BEGIN}\nnewer\n{END}\n"


def test_power_protocol_picks_the_largest_step_within_the_null(tmp_path):
    """benchmarks/power.py: the chosen eta keeps the null within its limit at every episode count, and the next
    step on the grid does not (so the choice is the largest, not any)."""
    from benchmarks import power

    out = tmp_path / "power.json"
    assert bench_main(["power", "--replays", "40", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    best = res["choice"]
    cand = res["candidates"][best["report"]]
    assert best["eta"] in power.ETAS
    for T in power.EPISODES:
        assert cand["cells"][f"T={T} rho={power.RHO_CHOICE} snr=0.0"]["null95"] <= power.NULL_LIMIT
        assert cand["cells"][f"T={T} rho={power.RHO_CHOICE} snr=0.6"]["favoured"] > 1 / power.M  # it has power


def test_tandem_defaults_tables_pair_by_seed_and_apply_the_decisions(tmp_path, capsys):
    from benchmarks import tandem_defaults as td

    def write(folder, method):
        runs = [{"method": m, "seed": s, "weights": {"a": 0.5, "b": 0.5}, "stage1_wall_s": 1.0, "stage1_flops": 1.0,
                 "valid_loss": {"average": v}, "test_loss": {"average": v}}
                for m, vals in method.items() for s, v in enumerate(vals)]
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps({"runs": runs}))

    base = [3.0, 3.2, 3.1, 3.3, 2.9]
    for s in ("transfer", "restricted", "oracle", "ecommerce"):
        write(s, {"uniform": base, "tandem": [x - 0.1 for x in base]})
        # C beats A by 0.05 +- 0.01 everywhere; B loses to A in restricted
        write(f"{s}-C", {"tandem": [x - 0.15 + 0.01 * (k % 2) for k, x in enumerate(base)]})
    write("transfer-B", {"tandem": [x - 0.3 for x in base]})
    write("restricted-B", {"tandem": [x + 0.1 for x in base]})
    assert td.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| tandem (defaults at gamma 1) (5) | -0.1000 ± 0.0000 | better |" in out
    assert "decision 1 (where Delta is measured): train rows" in out  # B wins in one scenario only
    assert "decision 2 (proxy): C wins 4, loses 0 -> proxy: target, horizon: target" in out
    assert "decision 6" not in out  # no CS rows: nothing to decide

    # a variant that loses beyond two standard errors in one scenario is decided before the others have run
    write("ecommerce-G", {"tandem": [x - 0.1 for x in base]})
    write("ecommerce-CS", {"tandem": [x - 0.05 + 0.01 * (k % 2) for k, x in enumerate(base)]})
    write("restricted-G", {"tandem": [x - 0.1 for x in base]})
    write("restricted-CS", {"tandem": [x - 0.1 for x in base]})
    assert td.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "decision 6: CS wins 0, loses 1 (in 2 of 5 scenarios), null largest changes not run -> the defaults stay" in out


def test_callback_benchmark_times_each_variant_against_the_plain_trainer(shared_cfg, tmp_path):
    """benchmarks/callback.py: every variant runs a real Trainer and its time per step is reported beside the plain
    run's, from the same alternating rounds."""
    pytest.importorskip("transformers")
    out = tmp_path / "callback.json"
    rc = bench_main(["callback", "--config", str(shared_cfg), "--steps", "8", "--repeats", "2",
                     "--variants", "plain,odm,tandem", "--set", "mixer.warmup_steps=2", "--set", "mixer.probe_steps=1",
                     "--set", "mixer.free_steps=1", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["seconds_per_step"]) == {"plain", "odm", "tandem"}
    assert all(len(t) == 2 and all(x > 0 for x in t) for t in res["seconds_per_step"].values())
    assert res["ratio_to_plain"]["plain"] == 1.0
    assert bench_main(["callback", "--variants", "odm", "--out", str(out)]) == 2  # no plain run to compare with


def _phase_run(folder, deltas, weights, names=("a", "b", "c")):
    folder.mkdir(parents=True)
    lines = [json.dumps({"episode": i, "step": 10 * (i + 1), "delta": dict(zip(names, map(float, d)))})
             for i, d in enumerate(deltas)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "weights.json").write_text(json.dumps({"domain_weights": dict(zip(names, weights))}), encoding="utf-8")


def test_phases_finds_a_signal_that_reverses_during_stage_one(tmp_path, capsys):
    from benchmarks.phases import summarise

    rng = np.random.default_rng(0)
    # 12 episodes: the first half says "more of a, less of c" (Delta a low), the second half the opposite
    early, late = np.array([-1.0, 0.0, 1.0]), np.array([1.0, 0.0, -1.0])
    for k in range(2):
        deltas = [(early if i < 6 else late) + 0.1 * rng.standard_normal(3) for i in range(12)]
        _phase_run(tmp_path / "rev" / f"seed{k}", deltas, [0.4, 0.3, 0.3])
        _phase_run(tmp_path / "steady" / f"seed{k}", [early + 0.1 * rng.standard_normal(3) for _ in range(12)],
                   [0.5, 0.3, 0.2])
    ref = np.array([0.5, 0.3, 0.2])
    rev = summarise(sorted((tmp_path / "rev").iterdir()), ref)
    steady = summarise(sorted((tmp_path / "steady").iterdir()), ref)
    assert rev["episodes"] == 12 and len(rev["phases"]) == 6
    assert rev["phases"][0]["mean_z"][0] < -1 and rev["phases"][-1]["mean_z"][0] > 1  # the reversal, phase by phase
    assert abs(rev["mean_z"][0]) < 0.2 < 1 < -steady["mean_z"][0]  # averaged over stage one it cancels; steady holds
    assert steady["t"][0] < -5 and abs(rev["t"][0]) < abs(steady["t"][0])
    assert all(c > 0.99 for c in steady["cosine_with_reference"])  # the same move as the reference
    assert bench_main(["phases", f"rev={tmp_path / 'rev' / '*'}", "--reference", "0.5,0.3,0.2"]) == 0
    assert "rev: 2 runs, 12 episodes" in capsys.readouterr().out


def test_lookahead_scores_each_domain_along_one_run(shared_cfg, capsys):
    """Both signals come from the same kept states of one run; the validation gradient at a kept state is not the one at
    the run's end, so the two differ; each is standardised over the domains."""
    from benchmarks.lookahead import main as lookahead_main

    argv = [str(shared_cfg), "--seeds", "1", "--every", "2", "--reference", "0.5,0.3,0.2"]
    assert lookahead_main(argv) == 0
    out = capsys.readouterr().out
    assert "1 seeds" in out and "ahead" in out and "greedy" in out and "cosine with the reference" in out
    ahead = [float(x) for x in out.split("ahead")[1].split("mean")[1].split("cosine")[0].split()]
    greedy = [float(x) for x in out.split("greedy")[1].split("mean")[1].split("cosine")[0].split()]
    assert len(ahead) == len(greedy) == 3 and abs(sum(ahead)) < 0.05 and ahead != greedy
    assert np.sqrt(np.mean(np.square(ahead))) == pytest.approx(1, abs=0.02)


def _slope_run(folder: Path, weights: dict, valid: float, test: float) -> None:
    folder.mkdir(parents=True)
    (folder / "eval.json").write_text(json.dumps({"weights": weights, "valid_loss": {"average": valid},
                                                  "test_loss": {"average": test}}))


def test_slope_reads_paired_finite_differences(tmp_path):
    """Per seed, each raised run minus that seed's uniform run; the descent direction (minus the centred slopes)
    points at the reference when raising `a` lowers the loss and raising `c` raises it."""
    from benchmarks.slope import read, summarise

    names = ["a", "b", "c"]
    u = {n: 1 / 3 for n in names}
    for s, base in enumerate([2.0, 2.5, 3.0]):  # seeds differ a lot in level; the pairing removes it
        _slope_run(tmp_path / f"uniform-seed{s}", u, base, base + 0.1)
        for n, eff in zip(names, [-0.05, 0.0, 0.04]):
            _slope_run(tmp_path / f"up-{n}-seed{s}", u, base + eff + 0.001 * s, base + 0.1 + eff)
    _slope_run(tmp_path / "up-a-seed9", u, 0.0, 0.0)  # a seed without its uniform run is left out
    got_names, seeds, slopes = read(tmp_path)
    assert got_names == names and seeds == [0, 1, 2]
    assert np.allclose(slopes["valid_loss"].mean(axis=0), [-0.049, 0.001, 0.041])
    out = summarise(tmp_path, np.array([0.5, 0.3, 0.2]))
    assert "3 seeds" in out and "per seed +1.00 +1.00 +1.00; of the mean slope +1.00" in out
    assert summarise(tmp_path, against=tmp_path).endswith("'s: +1.00")  # a folder's direction against itself


def test_htwin_compares_the_whole_horizon_gap_with_a_slope(tmp_path):
    """Each run's single-episode Delta, centred; its descent direction against a finite-difference slope that points
    the same way (cosine +1) whatever the gap's common shift; unfinished runs (no weights.json) are left out."""
    from benchmarks.htwin import read, summarise

    names = ["a", "b", "c"]
    u = {n: 1 / 3 for n in names}
    slope_dir = tmp_path / "slope"
    for s, base in enumerate([2.0, 2.5]):
        _slope_run(slope_dir / f"uniform-seed{s}", u, base, base)
        for n, eff in zip(names, [-0.05, 0.0, 0.05]):
            _slope_run(slope_dir / f"up-{n}-seed{s}", u, base + eff, base + eff)
    runs = tmp_path / "htwin"
    for s, shift in enumerate([0.0, 3.0, -1.0]):
        run = runs / f"sc-g1-seed{s}"
        run.mkdir(parents=True)
        delta = dict(zip(names, [shift - 0.2, shift, shift + 0.2 + 0.01 * s]))  # a wants more weight, c less
        (run / "metrics.jsonl").write_text(json.dumps({"episode": 0, "delta": delta}) + "\n")
        if s < 2:
            (run / "weights.json").write_text("{}")
    got = read(runs)
    assert list(got) == [("sc", 1.0)] and sorted(got[("sc", 1.0)][1]) == [0, 1]
    ref = np.array([0.5, 0.2, 0.3])
    out = summarise(runs, {"proxy": slope_dir}, ref, None)
    assert "2 seeds" in out and "cosine with the proxy slope's descent: mean direction +1.00" in out
    deltas = np.array([[-0.2, 0.0, 0.2], [-0.2, 0.0, 0.21]])  # the two finished seeds' Delta, less their shifts
    direction = -(deltas - deltas.mean(axis=1, keepdims=True)).mean(axis=0)
    move = np.log(ref) - np.log(ref).mean()
    cos = move @ direction / np.linalg.norm(move) / np.linalg.norm(direction)
    assert f"cosine with the reference mixture's move: mean direction {cos:+.2f}" in out and 0.3 < cos < 0.8


def test_whole_pairs_targets_with_uniform_and_other_rows(tmp_path, capsys):
    from benchmarks import whole

    root = tmp_path / "w"
    for s, (mine, base) in enumerate([(1.9, 2.0), (2.3, 2.5), (2.6, 2.8)]):
        (root / f"w-seed{s}").mkdir(parents=True)
        (root / f"w-seed{s}" / "weights.json").write_text(json.dumps({
            "domain_weights": {"a": 0.4, "b": 0.6}, "initial": {"a": 0.5, "b": 0.5}, "wall_time_s": 1.0,
            "train_tokens": 10}))
        _slope_run(root / f"target-seed{s}", {}, mine, mine + 0.1)
        _slope_run(tmp_path / "u" / f"uniform-seed{s}", {}, base, base + 0.1)
    rows = [{"method": "tandem", "seed": s, "valid_loss": {"average": v}, "test_loss": {"average": v}}
            for s, v in enumerate([1.95, 2.35, 2.65])]
    (tmp_path / "results.json").write_text(json.dumps({"runs": rows}))
    assert whole.main([str(root), "--uniform", str(tmp_path / "u"), "--against", f"G={tmp_path / 'results.json'}"]) == 0
    out = capsys.readouterr().out
    assert "largest weight change per seed: 0.100, 0.100, 0.100" in out
    assert "W - uniform: valid -0.1667 +- 0.0333" in out and "3 seeds" in out
    assert "W - G: valid -0.0500 +- 0.0000" in out
