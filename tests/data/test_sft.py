"""SFT data: documented rendering, response-only loss, supervised token accounting, sampling and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from sft_tasks import sft_config, sft_rows
from tandem.config import load_config
from tandem.data.cache import natural_weights, prepare_data
from tandem.data.sampler import MixtureSampler
from tandem.data.sft import DEFAULT_CHAT_TEMPLATE, ChatRenderer, row_messages
from tandem.errors import InputError
from tandem.training.loss import IGNORE_INDEX, domain_token_counts, token_losses

SEQ = 96


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    cfg = load_config(sft_config(root))
    return cfg, prepare_data(cfg)


def _documented(messages, eos, generation=False):
    """The default template exactly as documented, written out by hand."""
    out = ""
    for m in messages:
        if m["role"] == "assistant":
            out += f"<|assistant|>\n{m['content']}{eos}"
        else:
            out += f"<|{m['role']}|>\n{m['content']}\n"
    return out + ("<|assistant|>\n" if generation else "")


def test_default_template_renders_as_documented(sft_data):
    _, data = sft_data
    chat = data.chat
    assert chat.template == DEFAULT_CHAT_TEMPLATE
    pr = row_messages({"prompt": "What colour?", "response": "Red"}, "x")
    text, spans = chat.render(pr)
    assert text == "<|user|>\nWhat colour?\n<|assistant|>\nRed<|endoftext|>"
    assert [text[a:b] for a, b in spans] == ["Red<|endoftext|>"]
    assert chat.prompt(pr[:1]) == "<|user|>\nWhat colour?\n<|assistant|>\n"
    chat_rows = sft_rows()["module"][:5]
    for row in chat_rows:
        msgs = row_messages(row, "x")
        text, spans = chat.render(msgs)
        assert text == _documented(msgs, "<|endoftext|>")
        assert [text[a:b] for a, b in spans] == [m["content"] + "<|endoftext|>" for m in msgs if m["role"] == "assistant"]


def test_only_response_tokens_carry_loss(sft_data):
    cfg, data = sft_data
    tok = data.tokenizer
    sampler = MixtureSampler(data.split_arrays("train"), SEQ, 0, data.domains)
    batch = sampler.sample(np.full(3, 1 / 3), 24)
    # Brute force: every row's supervised targets are exactly its assistant turns' tokens, each followed by EOS.
    rows = {d: [json.loads(line) for line in (cfg.resolve(cfg.data.domains[d].train)).read_text().splitlines()]
            for d in data.domains}
    answers = {d: {tuple(tok.encode(m["content"])) for r in rows[d] for m in row_messages(r, "x") if m["role"] == "assistant"}
               for d in data.domains}
    for x, y, dom in zip(batch.x, batch.y, batch.domain):
        sup = y[y != IGNORE_INDEX].tolist()
        assert sup, "every sampled example has response tokens"
        pieces, cur = [], []
        for t in sup:
            if t == tok.eos_id:
                pieces.append(tuple(cur))
                cur = []
            else:
                cur.append(t)
        if cur:  # only a last turn cut off at seq_len + 1 tokens may lack its EOS
            assert len(y) == SEQ and y[-1] != IGNORE_INDEX
        for p in pieces:
            assert p in answers[data.domains[int(dom)]]
        # Inputs are the targets shifted by one wherever a target exists.
        idx = torch.nonzero(y != IGNORE_INDEX).flatten()
        idx = idx[idx + 1 < len(x)]
        assert torch.equal(x[idx + 1], y[idx])
    # The gradient of the loss reaches the logits only at response positions.
    logits = torch.randn(*batch.x.shape, data.vocab_size, requires_grad=True)
    loss, mask = token_losses(logits, batch.y)
    (loss * mask).sum().backward()
    touched = logits.grad.abs().sum(-1) > 0
    assert torch.equal(touched, batch.y != IGNORE_INDEX)
    assert (batch.y == IGNORE_INDEX).any(dim=1).all()  # prompts are masked in every row


def _brute_force_supervised(cfg, data, domain, split, seq_len=None):
    """Render by the documented format, tokenize, and count response targets (never an example's first token)."""
    tok = data.tokenizer
    path = cfg.resolve(getattr(cfg.data.domains[domain], split))
    total = 0
    for line in path.read_text().splitlines():
        msgs = row_messages(json.loads(line), "x")
        text, spans, pos = "", [], 0
        for m in msgs:
            if m["role"] == "assistant":
                text += "<|assistant|>\n"
                spans.append((len(text), len(text) + len(m["content"]) + len("<|endoftext|>")))
                text += m["content"] + "<|endoftext|>"
            else:
                text += f"<|{m['role']}|>\n{m['content']}\n"
        enc = tok.tok.encode(text, add_special_tokens=False)
        flag = [any(a <= off[0] < b for a, b in spans) for off in enc.offsets]
        lo, hi = 0, len(flag)
        if seq_len is not None and len(flag) > seq_len + 1:
            # the documented window: end at the last response token with the prompt's end before it, or start
            # one token before the first response token when the responses alone do not fit
            resp = [j for j, f in enumerate(flag) if f]
            r0, r1 = resp[0], resp[-1] + 1
            lo = max(0, r1 - (seq_len + 1)) if r1 - r0 <= seq_len else max(0, r0 - 1)
            hi = lo + seq_len + 1
        total += sum(flag[j] for j in range(lo + 1, hi))
    return total


def test_sft_token_counts_match_brute_force(sft_data):
    cfg, data = sft_data
    for split in ("train", "valid", "test"):
        counts = {d: len(data.tokens(d, split)) for d in data.domains}
        assert counts == {d: _brute_force_supervised(cfg, data, d, split) for d in data.domains}, split
    nat = natural_weights(data)
    train = data.token_counts("train")
    assert nat == pytest.approx({d: train[d] / sum(train.values()) for d in data.domains})
    # One epoch of every domain through the sampler: the batches' supervised tokens equal the brute-force
    # count of the truncated examples, and so does the sampler's own account.
    sampler = MixtureSampler(data.split_arrays("train"), SEQ, 3, data.domains)
    seen = torch.zeros(3, dtype=torch.float64)
    for i, d in enumerate(data.domains):
        w = np.eye(3)[i]
        n = int(sampler.n_windows[i])
        for k in range(0, n, 16):
            b = sampler.sample(w, min(16, n - k))
            seen += domain_token_counts(b.y, b.domain, 3)
        assert sampler.epochs()[i] == 1.0
    want = [_brute_force_supervised(cfg, data, d, "train", SEQ) for d in data.domains]
    assert seen.tolist() == want
    assert sampler.tokens_seen().tolist() == want


def test_sft_sampler_resume_and_determinism(sft_data):
    _, data = sft_data
    w = np.array([0.5, 0.3, 0.2])
    a = MixtureSampler(data.split_arrays("train"), SEQ, 5, data.domains)
    for _ in range(7):
        a.sample(w, 8)
    state = json.loads(json.dumps(a.state_dict()))
    b = MixtureSampler(data.split_arrays("train"), SEQ, 5, data.domains)
    b.load_state_dict(state)
    for _ in range(30):  # past an epoch boundary of the small domain
        x, y = a.sample(w, 8), b.sample(w, 8)
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y) and torch.equal(x.domain, y.domain)
    assert a.tokens_seen().tolist() == b.tokens_seen().tolist()
    c = MixtureSampler(data.split_arrays("train"), SEQ, 5, data.domains)
    d = MixtureSampler(data.split_arrays("train"), SEQ, 5, data.domains)
    for _ in range(5):
        assert torch.equal(c.sample(w, 8).y, d.sample(w, 8).y)


def test_sft_and_text_domains_mix(tmp_path):
    """A text domain keeps full windows; an SFT domain beside it gets masked rows of the same width."""
    from conftest import tiny_config

    from sft_tasks import write_sft_tasks

    path = tiny_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["data"]["domains"] = {"code": raw["data"]["domains"]["code"], "upper": write_sft_tasks(tmp_path)["upper"]}
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    data = prepare_data(cfg)
    assert not data.is_sft("code") and data.is_sft("upper")
    s = MixtureSampler(data.split_arrays("train"), 64, 0, data.domains)
    b = s.sample([0.5, 0.5], 8)
    assert b.x.shape == (8, 64)
    text_rows, sft_rows_ = b.domain == 0, b.domain == 1
    assert (b.y[text_rows] != IGNORE_INDEX).all()
    assert (b.y[sft_rows_] == IGNORE_INDEX).any(dim=1).all()
    # a weight is a share of supervised tokens: an SFT row holds only its response, so it gets more rows
    from tandem.data.sampler import row_shares

    r = row_shares(np.array([0.5, 0.5]), s.tokens_per_row)
    n_text = int(text_rows.sum())
    assert r[0] < 0.5 and abs(n_text - 8 * r[0]) < 1
    assert s.tokens_seen()[0] == n_text * 64


def test_eval_scores_only_response_tokens(sft_data):
    from tandem.evaluation.evaluate import evaluate
    from tandem.models import build_model

    cfg, data = sft_data
    model = build_model(cfg.model, data.vocab_size, SEQ, 0)
    res = evaluate(model, data, SEQ, None, 16, torch.device("cpu"))
    for split in ("valid", "test"):
        assert res[f"{split}_tokens"] == {d: _brute_force_supervised(cfg, data, d, split, SEQ) for d in data.domains}
        assert all(np.isfinite(v) for v in res[f"{split}_loss"]["per_domain"].values())
    capped = evaluate(model, data, SEQ, 50, 16, torch.device("cpu"), splits=("valid",))
    assert all(50 <= c < 50 + SEQ for c in capped["valid_tokens"].values())


def test_cache_reuse_and_template_change(sft_data, tmp_path):
    cfg, data = sft_data
    logs = []
    again = prepare_data(cfg, log=logs.append)
    assert not [m for m in logs if m.startswith("tokenizing")]
    for d in data.domains:
        np.testing.assert_array_equal(again.tokens(d, "train").tokens, data.tokens(d, "train").tokens)
        np.testing.assert_array_equal(again.tokens(d, "train").mask, data.tokens(d, "train").mask)
    tpl = tmp_path / "plain.jinja"
    tpl.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                   "{% if add_generation_prompt %}assistant: {% endif %}")
    cfg2 = load_config(cfg.resolve("config.yaml"), [f"data.chat_template={tpl}", f"data.cache_dir={tmp_path / 'c'}"])
    other = prepare_data(cfg2)
    text, spans = other.chat.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    assert text == "user: hi\nassistant: yo\n" and [text[a:b] for a, b in spans] == ["yo\n"]


def test_bad_sft_rows_name_file_and_line(tmp_path):
    cfg = load_config(sft_config(tmp_path))
    bad = cfg.resolve("sft/upper/valid.jsonl")
    lines = bad.read_text().splitlines()
    lines[2] = json.dumps({"prompt": "only a prompt"})
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"upper/valid\.jsonl:3: expected fields 'prompt' and 'response'"):
        prepare_data(cfg)
    lines[2] = json.dumps({"messages": [{"role": "user", "content": "no answer"}]})
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"valid\.jsonl:3: 'messages' has no assistant message"):
        prepare_data(cfg)


def test_no_example_is_dropped_for_its_length(sft_data):
    """However short the sequence, every example keeps at least one supervised target: its window holds its
    response (training and evaluation see every example, not a biased subset)."""
    _, data = sft_data
    for seq in (4, 8, SEQ):
        for d in data.domains:
            for split in ("train", "valid", "test"):
                ex = data.tokens(d, split)
                assert (ex.supervised_counts(seq) > 0).all(), (seq, d, split)
        sampler = MixtureSampler(data.split_arrays("train"), seq, 0, data.domains)
        assert sampler.n_windows.tolist() == [data.tokens(d, "train").num_examples for d in data.domains]


def test_hf_tokenizer_chat_template_is_used(tmp_path):
    """A Hugging Face tokenizer folder with its own chat template: `auto` renders with it, the mask follows it."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n:?.,'_-"))
    vocab = {c: i for i, c in enumerate(["<|im_start|>", "<|im_end|>", "<unk>", *chars])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    chatml = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", unk_token="<unk>",
                                                additional_special_tokens=["<|im_start|>"])
    fast.chat_template = chatml
    fast.save_pretrained(tmp_path / "tok")
    from tandem.data.tokenizer import load_hf_tokenizer

    tok = load_hf_tokenizer(tmp_path / "tok")
    assert tok.chat_template == chatml
    chat = ChatRenderer(tok, tok.chat_template)
    msgs = [{"role": "user", "content": "Brand of: Acme drill?"}, {"role": "assistant", "content": "Acme"}]
    text, spans = chat.render(msgs)
    assert text == "<|im_start|>user\nBrand of: Acme drill?<|im_end|>\n<|im_start|>assistant\nAcme<|im_end|>\n"
    assert [text[a:b] for a, b in spans] == ["Acme<|im_end|>\n"]
    (ids, mask), = chat.encode([msgs])
    sup = [tok.tok.id_to_token(i) for i, m in zip(ids, mask) if m]
    assert sup == ["A", "c", "m", "e", "<|im_end|>", "\n"]


def test_windows_of_a_slice_of_examples_keep_every_response():
    from tandem.data.sft import SFTExamples

    """The train part that hold_out makes is a view over the first examples of a longer token array: the last
    example's response must still be found (and an empty example between others changes nothing)."""
    toks = np.arange(30)
    mask = np.zeros(30, np.uint8)
    for e in range(3):
        mask[e * 10 + 6: e * 10 + 10] = 1
    view = SFTExamples(toks, mask, np.array([0, 10, 20]), 0)
    starts, ends = view.windows(5)
    assert starts.tolist() == [4, 14] and ends.tolist() == [10, 20]
    assert view.supervised_counts(5).tolist() == [4, 4]
    gap = SFTExamples(toks, mask, np.array([10, 20, 20, 30]), 0)
    assert gap.supervised_counts(5).tolist() == [4, 0, 4]


def test_responses_that_do_not_fit_are_counted(sft_data):
    """A response longer than the window is counted (by hand: its supervised targets in the window are fewer than
    in the whole example), and the count is what prepare prints and eval.json holds."""
    from tandem.data.sft import fit_report, format_fit

    _, data = sft_data
    ex = data.tokens("funcname", "train")
    whole = ex.supervised_counts(None)
    for seq in (4, SEQ, 10_000):
        by_hand = sum(int(ex.supervised_counts(seq)[k] < whole[k]) for k in range(ex.num_examples))
        assert ex.responses_cut(seq) == by_hand
    assert ex.responses_cut(4) > 0 and ex.responses_cut(10_000) == 0
    report = fit_report(data.arrays, 4)
    assert set(report) == set(data.domains) and report["funcname"]["train"]["responses_cut"] == ex.responses_cut(4)
    assert "funcname/train" in format_fit(report, 4)
    assert format_fit(fit_report(data.arrays, 10_000), 10_000) is None
