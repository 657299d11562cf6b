"""The target-scale check: short trainings of the target on paired seeds pick the candidate with the lowest
validation loss."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_config


def _weights(path, w):
    path.write_text(json.dumps({"domain_weights": w}))
    return path


def test_recommend_picks_the_mixture_the_target_domain_needs(tmp_path, cli):
    # The validation target is the docs domain alone (the largest, so more of it is not repetition): the docs-heavy
    # mixture must win, the two that never train on docs must lose to uniform, and the verdict says it beats uniform.
    path = tiny_config(tmp_path, mixer={"target": ["docs"]}, train={"steps": 40})
    heavy = _weights(tmp_path / "heavy.json", {"code": 0.05, "docs": 0.9, "prose": 0.05})
    nodocs = _weights(tmp_path / "nodocs.json", {"code": 0.5, "docs": 0.0, "prose": 0.5})
    code = _weights(tmp_path / "code.json", {"code": 1.0, "docs": 0.0, "prose": 0.0})
    out = tmp_path / "rec"
    rc, stdout, err = cli("recommend", path, "--candidates", f"docsheavy={heavy},nodocs={nodocs},codeonly={code},uniform",
                          "--seeds", "2", "--steps", "20", "--out", out, "-q")
    assert rc == 0, err
    rep = json.loads((out / "recommend.json").read_text())
    means = {k: v["mean"] for k, v in rep["candidates"].items()}
    assert rep["recommended"] == "docsheavy" == min(means, key=means.get)
    assert means["uniform"] < min(means["nodocs"], means["codeonly"])
    assert rep["beats_uniform"] and "beats uniform" in rep["verdict"]
    assert rep["candidates"]["uniform"]["minus_uniform"] == 0.0
    assert rep["cost"]["trainings"] == 8 and rep["cost"]["fraction_of_one_target_training"] == pytest.approx(4.0)
    chosen = rep["candidates"]["docsheavy"]["weights"]
    assert json.loads((out / "weights.json").read_text())["domain_weights"] == chosen
    assert "target-scale check" in stdout and rep["verdict"] in stdout


def test_run_with_the_check_trains_on_the_winner(tmp_path, cli):
    path = tiny_config(tmp_path, mixer={"episodes": 2, "probe_steps": 1, "free_steps": 1, "eval_sequences": 2},
                       train={"steps": 20})
    out = tmp_path / "run"
    rc, _, err = cli("run", path, "--out", out, "--baseline", "", "--check-seeds", "2", "--check-steps", "5", "-q")
    assert rc == 0, err
    check = json.loads((out / "check.json").read_text())
    assert set(check["candidates"]) >= {"tandem", "uniform", "natural"}
    chosen = check["candidates"][check["recommended"]]["weights"]
    assert json.loads((out / "weights.json").read_text())["domain_weights"] == chosen
    assert json.loads((out / "eval.json").read_text())["weights"] == chosen
    # the summary names what stage two trained on, and says what the check found
    summary = (out / "summary.md").read_text()
    column = "w:tandem" if check["recommended"] == "tandem" else f"w:checked ({check['recommended']})"
    assert column in summary and check["verdict"] in summary, summary


def test_a_check_that_picks_another_mixture_labels_stage_two_by_it(tmp_path, cli, monkeypatch):
    from tandem.mixing import recommend

    # a stand-in score: the more of the first domain the better, so the pick does not depend on what tiny models learn
    monkeypatch.setattr(recommend, "score", lambda cfg, data, w, seed, steps: 1.0 - float(w[0]) + 0.01 * seed)
    path = tiny_config(tmp_path, mixer={"episodes": 2, "probe_steps": 1, "free_steps": 1, "eval_sequences": 2},
                       train={"steps": 4})
    out = tmp_path / "run"
    rc, stdout, err = cli("run", path, "--out", out, "--baseline", "uniform", "--check-seeds", "2", "-q")
    assert rc == 0, err
    check = json.loads((out / "check.json").read_text())
    picked = check["recommended"]
    assert picked != "tandem"
    summary = (out / "summary.md").read_text()
    assert f"w:checked ({picked})" in summary and "w:tandem" not in summary and "w:uniform" in summary
    assert check["verdict"] in summary and check["verdict"] in stdout


@pytest.mark.parametrize("argv, field", [(["--seeds", "1"], "--seeds"), (["--steps", "0"], "--steps"),
                                         (["--candidates", "nope.json"], "nope.json")])
def test_recommend_bad_input(tmp_path, cli, argv, field):
    path = tiny_config(tmp_path)
    base = ["--candidates", "uniform,natural"] if "--candidates" not in argv else []
    rc, _, err = cli("recommend", path, "--out", tmp_path / "o", *base, *argv)
    assert rc == 2 and field in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_candidates_with_the_same_weights_train_once_and_ties_go_to_uniform(monkeypatch):
    import numpy as np

    from tandem.mixing import recommend

    calls = []

    def fake_score(cfg, data, w, seed, steps):
        calls.append((tuple(np.round(w, 6)), seed))
        return float(w[0]) + 0.01 * seed  # depends on the weights and the seed only

    class Cfg:
        seed = 0

        class train:
            steps = 100

    class Data:
        domains = ["a", "b"]

    monkeypatch.setattr(recommend, "score", fake_score)
    u = np.array([0.5, 0.5])
    report = recommend.check_candidates(Cfg, Data, {"tandem": u.copy(), "uniform": u.copy(),
                                                    "skewed": np.array([0.9, 0.1])}, seeds=2, steps=10,
                                        log=lambda s: None)
    assert len(calls) == 4 and report["cost"]["trainings"] == 4  # two distinct mixtures x two seeds
    assert report["candidates"]["tandem"]["valid_loss_by_seed"] == report["candidates"]["uniform"]["valid_loss_by_seed"]
    assert report["recommended"] == "uniform" and not report["beats_uniform"]


def test_the_check_trains_as_long_as_the_target_by_default(tmp_path, cli):
    """Shorter check runs favour what helps early and were measured wrong where repetition decides, so without
    --steps every candidate trains train.steps steps: the check's cost is that many target trainings."""
    path = tiny_config(tmp_path, train={"steps": 6})
    out = tmp_path / "rec"
    rc, _, err = cli("recommend", path, "--candidates", "uniform,natural", "--seeds", "2", "--out", out, "-q")
    assert rc == 0, err
    rep = json.loads((out / "recommend.json").read_text())
    assert rep["steps"] == 6 and rep["cost"]["fraction_of_one_target_training"] == pytest.approx(4.0)
