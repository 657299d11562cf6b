"""Supervised fine-tuning data: rows -> chat messages -> rendered text -> tokens with a response mask.

A row is `{"prompt": str, "response": str}` (one user turn and one assistant turn) or
`{"messages": [{"role": str, "content": str}, ...]}` with at least one `assistant` message.
Conversations are rendered by a Jinja chat template: the tokenizer's own where it has one
(`data.chat_template: auto`), otherwise `DEFAULT_CHAT_TEMPLATE`, which renders

    <|user|>\\n{prompt}\\n<|assistant|>\\n{response}<EOS>

(every non-assistant message as `<|{role}|>\\n{content}\\n`, every assistant message as
`<|assistant|>\\n{content}<EOS>`, where <EOS> is the tokenizer's end-of-text token, and the
generation prompt is `<|assistant|>\\n`). The supervised part of an assistant turn is
everything the template adds for it after the generation prompt: its content and the
end-of-turn marker (so the model learns to stop). Only those tokens carry loss.

Each example is one training row: truncated to seq_len + 1 tokens and padded on the
right (pad targets are IGNORE_INDEX). Right padding under causal attention means no real
token ever attends to padding, and one example per row means no attention crosses examples.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np

from tandem.errors import InputError

# The target of a token that carries no loss (a prompt, padding): PyTorch's cross-entropy default, so that
# tandem.training.loss and any Hugging Face model read these batches alike.
IGNORE_INDEX = -100

DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<|assistant|>\n{{ m['content'] }}{{ eos_token }}"
    "{% else %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def row_messages(row: dict, where: str) -> list[dict[str, str]]:
    """The conversation of one SFT row; InputError naming the file and line when the row is malformed."""
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, (list, tuple)) or not msgs:
            raise InputError(f"{where}: field 'messages' must be a non-empty list of {{role, content}} objects")
        out = []
        for k, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise InputError(f"{where}: messages[{k}] must be an object with string fields 'role' and 'content'")
            out.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "assistant" for m in out):
            raise InputError(f"{where}: 'messages' has no assistant message, so nothing would be supervised")
        return out
    if "prompt" in row and "response" in row:
        p, r = row["prompt"], row["response"]
        if not isinstance(p, str) or not isinstance(r, str):
            raise InputError(f"{where}: fields 'prompt' and 'response' must be strings")
        return [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
    raise InputError(f"{where}: expected fields 'prompt' and 'response', or 'messages' (a list of {{role, content}})")


def message_text(messages: list[dict[str, str]]) -> str:
    """Plain text of a conversation (for training a BPE tokenizer before any template applies)."""
    return "\n".join(m["content"] for m in messages)


class ChatRenderer:
    """Renders conversations with one Jinja chat template and finds the supervised character spans."""

    def __init__(self, tokenizer, template: str | None = None):
        self.tokenizer = tokenizer
        self.template = DEFAULT_CHAT_TEMPLATE if template is None else template
        self.is_default = template is None or template == DEFAULT_CHAT_TEMPLATE
        import jinja2

        try:  # a broken template is the user's input: say so before anything is rendered
            jinja2.Environment().parse(self.template)
        except jinja2.TemplateSyntaxError as err:
            raise InputError(f"data.chat_template: the chat template does not parse (line {err.lineno}: "
                             f"{err.message})") from None

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()[:32]

    def _render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        kw = {"eos_token": self.tokenizer.eos_token}
        if getattr(self.tokenizer, "bos_token", None):
            kw["bos_token"] = self.tokenizer.bos_token
        import jinja2

        try:
            rendered, _ = render_jinja_template([messages], chat_template=self.template,
                                                add_generation_prompt=add_generation_prompt, **kw)
        except jinja2.TemplateError as err:
            raise InputError(f"data.chat_template: the chat template fails on a conversation ({err})") from None
        return rendered[0]

    def prompt(self, messages: list[dict[str, str]]) -> str:
        """The text a model continues to answer: the conversation so far plus the generation prompt."""
        return self._render(messages, add_generation_prompt=True)

    def render(self, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
        """Full text and the [start, end) character spans of every assistant turn's supervised part."""
        full = self._render(messages, add_generation_prompt=False)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            upto = self._render(messages[: i + 1], add_generation_prompt=False)
            # Templates differ in whether the generation prompt is part of the rendered turn; try both.
            start = None
            for gen in (True, False):
                try:
                    pre = self._render(messages[:i], add_generation_prompt=gen) if i else (self.prompt([]) if gen else "")
                except Exception:  # a template may refuse an empty or user-less conversation
                    continue
                if upto.startswith(pre):
                    start = len(pre)
                    break
            if start is None or not full.startswith(upto):
                raise InputError(
                    "data.chat_template: the chat template does not render a conversation as a prefix of the next "
                    "turn, so the response tokens cannot be located; use data.chat_template: default"
                )
            if len(upto) == start and str(m.get("content") or "").strip():
                raise InputError("data.chat_template: the chat template renders nothing for an assistant turn, so "
                                 "there is no response to train on; it must render each assistant message's content")
            spans.append((start, len(upto)))
        return full, spans

    def encode(self, conversations: list[list[dict[str, str]]]) -> list[tuple[list[int], np.ndarray]]:
        """Token ids and a 0/1 response mask per conversation (1 = an assistant token, which carries loss)."""
        rendered = [self.render(c) for c in conversations]
        out = []
        for (text, spans), (ids, offsets) in zip(rendered, self.tokenizer.encode_batch_offsets([t for t, _ in rendered])):
            starts = np.array([o[0] for o in offsets], dtype=np.int64)
            mask = np.zeros(len(ids), dtype=np.uint8)
            for a, b in spans:
                mask[(starts >= a) & (starts < b)] = 1
            out.append((list(ids), mask))
        return out


def resolve_template(setting: str, tokenizer, base_dir: Path | str) -> str:
    """The Jinja template for data.chat_template: `auto`, `default` or a template file."""
    if setting == "auto":
        return tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE
    if setting == "default":
        return DEFAULT_CHAT_TEMPLATE
    path = Path(setting).expanduser()
    path = path if path.is_absolute() else Path(base_dir) / path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"data.chat_template: cannot read the template file {path} ({err})") from None
    if not text.strip():  # an empty file is a mistake, not a request for the default template
        raise InputError(f"data.chat_template: {path}: empty template file; expected a Jinja chat template (or "
                         f"data.chat_template: default)")
    import jinja2

    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as err:
        raise InputError(f"data.chat_template: {path}:{err.lineno}: not a valid Jinja template ({err.message})") from None
    return text


class SFTExamples:
    """Tokenized SFT examples of one domain and split: flat tokens, a response mask per token, example offsets.

    `len()` is the number of supervised target tokens (a response token that has a token before it),
    so every consumer that counts a split's tokens (natural weights, tables) counts only supervised ones.
    """

    def __init__(self, tokens: np.ndarray, mask: np.ndarray, offsets: np.ndarray, pad_id: int):
        self.tokens = tokens
        self.mask = mask
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.pad_id = int(pad_id)
        self._window_cache = None
        self._supervised = int(self.supervised_counts(None).sum())

    @property
    def num_examples(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return self._supervised

    def windows(self, seq_len: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (token offsets) of each example's window of at most seq_len + 1 tokens.

        An example that fits is taken whole. A longer one keeps its responses: the window ends at the last
        response token, with as much of the prompt's end before it as fits (generation keeps the end of a long
        prompt too); if the responses alone are longer, the window starts one token before the first response
        token and the responses' end is cut. So no example with a response is dropped for its length.
        """
        start, end = self.offsets[:-1], self.offsets[1:]
        if seq_len is None or self.num_examples == 0:
            return start, end
        size = seq_len + 1
        n = self.num_examples
        lo, hi = int(start[0]), int(end[-1])  # the examples' tokens: one contiguous range (offsets are cumulative)
        m = np.asarray(self.mask[lo:hi], dtype=bool)
        pos = np.arange(lo, hi, dtype=np.int64)[m]
        seg = np.repeat(np.arange(n, dtype=np.int64), end - start)[m]  # the example each response token is in
        big = np.int64(hi + 1)
        first = np.full(n, big, dtype=np.int64)
        last = np.full(n, -1, dtype=np.int64)
        np.minimum.at(first, seg, pos)
        np.maximum.at(last, seg, pos)
        has = first < big
        fits = (last + 1) - first <= seq_len
        s = np.where(fits, np.maximum(start, last + 1 - size), np.maximum(start, first - 1))
        s = np.where((end - start > size) & has, s, start)
        return s, np.minimum(end, s + size)

    def responses_cut(self, seq_len: int) -> int:
        """Examples whose response tokens do not all fit in a window of seq_len + 1 tokens (their end is cut).

        The rest of such an example is still trained and scored; this count says how much a longer seq_len would
        add, so that a test loss is never silently computed on a different text than the data hold."""
        return int((self.supervised_counts(seq_len) < self.supervised_counts(None)).sum())

    def supervised_counts(self, seq_len: int | None) -> np.ndarray:
        """Supervised targets per example in its window of seq_len + 1 tokens (None: the whole example)."""
        cum = np.concatenate([[0], np.cumsum(np.asarray(self.mask, dtype=np.int64))])
        start, end = self.windows(seq_len)
        # The first token of a window is never a target: nothing precedes it.
        return cum[end] - cum[np.minimum(start + 1, end)]

    def row(self, k: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets [seq_len] of example k's window: right-padded, non-response targets IGNORE_INDEX."""
        starts, ends = self.windows(seq_len) if self._window_cache is None or self._window_cache[0] != seq_len \
            else self._window_cache[1]
        self._window_cache = (seq_len, (starts, ends))
        a, b = int(starts[k]), int(ends[k])
        ids = np.asarray(self.tokens[a:b], dtype=np.int64)
        m = np.asarray(self.mask[a:b], dtype=bool)
        x = np.full(seq_len, self.pad_id, dtype=np.int64)
        y = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
        n = len(ids) - 1
        x[:n] = ids[:-1]
        y[:n] = np.where(m[1:], ids[1:], IGNORE_INDEX)
        return x, y


def fit_report(arrays: dict, seq_len: int) -> dict[str, dict[str, dict[str, int]]]:
    """{domain: {split: {examples, responses_cut}}} for the SFT domains of {domain: {split: examples}}."""
    return {d: {s: {"examples": ex.num_examples, "responses_cut": ex.responses_cut(seq_len)}
                for s, ex in splits.items() if isinstance(ex, SFTExamples)}
            for d, splits in arrays.items() if any(isinstance(ex, SFTExamples) for ex in splits.values())}


def format_fit(report: dict, seq_len: int) -> str | None:
    """One line per split whose responses do not all fit, or None when every response fits."""
    cut = [f"{d}/{s} {r['responses_cut']:,} of {r['examples']:,}" for d, splits in report.items()
           for s, r in splits.items() if r["responses_cut"]]
    if not cut:
        return None
    return (f"SFT examples whose response is longer than train.seq_len={seq_len} (its end is cut; the rest is "
            f"trained and scored): " + ", ".join(cut))


def trim_padding(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop trailing columns in which no row has a target: under causal attention they change no loss."""
    live = np.nonzero((y != IGNORE_INDEX).any(axis=0))[0]
    end = int(live[-1]) + 1 if len(live) else 1
    return x[:, :end], y[:, :end]


def eval_rows(examples: SFTExamples, seq_len: int, max_tokens: int | None = None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Every example once, in order, until max_tokens supervised targets are scored (the last example is whole)."""
    counts = examples.supervised_counts(seq_len)
    seen = 0
    for k in range(examples.num_examples):
        if max_tokens is not None and seen >= max_tokens:
            break
        if counts[k] == 0:
            continue
        seen += int(counts[k])
        yield examples.row(k, seq_len)
