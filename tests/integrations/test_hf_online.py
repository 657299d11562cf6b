"""The online peers (ODM, ADO, Skill-It, Aioli) steering a real Hugging Face Trainer through OnlineCallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tandem.config import load_config
from tandem.data.cache import prepare_data

transformers = pytest.importorskip("transformers")

STEPS, BATCH = 20, 8
# Rounds of 1 step (ODM, ADO), 2 steps (Skill-It) and 2 sweeps of 3 probes of 1 step + 2 free steps (Aioli): the
# checkpoint at step 9 falls inside a Skill-It and an Aioli round.
SETTINGS = {
    "odm": ["mixer.warmup_steps=2"],
    "ado": ["mixer.warmup_steps=2", "mixer.ado.warmup_steps=3", "mixer.ado.fit_interval=2"],
    "skillit": ["mixer.warmup_steps=2", "mixer.free_steps=2", "mixer.skillit.graph_steps=2", "mixer.eval_sequences=2"],
    "aioli": ["mixer.warmup_steps=2", "mixer.probe_steps=1", "mixer.free_steps=2", "mixer.eval_sequences=2"],
}


def _config(shared_cfg, method):
    return load_config(shared_cfg, [f"mixer.method={method}"] + SETTINGS[method])


def _run(cfg, data, out, stop_at=None, resume=None, seen=None, accumulate=1):
    from transformers import Trainer, TrainingArguments

    from tandem.integrations.hf import MixtureDataset, OnlineCallback
    from trainer_kit import Watch, tiny_gpt2

    torch.set_num_threads(1)
    dataset = MixtureDataset(data, cfg.train.seq_len, seed=cfg.seed, draw_size=BATCH)
    callback = OnlineCallback(cfg, data, dataset, out_dir=out / "online")
    model = tiny_gpt2(data.vocab_size, cfg.train.seq_len)
    if seen is not None:
        def record(module, args, kwargs):
            if torch.is_grad_enabled():  # the Trainer's own training forward (the callback scores without grad)
                seen.append(kwargs["input_ids"].detach().clone())

        model.register_forward_pre_hook(record, with_kwargs=True)
    args = TrainingArguments(output_dir=str(out / "trainer"), max_steps=STEPS,
                             per_device_train_batch_size=BATCH // accumulate, gradient_accumulation_steps=accumulate,
                             learning_rate=3e-3, logging_steps=5, save_strategy="steps", save_steps=9,
                             report_to="none", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    watch = Watch(stop_at)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback, watch])
    trainer.train(resume_from_checkpoint=resume)
    trainer.first_step = watch.first_step
    return callback, trainer


@pytest.mark.parametrize("method", ["odm", "ado", "skillit", "aioli"])
def test_online_callback_steers_the_trainer_and_resumes_exactly(shared_cfg, tmp_path, method):
    """Each method's rounds run on the Trainer's steps and move the mixture the dataset draws by; killed after the
    checkpoint of step 9 (mid-round for Skill-It and Aioli) and resumed, the run repeats the uninterrupted one's
    rounds and ends with the same model."""
    cfg = _config(shared_cfg, method)
    data = prepare_data(cfg)
    full, trainer_full = _run(cfg, data, tmp_path / "full")
    assert trainer_full.state.global_step == STEPS
    from tandem.mixing import online

    rounds = (STEPS - 2) // online.round_steps(full.mc, len(data.domains))  # after the 2 warm-up steps
    assert rounds == {"odm": 18, "ado": 18, "skillit": 9, "aioli": 2}[method]
    assert len(full.history) == rounds
    assert full.ctx.steps == STEPS + (3 * 2 if method == "skillit" else 0)  # Skill-It's graph: 2 steps per skill
    moved = np.abs(np.stack([r.alpha for r in full.history]) - full.alpha0).max()
    assert moved > 1e-3, method
    w = json.loads((tmp_path / "full" / "online" / "weights.json").read_text())
    assert w["method"] == method and w["online"] and w["episodes"] == rounds
    assert w["domain_weights"] == pytest.approx(full.recommended)
    assert len((tmp_path / "full" / "online" / "metrics.jsonl").read_text().splitlines()) == rounds
    logged = [h for h in trainer_full.state.log_history if "loss" in h]
    assert logged and all(f"tandem/weight_{d}" in logged[-1] for d in data.domains)

    with pytest.raises(KeyboardInterrupt):
        _run(cfg, data, tmp_path / "cut", stop_at=11)
    ck = tmp_path / "cut" / "trainer" / "checkpoint-9"
    assert (ck / "tandem_online.json").is_file()
    resumed, trainer_resumed = _run(cfg, data, tmp_path / "cut", resume=str(ck))
    assert trainer_resumed.first_step == 9
    assert len(resumed.history) == rounds
    for a, b in zip(resumed.history, full.history):
        assert a.step == b.step
        np.testing.assert_allclose(a.alpha, b.alpha, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.delta, b.delta, rtol=0, atol=1e-12)
    for p, q in zip(trainer_resumed.model.parameters(), trainer_full.model.parameters()):
        assert torch.equal(p, q)
    assert len((tmp_path / "cut" / "online" / "metrics.jsonl").read_text().splitlines()) == rounds


@pytest.mark.parametrize("accumulate", [1, 2])
def test_odm_reads_the_training_losses_of_the_rows_each_step_trains_on(shared_cfg, tmp_path, monkeypatch, accumulate):
    """The rows OnlineCallback scores at a step's start are the very rows the Trainer's forward trains on in that
    step (its micro-batches, under gradient accumulation), and ODM reads their losses."""
    from tandem.integrations import hf

    cfg = _config(shared_cfg, "odm")
    data = prepare_data(cfg)
    scored, meters = [], []
    rows = hf.MixtureDataset.rows

    def record(self, start, stop):
        batch = rows(self, start, stop)
        scored.append(batch.x.clone())
        return batch

    monkeypatch.setattr(hf.MixtureDataset, "rows", record)
    from tandem.mixing import online

    original = online.ODM.after_step

    def spy(self, ctx, meter, alpha, t):
        meters.append(meter.losses())
        return original(self, ctx, meter, alpha, t)

    monkeypatch.setattr(online.ODM, "after_step", spy)
    seen: list = []
    callback, trainer = _run(cfg, data, tmp_path / "odm", seen=seen, accumulate=accumulate)
    trained = [torch.cat(seen[i:i + accumulate]) for i in range(0, len(seen), accumulate)]
    trained = trained[2:]  # the warm-up's two steps read no losses
    assert len(scored) == len(trained) == STEPS - 2
    for a, b in zip(scored, trained):
        assert torch.equal(a, b)
    assert all(np.isfinite(m).any() for m in meters)


def test_online_callback_refuses_what_it_cannot_run(shared_cfg, tmp_path):
    from tandem.errors import InputError
    from tandem.integrations.hf import MixtureDataset, OnlineCallback, TandemCallback

    cfg = _config(shared_cfg, "odm")
    data = prepare_data(cfg)
    dataset = MixtureDataset(data, cfg.train.seq_len)
    with pytest.raises(InputError, match="OnlineCallback runs the online methods .* 'tandem' runs in TandemCallback"):
        OnlineCallback(load_config(shared_cfg), data, dataset)
    with pytest.raises(InputError, match="'odm' adapts during training: steer the Trainer with .*OnlineCallback"):
        TandemCallback(cfg, data, dataset)
    with pytest.raises(InputError, match="sampling=reweight"):
        OnlineCallback(load_config(shared_cfg, ["mixer.method=aioli", "mixer.sampling=reweight"]), data, dataset)


def test_online_callback_refuses_a_target_only_domain(tmp_path):
    from test_hf import _own_datasets

    from tandem.errors import InputError
    from tandem.integrations.hf import MixtureDataset, OnlineCallback, token_data

    sets, tokenizer = _own_datasets(tmp_path)
    data = token_data(sets, tokenizer)
    assert not data.trainable.all()  # one of them has only a validation split
    with pytest.raises(InputError, match="has no train split .* steer with TandemCallback"):
        OnlineCallback({"mixer": {"method": "odm"}}, data, MixtureDataset(data, seq_len=32))
