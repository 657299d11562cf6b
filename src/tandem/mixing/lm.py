"""The language-model side of the mixture loop: where the twins' batches come from.

Batches are drawn once and shared: in every probe step the reference steps on exactly the
proxy's train batch (common random numbers, so Delta measures the validation data's effect
and not sampling noise) plus a validation batch, and both twins are scored on the same held
batches, drawn as two independent halves so that each episode measures Delta's noise too.
"""

from __future__ import annotations

import numpy as np
import torch

from tandem.config import Config
from tandem.data.cache import PreparedData
from tandem.data.sampler import Batch, MixtureSampler
from tandem.data.sft import SFTExamples
from tandem.errors import InputError
from tandem.training.loss import domain_token_counts, objective_coefficients


def target_weights(target, names: list[str]) -> np.ndarray:
    """The validation objective's weights over domains (mixer.target: uniform, a {domain: weight} map, or named
    domains). Not a training mixture: it covers every domain, target-only ones included, and a list names the
    domains to weight equally, so it is resolved here rather than by tandem.mixing.weights.resolve_weights."""
    if target == "uniform":
        return np.full(len(names), 1.0 / len(names))
    if isinstance(target, list):
        w = np.array([1.0 if d in target else 0.0 for d in names])
        return w / w.sum()
    w = np.array([float(target.get(d, 0.0)) for d in names])
    return w / w.sum()


def hold_out(a, fraction: float, seq_len: int, name: str):
    """Split one domain's train split into (kept for training, held out for Delta): the last `fraction` of its
    tokens, or of its examples for an SFT domain, so the two never share a window."""
    if (a.num_examples if isinstance(a, SFTExamples) else len(a)) == 0:
        return a, a  # no train split (a target-only domain): nothing to train on or to hold out
    if isinstance(a, SFTExamples):
        n = a.num_examples
        k = n - max(1, int(round(fraction * n)))
        if k < 1:
            raise InputError(f"data.domains.{name}.train: {n} example(s) are too few to hold out "
                             f"mixer.held_out_fraction={fraction} of them and train on the rest")
        return SFTExamples(a.tokens, a.mask, a.offsets[: k + 1], a.pad_id), SFTExamples(a.tokens, a.mask, a.offsets[k:], a.pad_id)
    if len(a) < seq_len + 1:
        return a, a  # shorter than one sequence: the sampler reports it in its own words
    cut = len(a) - max(seq_len + 1, int(round(fraction * len(a))))
    if cut < seq_len + 1:
        raise InputError(f"data.domains.{name}.train: {len(a)} tokens are too few to hold out "
                         f"mixer.held_out_fraction={fraction} of them and train on the rest "
                         f"(each part needs train.seq_len + 1 = {seq_len + 1}); add text or set "
                         f"mixer.held_out_fraction=0")
    return a[:cut], a[cut:]


def match_horizon(a, fraction: float, seq_len: int):
    """The first `fraction` of one domain's training part (tokens, or examples of an SFT domain), at least one window
    or example: what the proxy trains on so that, at the same mixture, it repeats each domain as many epochs as the
    target will over its longer run."""
    if fraction >= 1.0:
        return a
    if isinstance(a, SFTExamples):
        k = max(1, int(round(fraction * a.num_examples)))
        return SFTExamples(a.tokens, a.mask, a.offsets[: k + 1], a.pad_id)
    return a[: max(seq_len + 1, int(round(fraction * len(a))))]


class LMProblem:
    """Implements tandem.mixing.loop.Problem over prepared token data.

    horizon_rows: the rows the proxy will train on in all; with mixer.horizon=target each domain's training part is
    cut to horizon_rows / (the target's rows), so stage one sees each domain for the target's number of epochs."""

    def __init__(self, cfg: Config, data: PreparedData, batch_size: int, horizon_rows: int | None = None):
        from tandem.mixing.methods import effective

        mc = effective(cfg.mixer)
        names = data.domains
        self.names = names
        self.num_domains = len(names)
        self.batch_size = batch_size
        self.sampling = mc.sampling
        seq_len = cfg.train.seq_len
        # Separate streams (different seeds) so held and validation draws never shift the training stream.
        train_arrays, held_arrays = data.split_arrays("train"), data.split_arrays("train")
        if mc.held_out_fraction > 0:
            # Delta on windows the twins never train on (an option): the derivative of a problem with unlimited
            # fresh text per domain, which credits a scarce domain for text more weight cannot supply (ALGORITHM.md).
            pairs = [hold_out(a, mc.held_out_fraction, seq_len, name) for a, name in zip(train_arrays, names)]
            train_arrays, held_arrays = [p[0] for p in pairs], [p[1] for p in pairs]
        self.horizon_fraction = 1.0
        if mc.horizon == "target" and horizon_rows:
            self.horizon_fraction = min(1.0, horizon_rows / float(cfg.train.steps * cfg.train.batch_size))
            # relative to the whole split, which is what stage two repeats (the held-out part is not trained on)
            whole = data.split_arrays("train")
            size = lambda a: a.num_examples if isinstance(a, SFTExamples) else len(a)  # noqa: E731
            train_arrays = [match_horizon(a, self.horizon_fraction * size(w) / max(size(a), 1), seq_len)
                            for a, w in zip(train_arrays, whole)]
            if mc.held_out_fraction == 0:  # Delta on the windows the proxy trains on, as without horizon matching
                held_arrays = train_arrays
        # Domains without a train split (target-only) are never drawn for training or for Delta; their valid split
        # can still be (part of) the target.
        self.trainable = data.trainable
        self.uniform = self.trainable / self.trainable.sum()
        self.train = MixtureSampler(train_arrays, seq_len, cfg.seed, names)
        self.held = MixtureSampler(held_arrays, seq_len, cfg.seed + 7919, names)
        self.target = target_weights(mc.target, names)
        self.valid_ids = np.nonzero(self.target > 0)[0]
        for i in self.valid_ids:
            if len(data.tokens(names[i], "valid")) == 0:
                raise InputError(f"data.domains.{names[i]}.valid: the validation target needs this domain's valid split")
        self.valid = MixtureSampler(
            [data.tokens(names[i], "valid") for i in self.valid_ids], seq_len, cfg.seed + 104729,
            [names[i] for i in self.valid_ids], split="valid",
        )
        self.valid_rows = max(1, int(round(mc.valid_fraction * batch_size)))
        self.eval_sequences = mc.eval_sequences
        self._alpha = self.uniform

    def _coef(self, batch: Batch, alpha: np.ndarray | None) -> torch.Tensor:
        counts = domain_token_counts(batch.y, batch.domain, self.num_domains)
        return objective_coefficients(counts, None if alpha is None else torch.from_numpy(alpha))

    def train_part(self, alpha: np.ndarray, rows: bool = False):
        """A training batch for mixture alpha (rows=True: alpha is a share of rows, see MixtureSampler.sample)."""
        self._alpha = np.asarray(alpha, dtype=np.float64)
        if self.sampling == "resample" or rows:
            batch = self.train.sample(self._alpha, self.batch_size, rows=rows)
            return batch, self._coef(batch, None)
        # reweight: a fixed uniform draw, the mixture enters only through the loss weights
        batch = self.train.sample(self.uniform, self.batch_size)
        return batch, self._coef(batch, self._alpha)

    def valid_part(self):
        b = self.valid.sample(self.target[self.valid_ids], self.valid_rows)
        batch = Batch(b.x, b.y, torch.from_numpy(self.valid_ids)[b.domain])
        return batch, self._coef(batch, None)

    def held_batches(self) -> list[list[Batch]]:
        """Two independent halves of eval_sequences windows per domain (at least one each): their Delta's
        difference is the episode's standard error."""
        per_half = max(1, -(-self.eval_sequences // 2))
        # More windows than the largest domain holds would only score the same text again (and can take hours):
        # the data caps it.
        per_half = min(per_half, max(1, int(self.held.n_windows[self.trainable].max(initial=1))))
        rows = per_half * int(self.trainable.sum())
        return [self.held.sample(self.uniform, rows, rows=True).split(self.batch_size) for _ in range(2)]

    def state_dict(self) -> dict:
        return {"train": self.train.state_dict(), "held": self.held.state_dict(), "valid": self.valid.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.train.load_state_dict(state["train"])
        self.held.load_state_dict(state["held"])
        self.valid.load_state_dict(state["valid"])
