"""Two-stage training: stage one validated on the SFT tasks, `tandem run` pretrains and fine-tunes every mixture."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from sft_tasks import write_sft_tasks  # noqa: E402

from conftest import tiny_config  # noqa: E402
from tandem.config import load_config  # noqa: E402
from tandem.data.cache import prepare_data  # noqa: E402
from tandem.data.sampler import MixtureSampler  # noqa: E402
from tandem.data.sft import SFTExamples  # noqa: E402
from tandem.errors import InputError  # noqa: E402
from tandem.pipeline.two_stage import balanced_union, stage_one  # noqa: E402

PRETRAIN, SFT = ["code", "docs", "prose"], ["funcname", "upper", "module"]


def two_stage_config(root: Path, **stages) -> Path:
    path = tiny_config(root, train={"steps": 16, "seq_len": 96}, mixer={
        "episodes": 3, "probe_steps": 2, "free_steps": 2, "eta_alpha": 0.5, "eval_sequences": 4})
    raw = yaml.safe_load(path.read_text())
    raw["data"]["domains"].update(write_sft_tasks(root))
    raw["stages"] = {"pretrain": PRETRAIN, "sft": SFT, "sft_steps": 12, "sft_lr": 3e-3, **stages}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    cfg = load_config(two_stage_config(root))
    return root, cfg, prepare_data(cfg)


def test_stage_one_is_validated_on_the_sft_tasks(prepared):
    _, cfg, data = prepared
    cfg1, view = stage_one(cfg, data)
    assert view.domains == PRETRAIN and list(cfg1.data.domains) == PRETRAIN and cfg1.stages is None
    union = view.tokens("code", "valid")
    assert isinstance(union, SFTExamples)
    assert all(view.tokens(d, "valid") is union for d in PRETRAIN)
    assert all(view.tokens(d, "train") is data.tokens(d, "train") for d in PRETRAIN)
    # Every task holds an equal share of the supervised tokens (a weight's unit), within one example's tokens:
    # each task's examples are repeated in order until its tokens reach the largest task's.
    totals = {d: int(data.tokens(d, "valid").supervised_counts(None).sum()) for d in SFT}
    goal = max(totals.values())
    per_example = union.supervised_counts(None)
    start = 0
    for d in SFT:
        ex = data.tokens(d, "valid")
        c = ex.supervised_counts(None)
        n = 0
        got = 0
        while got < goal:  # by hand: examples in order, cyclically, until the goal is reached
            got += int(c[n % ex.num_examples])
            a, b = ex.offsets[n % ex.num_examples], ex.offsets[n % ex.num_examples + 1]
            k = start + n
            np.testing.assert_array_equal(union.tokens[union.offsets[k]:union.offsets[k + 1]], ex.tokens[a:b])
            n += 1
        assert int(per_example[start:start + n].sum()) == got and goal <= got < goal + c.max()
        start += n
    assert start == union.num_examples
    assert len({totals[d] for d in SFT}) > 1  # the tasks differ, so the balancing is not vacuous
    # The reference's validation rows are SFT rows: prompts masked.
    s = MixtureSampler([union], cfg.train.seq_len, 0, ["sft"], split="valid")
    assert (s.sample([1.0], 8).y == -100).any(dim=1).all()


def test_balanced_union_of_one_part_is_that_part(prepared):
    _, _, data = prepared
    ex = data.tokens("upper", "valid")
    one = balanced_union([ex])
    np.testing.assert_array_equal(one.tokens, ex.tokens[: ex.offsets[-1]])
    np.testing.assert_array_equal(one.mask, ex.mask[: ex.offsets[-1]])
    assert len(one) == len(ex)


def test_two_stage_run_reports_post_fine_tuning_losses(prepared, cli):
    torch.set_num_threads(1)
    root, cfg, _ = prepared
    out = root / "run"
    rc, stdout, err = cli("run", root / "config.yaml", "--out", out, "-q", "--baseline", "uniform")
    assert rc == 0, err
    w = json.loads((out / "weights.json").read_text())["domain_weights"]
    assert list(w) == PRETRAIN and sum(w.values()) == pytest.approx(1.0)
    for ev_path, weights in ((out / "eval.json", w), (out / "baseline-uniform" / "eval.json", {d: 1 / 3 for d in PRETRAIN})):
        ev = json.loads(ev_path.read_text())
        assert ev["weights"] == pytest.approx(weights)
        assert set(ev["sft_test_loss"]["per_domain"]) == set(SFT)
        assert all(np.isfinite(v) for v in ev["sft_test_loss"]["per_domain"].values())
        assert set(ev["test_loss"]["per_domain"]) == set(PRETRAIN + SFT)
        assert all(ev["tokens_seen"][d] > 0 for d in PRETRAIN + SFT)
    assert "average (sft)" in stdout and "w:uniform" in stdout and "w:tandem" in stdout
    assert (out / "summary.md").is_file()
    # the report reads a two-stage eval.json: the tasks' losses beside the pretraining domains the weights mix
    rc, _, err = cli("report", out, "--out", root / "run.html")
    text = (root / "run.html").read_text()
    assert rc == 0 and all(f"<td>{d}</td>" in text for d in PRETRAIN + SFT), err
    # Fine-tuning is what lowers the tasks' loss: the same pretrained target before fine-tuning is worse on them.
    from safetensors.torch import load_model

    from tandem.evaluation.evaluate import domain_split_losses
    from tandem.models import build_model

    data = prepared[2]
    pre = build_model(cfg.model, data.vocab_size, cfg.train.seq_len, cfg.seed)
    load_model(pre, str(out / "baseline-uniform" / "pretrain" / "checkpoint" / "model.safetensors"))
    before, _ = domain_split_losses(pre, [data.tokens(d, "test") for d in SFT], cfg.train.seq_len, None, 16,
                                    torch.device("cpu"))
    after = json.loads((out / "baseline-uniform" / "eval.json").read_text())["sft_test_loss"]["per_domain"]
    assert np.mean([after[d] for d in SFT]) < np.mean(before) - 0.3, (after, before)


def test_stage_names_are_checked(tmp_path, cli):
    path = two_stage_config(tmp_path, sft=["funcname", "nosuch"])
    rc, _, err = cli("run", path, "--out", tmp_path / "o", "-q")
    assert rc == 2 and "stages.sft: unknown domain(s) ['nosuch']" in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="both stages.pretrain and stages.sft"):
        load_config(two_stage_config(tmp_path, sft=["code", "upper"]))



def test_stage_one_keeps_each_methods_defaults(prepared):
    """The stage-one config is the user's mixer, not a dict round trip in which every field looks set by hand: the
    method's published defaults still fill what the user left alone."""
    from tandem.mixing.methods import effective

    _, cfg, data = prepared
    cfg1, _ = stage_one(cfg, data)
    assert cfg1.mixer.model_fields_set == cfg.mixer.model_fields_set
    assert effective(cfg1.mixer).held_out_fraction == 0.0 and effective(cfg1.mixer).update == "standardized"
    doremi = cfg.model_copy(update={"mixer": cfg.mixer.model_copy(update={"method": "doremi"})})
    assert effective(stage_one(doremi, data)[0].mixer).smoothing == 1e-3


def test_compare_refuses_a_two_stage_config(prepared, tmp_path, cli):
    root, _, _ = prepared
    path = two_stage_config(tmp_path)
    rc, _, err = cli("compare", path, "--methods", "uniform,tandem", "--out", tmp_path / "cmp")
    assert rc == 2 and "stages" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cmp").exists()


def test_every_job_resolves_a_methods_settings_alike(prepared, tmp_path, cli):
    """optimize, run, two-stage run and compare all run DoReMi with its published defaults, then the config's
    `mixer`, then `methods.doremi` (tandem.mixing.methods.resolve_mixer): the settings each run records agree."""
    from tandem.pipeline.compare import method_config

    two = two_stage_config(tmp_path)
    raw = yaml.safe_load(two.read_text())
    raw["mixer"].update({"method": "doremi", "episodes": 2})
    raw["methods"] = {"doremi": {"smoothing": 0.02}}
    two.write_text(yaml.safe_dump(raw))
    single = {**raw, "stages": None}
    single["data"] = {**raw["data"], "domains": {d: raw["data"]["domains"][d] for d in PRETRAIN},
                      "cache_dir": ".cache1"}
    one = tmp_path / "one.yaml"
    one.write_text(yaml.safe_dump(single))
    recorded = {}
    for label, argv in {"optimize": ("optimize", one), "run": ("run", one, "--baseline", ""),
                        "two-stage": ("run", two, "--baseline", "")}.items():
        out = tmp_path / label
        rc, _, err = cli(*argv, "--out", out, "-q", "--set", "train.steps=2", "--set", "stages.sft_steps=1"
                         if label == "two-stage" else "eval.max_tokens=256")
        assert rc == 0, err
        recorded[label] = yaml.safe_load((out / "config.yaml").read_text())["mixer"]
    cfg = load_config(one)
    recorded["compare"] = method_config(cfg, "doremi", 0).mixer.model_dump(mode="json")
    for label, mixer in recorded.items():
        assert mixer["smoothing"] == 0.02, label  # methods.doremi
        assert mixer["sampling"] == "reweight", label  # a published default the config leaves alone
        assert (mixer["eta_alpha"], mixer["probe_steps"]) == (0.5, 2), label  # the config's own mixer wins
    # without methods.doremi the published smoothing applies on every path
    assert method_config(load_config(one, ["methods={}"]), "doremi", 0).mixer.smoothing == 1e-3
