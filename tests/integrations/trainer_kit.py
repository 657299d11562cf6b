"""What the Trainer tests share: a tiny GPT-2 and a callback that watches (and can kill) a Trainer run."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback


def tiny_gpt2(vocab_size: int, seq_len: int) -> GPT2LMHeadModel:
    """A one-layer GPT-2, seeded, for a tokenizer of `vocab_size` ids."""
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=seq_len, n_embd=32, n_layer=1, n_head=2,
                                      bos_token_id=0, eos_token_id=0))


class Watch(TrainerCallback):
    """Records the step the run started at (a resumed run starts at its checkpoint's) and raises KeyboardInterrupt
    after step `stop_at`: a run killed there."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at = stop_at
        self.first_step = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first_step is None:
            self.first_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_at is not None and state.global_step == self.stop_at:
            raise KeyboardInterrupt
