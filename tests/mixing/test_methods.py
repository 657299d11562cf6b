"""DoReMi and DoGE on language models through the same loop, and `tandem compare`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_config
from tandem.pipeline.compare import method_config
from tandem.cli.main import main
from tandem.config import load_config
from tandem.data.cache import prepare_data
from tandem.errors import InputError
from tandem.mixing import methods
from tandem.mixing.optimize import optimize

MIXER = {"episodes": 4, "probe_steps": 2, "free_steps": 3, "warmup_steps": 2, "eval_sequences": 2, "batch_size": 8}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    path = tiny_config(root, mixer=MIXER, train={"steps": 6})
    cfg = load_config(path)
    return path, cfg, prepare_data(cfg)


def test_method_config_uses_published_defaults_and_same_budget(setup):
    from tandem.mixing.budget import compare_budget, compare_flops, flops_inputs, predicted_flops, stage_one_rows

    _, cfg, data = setup
    M, B = len(data.domains), cfg.train.batch_size
    # TANDEM's own rows: warm-up and proxy steps, plus the reference's probe steps on the proxy's rows and validation
    # rows; its FLOPs add the twins' scoring of the held windows (two halves of eval_sequences / 2 windows per domain)
    b = MIXER["batch_size"]
    assert compare_budget(cfg.mixer, M, B) == (2 + 4 * (2 + 3)) * b + 4 * 2 * (b + round(0.5 * b))
    budget = compare_flops(cfg, data)
    n, T = flops_inputs(cfg, cfg.mixer, data)["params"], cfg.train.seq_len
    # 6 N T per row trained; each of 4 episodes, both twins score (2 N T per row) two halves of 1 window per domain
    assert budget == 6 * n * T * compare_budget(cfg.mixer, M, B) + 4 * 2 * (2 * n * T) * (2 * 1 * M)
    d = method_config(cfg, "doremi", 1, M, data)
    assert (d.mixer.probe_steps, d.mixer.free_steps, d.mixer.eta_alpha, d.mixer.smoothing) == (1, 0, 1.0, 1e-3)
    assert d.seed == cfg.seed + 1
    t = method_config(cfg, "tandem", 0, M, data)
    assert t.mixer.episodes == 4
    for method in ("doremi", "doge", "odm", "aioli", "skillit", "ado", "regmix"):
        mc = method_config(cfg, method, 0, M, data).mixer
        flops = predicted_flops(cfg, mc, data)
        count = "regmix_steps" if method == "regmix" else "episodes"  # RegMix: one more step per proxy
        per_episode = (predicted_flops(cfg, mc.model_copy(update={count: 2}), data)
                       - predicted_flops(cfg, mc.model_copy(update={count: 1}), data))
        # as close to the budget as whole episodes allow (or one episode, where one already costs more)
        assert abs(flops - budget) <= per_episode / 2 * (1 + 1e-9) or getattr(mc, count) == 1, method
        # matched on FLOPs, not rows: a method that scores more per episode than TANDEM trains fewer rows
        if method in ("doremi", "doge"):
            assert stage_one_rows(mc, M, B) != compare_budget(cfg.mixer, M, B)
    # the same fit without the data (no cap binds on these windows): the same episodes
    assert method_config(cfg, "doge", 0, M).mixer.episodes == method_config(cfg, "doge", 0, M, data).mixer.episodes
    # an override that changes a method's cost per episode changes its episodes, not its budget (DoGE with more free
    # steps per update gets fewer episodes, not five times the proxy steps)
    over = cfg.model_copy(update={"methods": {"doge": {"free_steps": 5}}})
    g = method_config(over, "doge", 0, M, data).mixer
    before = method_config(cfg, "doge", 0, M, data).mixer
    assert g.free_steps == 5 and g.episodes < before.episodes
    per = (predicted_flops(cfg, g.model_copy(update={"episodes": 2}), data)
           - predicted_flops(cfg, g.model_copy(update={"episodes": 1}), data))
    assert abs(predicted_flops(cfg, g, data) - budget) <= per / 2 * (1 + 1e-9)
    over = cfg.model_copy(update={"methods": {"doremi": {"eta_alpha": 0.25}}})
    assert method_config(over, "doremi", 0, M).mixer.eta_alpha == 0.25
    bad = cfg.model_copy(update={"methods": {"doremi": {"eta_alpha": -1}}})
    with pytest.raises(InputError, match="methods.doremi"):
        method_config(bad, "doremi", 0, M)


# Every method with a stage one, on two episodes (RegMix: three proxies of two steps), and settings where the data
# caps a count: held halves cut short by horizon matching, a held-out part, validation sets longer than the data.
FLOP_CASES = [
    ("tandem", {}), ("doremi", {}), ("doge", {}), ("odm", {}), ("ado", {}), ("skillit", {"graph_steps": 2}),
    ("aioli", {}), ("regmix", {"regmix_samples": 3, "regmix_steps": 2}),
    ("tandem", {"eval_sequences": 400, "horizon": "target"}), ("doremi", {"reference_steps": 3, "free_steps": 1}),
    ("doge", {"held_out_fraction": 0.2, "eval_sequences": 7}), ("skillit", {"eval_sequences": 400, "graph_steps": 1}),
    ("aioli", {"eval_sequences": 3, "batch_size": 4}), ("odm", {"warmup_steps": 0}),
]


@pytest.mark.parametrize("method,extra", FLOP_CASES,
                         ids=[m + "".join(f"-{k}" for k in e) for m, e in FLOP_CASES])
def test_stage_one_flops_predicts_what_stage_one_meters(setup, tmp_path, method, extra):
    """tandem.mixing.budget.stage_one_flops, which compare matches methods on, is what stage one computes: the meter
    (tandem.training.learner.flops_used, compare's stage1_flops) counts the same FLOPs."""
    from tandem.mixing.budget import predicted_flops
    from tandem.training.learner import flops_used

    _, cfg, data = setup
    mc = methods.resolve_mixer(cfg, method)
    extra = dict(extra)
    if "graph_steps" in extra:
        extra["skillit"] = mc.skillit.model_copy(update={"graph_steps": extra.pop("graph_steps")})
    mc = mc.model_copy(update={"episodes": 2, **extra})
    run = cfg.model_copy(update={"mixer": mc})
    if mc.horizon == "target":  # a target 25 times the proxy's rows: the proxy sees 1/25 of each train split
        run = run.model_copy(update={"train": cfg.train.model_copy(update={"steps": 25 * 12})})
    predicted = predicted_flops(run, mc, data)
    before = flops_used()
    optimize(run, data, tmp_path, progress=False, log=lambda s: None)
    assert flops_used() - before == pytest.approx(predicted, rel=1e-9, abs=0)


def test_compare_matches_stage_one_flops_across_methods(setup, tmp_path, capsys):
    """With --static-online every method runs a stage one; each spends (as metered) the FLOPs its fitted episodes
    predict, within half an episode of the budget, and the table shows its tokens and FLOPs."""
    from tandem.mixing.budget import compare_flops, predicted_flops

    path, cfg, data = setup
    out = tmp_path / "cmp"
    assert main(["compare", str(path), "--methods", "doremi,skillit", "--static-online", "--out", str(out), "-q"]) == 0
    doc = json.loads((out / "results.json").read_text())
    runs = {r["method"]: r for r in doc["runs"]}
    budget = compare_flops(cfg, data)
    assert doc["stage1_budget"]["flops"] == budget and doc["stage1_budget"]["tokens"] > 0
    for method in ("doremi", "skillit"):
        mc = method_config(cfg, method, 0, len(data.domains), data).mixer
        assert runs[method]["stage1_flops"] == pytest.approx(predicted_flops(cfg, mc, data), rel=1e-9)
        per = (predicted_flops(cfg, mc.model_copy(update={"episodes": 2}), data)
               - predicted_flops(cfg, mc.model_copy(update={"episodes": 1}), data))
        assert abs(runs[method]["stage1_flops"] - budget) <= per / 2 * (1 + 1e-9)
        assert runs[method]["stage1_tokens"] > 0
    md = (out / "results.md").read_text()
    assert "stage-1 tokens" in md and "stage-1 FLOPs" in md
    assert "warning" not in capsys.readouterr().err


def test_compare_warns_when_a_users_override_breaks_the_equal_budget(setup, tmp_path, capsys):
    path, _, _ = setup
    import yaml

    cfg_path = tmp_path / "c.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["methods"] = {"doge": {"episodes": 1}}
    for d in raw["data"]["domains"].values():  # keep the domain files where they are
        for k, v in list(d.items()):
            if isinstance(v, str) and not v.startswith("/"):
                d[k] = str((path.parent / v).resolve())
    cfg_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "cmp"
    assert main(["compare", str(cfg_path), "--methods", "doge,uniform", "--out", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: doge spends" in err and "methods.doge.episodes is set" in err
    assert "stage-one FLOPs" in err and "tokens" in err


def test_effective_keeps_explicit_settings(setup):
    path, _, _ = setup
    cfg = load_config(path, ["mixer.method=doremi"])  # probe_steps/free_steps set explicitly in the file
    mc = methods.effective(cfg.mixer)
    assert (mc.probe_steps, mc.free_steps) == (2, 3)
    assert mc.eta_alpha == 1.0 and mc.smoothing == 1e-3  # not set in the file: DoReMi's defaults


@pytest.mark.parametrize("method", ["doremi", "doge"])
def test_loop_methods_run_and_stay_on_simplex(setup, tmp_path, method):
    _, cfg, data = setup
    mcfg = method_config(cfg, method, 0)
    res = optimize(mcfg, data, tmp_path, progress=False, log=lambda s: None)
    assert len(res.history) == mcfg.mixer.episodes
    for r in res.history:
        assert r.alpha.min() >= 0 and abs(r.alpha.sum() - 1) < 1e-9
    if method == "doremi":
        # clipped excess loss: Delta never positive; smoothing keeps every weight >= c / M
        assert all((r.delta <= 0).all() for r in res.history)
        assert min(r.alpha.min() for r in res.history) >= 1e-3 / 3 - 1e-12
        w = json.loads((tmp_path / "weights.json").read_text())
        assert w["method"] == "doremi"


def test_compare_smoke_and_resume(setup, tmp_path, capsys):
    path, _, _ = setup
    out = tmp_path / "cmp"
    argv = ["compare", str(path), "--methods", "uniform,doge,tandem", "--seeds", "2", "--out", str(out), "-q"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["runs"]) == 6
    assert {(r["method"], r["seed"]) for r in res["runs"]} == {(m, s) for m in ("uniform", "doge", "tandem") for s in (0, 1)}
    md = (out / "results.md").read_text()
    # two seeds of a tiny run: the table has its paired differences to uniform; nothing is bold unless a method
    # wins by more than two standard errors of the paired difference
    from tandem.report.compare import significant_best

    assert "± " in md and "average - uniform" in md
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith("| ") and " ± " in line]
    average_cells = [r[2] for r in rows if r[0].lstrip("| ") in ("uniform", "doge", "tandem") and len(r) > 4]
    assert average_cells
    best = significant_best(res["runs"], ["uniform", "doge", "tandem"], "average")
    assert any("**" in c for c in average_cells) == (best is not None)
    for png in ("weights.png", "test_loss.png", "trajectories.png"):
        assert (out / png).stat().st_size > 1000
    # a killed compare keeps finished runs: remove one result and rerun; only that run is redone
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    victim = out / "runs" / "tandem-seed1" / "result.json"
    victim.unlink()
    capsys.readouterr()
    assert main(argv[:-1]) == 0
    err = capsys.readouterr().err
    assert err.count("done earlier, kept") == 5
    for p, t in before.items():
        if p != victim:
            assert p.stat().st_mtime_ns == t
    again = json.loads((out / "results.json").read_text())
    old = {(r["method"], r["seed"]): r for r in res["runs"]}
    new = {(r["method"], r["seed"]): r for r in again["runs"]}
    assert new[("tandem", 1)]["weights"] == old[("tandem", 1)]["weights"]  # same seed, same weights
    # A changed config reruns the runs it affects and keeps the others.
    capsys.readouterr()
    assert main(argv[:-1] + ["--set", "mixer.eval_sequences=3"]) == 0
    err = capsys.readouterr().err
    assert err.count("the config or data changed since it ran") == 4 and err.count("done earlier, kept") == 2  # uniform
    changed = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in changed["runs"] if r["config_fingerprint"] != old[(r["method"], r["seed"])].get("config_fingerprint")} == {"doge", "tandem"}


def test_compare_respects_what_the_user_set_for_its_own_method(setup):
    from tandem.pipeline.compare import method_config
    from tandem.config import load_config

    path, _, _ = setup
    cfg = load_config(path, ["mixer.held_out_fraction=0.15"])
    assert method_config(cfg, "tandem", 0).mixer.held_out_fraction == 0.15
    assert method_config(load_config(path), "tandem", 0).mixer.held_out_fraction == 0.0


def test_compare_bad_method(setup, tmp_path, capsys):
    path, _, _ = setup
    rc = main(["compare", str(path), "--methods", "uniform,nosuch", "--out", str(tmp_path / "c"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nosuch" in err[0]
    assert not (tmp_path / "c").exists()


def test_online_methods_steer_the_targets_own_training(tmp_path):
    """`tandem train --online` and compare's default: the online method adapts the mixture during the target's run
    (no stage one); the same config and seed give the same target either way."""
    import json as _json

    from conftest import tiny_config
    from tandem.cli.main import main

    path = tiny_config(tmp_path, train={"steps": 12}, mixer={"method": "odm", "warmup_steps": 2},
                       eval={"max_tokens": 512})
    assert main(["train", str(path), "--online", "--out", str(tmp_path / "t"), "-q"]) == 0
    ev = _json.loads((tmp_path / "t" / "eval.json").read_text())
    assert ev["online"]["method"] == "odm" and ev["online"]["target_steps"] == 12
    assert abs(sum(ev["weights"].values()) - 1) < 1e-9
    traj = (tmp_path / "t" / "online" / "trajectory.csv").read_text().splitlines()
    assert len(traj) == 1 + 10  # one round per step after the warm-up
    assert main(["compare", str(path), "--methods", "uniform,odm", "--out", str(tmp_path / "c"), "-q"]) == 0
    runs = {r["method"]: r for r in _json.loads((tmp_path / "c" / "results.json").read_text())["runs"]}
    assert runs["odm"]["online"] is True and runs["odm"]["stage1_tokens"] == 0
    assert runs["odm"]["test_loss"]["average"] == ev["test_loss"]["average"]
    # a static method cannot steer a run; the online run is not the plain run (resume refused between them)
    assert main(["train", str(path), "--online", "--set", "mixer.method=tandem", "--out", str(tmp_path / "x"), "-q"]) == 2
    assert main(["train", str(path), "--resume", "--out", str(tmp_path / "t"), "-q"]) == 2


def test_compare_counts_each_stages_flops(tmp_path):
    """Compute per run, forward and backward: a static mixture spends none in stage one; TANDEM at least 6 N per token
    its twins trained, more for the held-set scoring; the same target training costs the same in stage two."""
    import json as _json

    from conftest import tiny_config
    from tandem.cli.main import main
    from tandem.models import build_model

    path = tiny_config(tmp_path, train={"steps": 6}, eval={"max_tokens": 512},
                       mixer={"episodes": 2, "probe_steps": 1, "free_steps": 1, "warmup_steps": 1,
                              "eval_sequences": 2})
    assert main(["compare", str(path), "--methods", "uniform,tandem", "--out", str(tmp_path / "c"), "-q"]) == 0
    doc = _json.loads((tmp_path / "c" / "results.json").read_text())
    runs = {r["method"]: r for r in doc["runs"]}
    assert runs["uniform"]["stage1_flops"] == 0
    from tandem.config import load_config

    cfg = load_config(path)
    n_proxy = sum(p.numel() for p in build_model(cfg.mixer.proxy, 512, cfg.train.seq_len, 0).parameters())
    assert runs["tandem"]["stage1_flops"] > 6 * n_proxy * runs["tandem"]["stage1_tokens"]
    # what compare matches the methods on is what it measures
    from tandem.data.cache import prepare_data
    from tandem.mixing.budget import compare_flops

    assert runs["tandem"]["stage1_flops"] == pytest.approx(compare_flops(cfg, prepare_data(cfg)), rel=1e-9)
    assert runs["tandem"]["stage2_flops"] == runs["uniform"]["stage2_flops"] > 0
    assert "stage-1 FLOPs" in (tmp_path / "c" / "results.md").read_text()
