"""TANDEM steering a real Hugging Face Trainer: the callback moves the weights, the dataset draws by them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tandem.config import load_config
from tandem.data.cache import prepare_data

transformers = pytest.importorskip("transformers")

K, E, EPISODES, STEPS, BATCH = 2, 2, 6, 24, 8


@pytest.fixture(scope="module")
def trained(shared_cfg, tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from tandem.integrations.hf import MixtureDataset, TandemCallback

    torch.set_num_threads(1)
    cfg = load_config(shared_cfg, [f"mixer.episodes={EPISODES}", f"mixer.probe_steps={K}", f"mixer.free_steps={E}",
                                   "mixer.update=eg", "mixer.eta_alpha=30", "mixer.eval_sequences=4"])
    data = prepare_data(cfg)
    out = tmp_path_factory.mktemp("hf")
    dataset = MixtureDataset(data, cfg.train.seq_len, seed=cfg.seed, draw_size=BATCH, record_draws=True)
    callback = TandemCallback(cfg, data, dataset, out_dir=out / "tandem")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=data.vocab_size, n_positions=cfg.train.seq_len, n_embd=32,
                                       n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0))
    args = TrainingArguments(output_dir=str(out / "trainer"), max_steps=STEPS, per_device_train_batch_size=BATCH,
                             learning_rate=3e-3, logging_strategy="no", save_strategy="no", report_to="none",
                             use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])
    trainer.train()
    return callback, dataset, trainer, out / "tandem"


def test_callback_changes_the_sampling_weights(trained):
    callback, dataset, trainer, _ = trained
    assert trainer.state.global_step == STEPS
    assert len(callback.state.history) == EPISODES
    # Episodes end after K probe steps, on the Trainer's clock: steps 2, 6, 10, ...
    assert [r.step for r in callback.state.history] == [K + i * (K + E) for i in range(EPISODES)]
    first = callback.state.history[0]
    assert first.distance > 0  # the twin moved away from the proxy during the probe
    uniform = np.full(3, 1 / 3)
    assert np.abs(callback.state.alpha - uniform).max() > 0.02
    np.testing.assert_allclose(list(dataset.weights.values()), callback.state.alpha, atol=1e-12)
    # The update is the optimize loop's: EG on Delta from the measured twin losses.
    from tandem.mixing.updates import twin_gap, update_mixture

    for prev, rec in zip([uniform] + [r.alpha for r in callback.state.history], callback.state.history):
        delta = twin_gap(rec.reference_losses, rec.proxy_losses, callback.spec.gamma)
        np.testing.assert_allclose(rec.delta, delta)
        np.testing.assert_allclose(rec.alpha, update_mixture(prev, delta, "eg", callback.spec.eta_alpha), atol=1e-12)


def test_draws_follow_the_current_weights(trained):
    callback, dataset, _, _ = trained
    draws = dataset.draws
    assert len(draws) >= STEPS
    for w, counts in draws:
        assert counts.sum() == BATCH
        assert np.all(np.abs(counts - BATCH * w) < 1 + 1e-9), (w, counts)  # each batch holds its shares exactly
    seen = [w for w, _ in draws]
    # Every mixture the callback set (but the last, set at the final step) was read by later draws.
    for rec in callback.state.history[:-1]:
        assert any(np.allclose(w, rec.alpha, atol=1e-12) for w in seen), rec.episode
    # Each mixture is read by every draw until the next update: K + E batches, less the one the loader prefetched.
    for rec in callback.state.history[:-1]:
        used = [c for w, c in draws if np.allclose(w, rec.alpha, atol=1e-12)]
        assert len(used) >= K + E - 1, (rec.episode, len(used))
        assert np.all(np.abs(sum(used) - len(used) * BATCH * rec.alpha) < len(used))


def test_outputs_match_tandem_optimize_and_export(trained, cli):
    callback, _, _, out = trained
    w = json.loads((out / "weights.json").read_text())
    assert w["domain_weights"] == pytest.approx(callback.recommended)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == EPISODES
    assert len((out / "trajectory.csv").read_text().splitlines()) == EPISODES + 1
    probs = callback.interleave_probabilities(["prose", "docs", "code"])
    per_doc = w["rows_per_document"]
    raw = [callback.recommended[d] / per_doc[d] for d in ["prose", "docs", "code"]]
    assert probs == pytest.approx([x / sum(raw) for x in raw])  # per document: weights over rows per document
    rc, text, _ = cli("export", out, "--format", "datasets", "--order", "prose,docs,code")
    assert rc == 0 and json.loads(text)["probabilities"] == pytest.approx(probs)


def _run(cfg, data, out, stop_at=None, resume=None):
    from transformers import Trainer, TrainingArguments

    from tandem.integrations.hf import MixtureDataset, TandemCallback
    from trainer_kit import Watch, tiny_gpt2

    dataset = MixtureDataset(data, cfg.train.seq_len, seed=cfg.seed, draw_size=BATCH)
    callback = TandemCallback(cfg, data, dataset, out_dir=out / "tandem")
    model = tiny_gpt2(data.vocab_size, cfg.train.seq_len)
    args = TrainingArguments(output_dir=str(out / "trainer"), max_steps=STEPS, per_device_train_batch_size=BATCH,
                             learning_rate=3e-3, logging_strategy="no", save_strategy="steps", save_steps=9,
                             report_to="none", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    stop = Watch(stop_at)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback, stop])
    trainer.train(resume_from_checkpoint=resume)
    trainer.first_step = stop.first_step
    return callback, trainer


def test_callback_resumes_from_a_trainer_checkpoint_exactly(shared_cfg, tmp_path):
    """Killed after the checkpoint of step 9 (mid-probe: the twin's state is saved too) and resumed from it, the
    Trainer run continues the same mixture trajectory and ends with the same model as the uninterrupted run."""
    torch.set_num_threads(1)
    cfg = load_config(shared_cfg, [f"mixer.episodes={EPISODES}", f"mixer.probe_steps={K}", f"mixer.free_steps={E}",
                                   "mixer.update=eg", "mixer.eta_alpha=30", "mixer.eval_sequences=4"])
    data = prepare_data(cfg)
    full, trainer_full = _run(cfg, data, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, data, tmp_path / "cut", stop_at=11)
    ck = tmp_path / "cut" / "trainer" / "checkpoint-9"
    assert (ck / "tandem_callback.json").is_file() and (ck / "tandem_reference.safetensors").is_file()
    resumed, trainer_resumed = _run(cfg, data, tmp_path / "cut", resume=str(ck))
    assert trainer_resumed.first_step == 9  # it did resume: training went on from the checkpoint's step
    assert len(resumed.state.history) == len(full.state.history) == EPISODES
    for a, b in zip(resumed.state.history, full.state.history):
        assert a.step == b.step
        np.testing.assert_allclose(a.alpha, b.alpha, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.delta, b.delta, rtol=0, atol=1e-12)
    for p, q in zip(trainer_resumed.model.parameters(), trainer_full.model.parameters()):
        assert torch.equal(p, q)
    assert len((tmp_path / "cut" / "tandem" / "metrics.jsonl").read_text().splitlines()) == EPISODES
    # a checkpoint without the callback's state is refused in one line, not silently restarted at uniform
    from tandem.errors import InputError

    (ck / "tandem_callback.json").unlink()
    with pytest.raises(InputError, match="no TandemCallback state"):
        _run(cfg, data, tmp_path / "cut", resume=str(ck))


def test_callback_runs_doge_and_refuses_methods_it_cannot_run(shared_cfg, tmp_path):
    from tandem.errors import InputError
    from tandem.integrations.hf import MixtureDataset, TandemCallback

    torch.set_num_threads(1)
    cfg = load_config(shared_cfg, ["mixer.method=doge", "mixer.episodes=4", "mixer.eval_sequences=4"])
    data = prepare_data(cfg)
    callback, trainer = _run(cfg, data, tmp_path / "doge")
    assert len(callback.state.history) == 4
    assert all(np.all(r.delta <= 0) for r in callback.state.history)  # DoGE's score is clipped at 0
    assert np.abs(callback.state.alpha - 1 / 3).max() > 1e-6
    dataset = MixtureDataset(data, cfg.train.seq_len)
    for method in ("odm", "grid"):
        with pytest.raises(InputError, match="loop methods"):
            TandemCallback(load_config(shared_cfg, [f"mixer.method={method}"]), data, dataset)
    # a Trainer's one run cannot start again from initialisation every episode
    with pytest.raises(InputError, match="mixer.restart"):
        TandemCallback(load_config(shared_cfg, ["mixer.method=tandem", "mixer.restart=true", "mixer.free_steps=0",
                                                "mixer.warmup_steps=0"]), data, dataset)


def _own_datasets(root):
    """Per-domain `datasets` objects and a transformers tokenizer, as a user has them: no tandem config, no files."""
    import datasets
    from transformers import PreTrainedTokenizerFast

    from conftest import _docstrings, make_domains
    from tandem.data.tokenizer import train_bpe

    docs = make_domains(root)
    ood = _docstrings(["functools", "inspect"], 40)
    tok = train_bpe([t for d in docs.values() for t in d], 400)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok.tok, eos_token="<|endoftext|>")
    ds = lambda texts: datasets.Dataset.from_dict({"text": texts})  # noqa: E731
    domains = {"code": ds(docs["code"]),  # a Dataset is the domain's train split
               "docs": datasets.DatasetDict({"train": ds(docs["docs"][10:]), "validation": ds(docs["docs"][:10])}),
               "prose": {"train": ds(docs["prose"][4:]), "validation": ds(docs["prose"][:4])},
               "ood": {"validation": ds(ood)}}  # target-only: no train split
    return domains, tokenizer


@pytest.mark.parametrize("method", ["tandem", "doremi"])
def test_callback_steers_your_own_datasets(tmp_path, method):
    """The user's own per-domain datasets, tokenized by their own tokenizer, steered by a loop method towards a
    target-only domain that is never drawn."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from tandem.integrations.hf import MixtureDataset, TandemCallback, token_data

    torch.set_num_threads(1)
    domains, tokenizer = _own_datasets(tmp_path)
    data = token_data(domains, tokenizer)
    assert data.domains == ["code", "docs", "prose", "ood"] and data.trainable.tolist() == [True, True, True, False]
    assert data.tokenizer.decode(list(data.tokens("ood", "valid")[:40])).startswith(domains["ood"]["validation"][0]["text"][:20])
    dataset = MixtureDataset(data, 32, seed=0, draw_size=BATCH, record_draws=True)
    settings = {"mixer": {"method": method, "episodes": 6, "eval_sequences": 4, "target": ["ood"], "reference_steps": 5,
                          **({"probe_steps": K, "free_steps": E, "update": "eg", "eta_alpha": 30}
                             if method == "tandem" else {})}}  # train.seq_len: the dataset's (32), not said twice
    callback = TandemCallback(settings, data, dataset, out_dir=tmp_path / "tandem")
    assert callback.cfg.train.seq_len == 32
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=1, n_head=2))
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=STEPS, per_device_train_batch_size=BATCH,
                             learning_rate=3e-3, logging_strategy="no", save_strategy="no", report_to="none",
                             use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback]).train()
    history = callback.state.history
    assert len(history) == 6
    assert all(r.alpha[3] == 0 and np.isnan(r.delta[3]) and np.all(np.isfinite(r.delta[:3])) for r in history)
    assert np.abs(callback.state.alpha[:3] - 1 / 3).max() > 1e-3  # the mixture moved
    assert all(counts[3] == 0 for _, counts in dataset.draws)  # the target-only domain is never drawn
    if method == "doremi":
        assert all(np.all(r.delta[:3] <= 0) for r in history)  # minus the clipped excess loss
        assert callback.reference.step_count == 5  # trained beforehand, frozen while the Trainer runs
    w = json.loads((tmp_path / "tandem" / "weights.json").read_text())
    assert w["domain_weights"]["ood"] == 0 and w["target"]["ood"] == 1


def test_callback_settings_and_datasets_errors_are_one_line(tmp_path):
    import datasets

    from tandem.errors import InputError
    from tandem.integrations.hf import MixtureDataset, TandemCallback, token_data

    domains, tokenizer = _own_datasets(tmp_path)
    data = token_data(domains, tokenizer)
    dataset = MixtureDataset(data, 32)
    bad = [({"mixer": {"method": "odm"}, "train": {"seq_len": 32}}, "steer the Trainer with tandem.integrations.hf.OnlineCallback"),
           ({"mixer": {"method": "fixed", "weights": {"code": 0.5, "ood": 0.5}}, "train": {"seq_len": 32}},
            "mixer.weights.ood"),
           ({"data": {}}, "leave out `data`")]
    for settings, needle in bad:
        with pytest.raises(InputError, match=needle.replace("(", r"\(")):
            TandemCallback(settings, data, dataset)
    with pytest.raises(InputError, match="no train split"):
        dataset.set_weights({"code": 0.5, "ood": 0.5})
    with pytest.raises(InputError, match=r"domain web.train: no column 'input_ids' or 'text'"):
        token_data({"web": datasets.Dataset.from_dict({"body": ["x"]})}, tokenizer)
    with pytest.raises(InputError, match="unknown split 'eval'"):
        token_data({"web": {"eval": datasets.Dataset.from_dict({"text": ["x"]})}}, tokenizer)
    with pytest.raises(InputError, match="no domain has a train split"):
        token_data({"web": {"validation": datasets.Dataset.from_dict({"text": ["x"]})}}, tokenizer)


def test_doremi_callback_resumes_from_a_trainer_checkpoint_exactly(shared_cfg, tmp_path):
    """DoReMi's frozen reference is saved with every checkpoint: a resumed run continues the same trajectory."""
    torch.set_num_threads(1)
    cfg = load_config(shared_cfg, ["mixer.method=doremi", "mixer.episodes=20", "mixer.reference_steps=4",
                                   "mixer.eval_sequences=4"])
    data = prepare_data(cfg)
    full, trainer_full = _run(cfg, data, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, data, tmp_path / "cut", stop_at=11)
    ck = tmp_path / "cut" / "trainer" / "checkpoint-9"
    assert (ck / "tandem_reference.safetensors").is_file()
    resumed, trainer_resumed = _run(cfg, data, tmp_path / "cut", resume=str(ck))
    assert trainer_resumed.first_step == 9 and len(resumed.state.history) == len(full.state.history) == 20
    for a, b in zip(resumed.state.history, full.state.history):
        np.testing.assert_allclose(a.alpha, b.alpha, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a.delta, b.delta, rtol=0, atol=1e-12)
    for p, q in zip(trainer_resumed.model.parameters(), trainer_full.model.parameters()):
        assert torch.equal(p, q)


def test_the_mixture_reaches_the_trainers_log_history(shared_cfg, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from tandem.integrations.hf import MixtureDataset, TandemCallback

    cfg = load_config(shared_cfg, ["mixer.episodes=2", "mixer.probe_steps=1", "mixer.free_steps=1",
                                   "mixer.eval_sequences=2"])
    data = prepare_data(cfg)
    dataset = MixtureDataset(data, cfg.train.seq_len, seed=cfg.seed, draw_size=4)
    callback = TandemCallback(cfg, data, dataset, out_dir=tmp_path / "tandem")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=data.vocab_size, n_positions=cfg.train.seq_len, n_embd=32,
                                       n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0))
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=6, per_device_train_batch_size=4,
                             learning_rate=3e-3, logging_steps=2, save_strategy="no", report_to="none", use_cpu=True,
                             dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and all(abs(sum(v for k, v in h.items() if k.startswith("tandem/weight_")) - 1) < 1e-9
                          for h in logged)
    assert set(k for k in logged[-1] if k.startswith("tandem/")) == {f"tandem/weight_{d}" for d in data.domains}
