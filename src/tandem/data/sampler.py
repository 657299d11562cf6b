"""Mixture sampling with token semantics: a domain's weight is its share of training tokens.

Every training sequence has the same length, so drawing each sequence's domain in
proportion to the weights gives each domain that share of tokens. Domains are
allocated per batch by systematic sampling (each domain gets floor or ceil of
B * w_i sequences, exactly B * w_i in expectation): far less variance than
independent draws when batches are small. Within a domain, sequences are
non-overlapping windows visited in a fresh seeded permutation each epoch, so the
sampler knows how many epochs of every domain it has consumed.

An SFT domain (tandem.data.sft.SFTExamples) is drawn by example instead: each row is one
example (truncated to seq_len + 1 tokens, right-padded, targets IGNORE_INDEX outside the
response), visited in a fresh seeded permutation each epoch. Its weight is therefore its
share of rows (examples), and its tokens seen are the supervised targets drawn. When every
row of a batch has padding at its end, the columns no row supervises are dropped.

Order of domains: nothing depends on where a domain is written in the config. Window orders
are keyed by the domain's name, not its position, and each batch allocates and stacks its
rows in the order of the names, so permuting the domains permutes the domain ids of the same
rows and nothing else.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from tandem.data.sft import SFTExamples, trim_padding
from tandem.errors import InputError


@dataclass
class Batch:
    """Inputs and next-token targets [B, T] and the domain id of each row [B]."""

    x: torch.Tensor
    y: torch.Tensor
    domain: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def split(self, micro: int) -> list["Batch"]:
        return [Batch(self.x[i : i + micro], self.y[i : i + micro], self.domain[i : i + micro]) for i in range(0, len(self), micro)]

    def to(self, device) -> "Batch":
        return Batch(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True), self.domain.to(device, non_blocking=True))


def row_shares(weights: np.ndarray, tokens_per_row: np.ndarray) -> np.ndarray:
    """Rows to draw of each domain for a mixture of supervised tokens: weight / (mean supervised tokens of one of its
    rows), normalised. A weight is a share of the loss-bearing tokens the optimizer steps on, for text and SFT
    domains alike; a text row holds seq_len of them, an SFT row only its response. Where every row holds the same
    number (text only), rows are drawn by weight exactly."""
    w = np.asarray(weights, dtype=np.float64)
    t = np.asarray(tokens_per_row, dtype=np.float64)
    if np.all(t == t[0]):
        return w / w.sum()
    r = w / t
    return r / r.sum()


def token_shares(rows: np.ndarray, tokens_per_row: np.ndarray) -> np.ndarray:
    """The inverse of row_shares: the supervised-token mixture that draws rows in these shares."""
    w = np.asarray(rows, dtype=np.float64) * np.asarray(tokens_per_row, dtype=np.float64)
    return w / w.sum()


def systematic_counts(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Integer counts summing to n with E[count_i] = n * w_i and |count_i - n w_i| < 1."""
    cum = np.cumsum(weights) * n
    cum[-1] = n  # guard against round-off leaving the last domain short
    points = rng.random() + np.arange(n)
    return np.bincount(np.searchsorted(cum, points, side="right"), minlength=len(weights))[: len(weights)]


# Up to this many windows a domain's epoch order is an explicit permutation (8 bytes a window); above it, a keyed
# Feistel permutation computed index by index, so memory does not grow with the corpus (a 64 GiB domain would
# otherwise need a multi-GB order array).
PERMUTATION_MAX_WINDOWS = 1 << 20

_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """A 64-bit integer hash (splitmix64's finaliser): the Feistel round function."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _M64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _M64
    return x ^ (x >> 31)


class FeistelPermutation:
    """A seeded pseudo-random permutation of range(n) in O(1) memory: four Feistel rounds on a power-of-four
    domain just above n, with cycle walking back into range (fewer than four walks expected)."""

    def __init__(self, n: int, keys: list[int]):
        self.n = n
        self.half = max(1, ((max(n - 1, 1)).bit_length() + 1) // 2)
        self.mask = (1 << self.half) - 1
        self.keys = [int(k) for k in keys]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> int:
        x = int(k)
        while True:
            left, right = x >> self.half, x & self.mask
            for key in self.keys:
                left, right = right, left ^ (_mix64((right + key) & _M64) & self.mask)
            x = (left << self.half) | right
            if x < self.n:
                return x


class MixtureSampler:
    """Draws batches of (seq_len + 1)-token windows from several domains by weights.

    State (for resume) is the RNG state and per-domain (epoch, position); window
    orders are derived from (seed, domain, epoch) so they need not be stored.
    """

    def __init__(self, arrays: list[np.ndarray | SFTExamples], seq_len: int, seed: int, names: list[str] | None = None,
                 split: str = "train"):
        self.arrays = arrays
        self.seq_len = seq_len
        self.seed = seed
        self.names = names or [str(i) for i in range(len(arrays))]
        # SFT domains: the examples with at least one supervised target after truncation, and those targets' counts.
        self._examples: dict[int, np.ndarray] = {}
        self._supervised: dict[int, np.ndarray] = {}
        for i, a in enumerate(arrays):
            if isinstance(a, SFTExamples):
                counts = a.supervised_counts(seq_len)
                self._examples[i] = np.nonzero(counts > 0)[0]
                self._supervised[i] = counts[self._examples[i]]
                if len(self._examples[i]) == 0 and a.num_examples > 0:
                    raise InputError(
                        f"domain {self.names[i]}: none of its {a.num_examples} {split} example(s) has a response token "
                        f"within train.seq_len + 1 = {seq_len + 1} tokens; raise train.seq_len or shorten the prompts"
                    )
        # (an empty split holds no window: 0, not (0 - 1) // seq_len = -1, which would make its epoch cap negative)
        self.n_windows = np.array([len(self._examples[i]) if i in self._examples else max((len(a) - 1) // seq_len, 0)
                                   for i, a in enumerate(arrays)], dtype=np.int64)
        # A domain with no text at all in this split (a target-only domain's train split) is never drawn: its weight
        # must be 0. One with some text, but less than a sequence, is an input error.
        self.empty = np.array([(a.num_examples if isinstance(a, SFTExamples) else len(a)) == 0 for a in arrays])
        for name, n, a, empty in zip(self.names, self.n_windows, arrays, self.empty):
            if n < 1 and not empty:
                raise InputError(
                    f"domain {name}: its {split} split has {len(a)} tokens, fewer than one sequence of "
                    f"train.seq_len + 1 = {seq_len + 1}; lower train.seq_len or add text"
                )
        # Mean supervised tokens of one row: seq_len for text, the mean (truncated) response for an SFT domain.
        self.tokens_per_row = np.array([float(self._supervised[i].mean()) if len(self._supervised.get(i, ())) else
                                        float(seq_len) for i in range(len(arrays))])
        # Name keys and the canonical (by name) order of domains: see "Order of domains" above.
        self._keys = [zlib.crc32(n.encode("utf-8")) for n in self.names]
        self._canon = np.array(sorted(range(len(arrays)), key=lambda i: (self.names[i], i)), dtype=np.int64)
        self.rng = np.random.default_rng([seed, 0x5A3])
        self.epoch = np.zeros(len(arrays), dtype=np.int64)
        self.pos = np.zeros(len(arrays), dtype=np.int64)
        self._orders: dict[int, tuple[int, np.ndarray, int]] = {}

    @property
    def num_domains(self) -> int:
        return len(self.arrays)

    def _order(self, i: int) -> tuple[np.ndarray | FeistelPermutation, int]:
        cached = self._orders.get(i)
        if cached is None or cached[0] != self.epoch[i]:
            r = np.random.default_rng([self.seed, self._keys[i], int(self.epoch[i])])
            slack = 0 if i in self._examples else (len(self.arrays[i]) - 1) - int(self.n_windows[i]) * self.seq_len
            # A fresh offset each epoch so repeated epochs do not cut documents at the same places.
            offset = int(r.integers(0, slack + 1))
            n = int(self.n_windows[i])
            order = r.permutation(n) if n <= PERMUTATION_MAX_WINDOWS else FeistelPermutation(n, r.integers(0, 2**62, size=4))
            cached = (int(self.epoch[i]), order, offset)
            self._orders[i] = cached
        return cached[1], cached[2]

    def _take(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        order, offset = self._order(i)
        k = int(order[self.pos[i]])
        self.pos[i] += 1
        if self.pos[i] == self.n_windows[i]:
            self.pos[i] = 0
            self.epoch[i] += 1
        if i in self._examples:
            return self.arrays[i].row(int(self._examples[i][k]), self.seq_len)
        start = offset + k * self.seq_len
        w = np.asarray(self.arrays[i][start : start + self.seq_len + 1], dtype=np.int64)
        return w[:-1], w[1:]

    def sample(self, weights, batch_size: int, rows: bool = False) -> Batch:
        """A batch for a mixture of supervised tokens (`weights`), or, with rows=True, for shares of rows (evaluation
        sets that want the same number of rows of every domain; ODM's single-domain groups)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.num_domains,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"sampler weights must be {self.num_domains} finite non-negative numbers, got {w}")
        if np.any(w[self.empty] > 0):
            raise ValueError(f"sampler weights {w} draw from domain(s) with no text in this split: "
                             f"{[n for n, e in zip(self.names, self.empty) if e]}")
        w = w / w.sum() if rows else row_shares(w, self.tokens_per_row)
        counts = systematic_counts(w[self._canon], batch_size, self.rng)
        domains = np.repeat(self._canon, counts)
        rows = [self._take(int(i)) for i in domains]
        x, y = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
        if self._examples:
            x, y = trim_padding(x, y)
        return Batch(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)),
                     torch.from_numpy(domains))

    def epochs(self) -> np.ndarray:
        """Epochs consumed of each domain (fractional)."""
        return self.epoch + self.pos / np.maximum(self.n_windows, 1)

    def tokens_seen(self) -> np.ndarray:
        """Training tokens (targets) drawn from each domain; for SFT domains only the supervised ones."""
        seen = (self.epoch * self.n_windows + self.pos) * self.seq_len
        for i, sup in self._supervised.items():
            order, _ = self._order(i)
            seen[i] = int(self.epoch[i]) * int(sup.sum()) + int(sup[order[: self.pos[i]]].sum())
        return seen

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "epoch": self.epoch.tolist(), "pos": self.pos.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.epoch = np.array(state["epoch"], dtype=np.int64)
        self.pos = np.array(state["pos"], dtype=np.int64)
        self._orders.clear()


def eval_windows(tokens: np.ndarray, seq_len: int, max_tokens: int | None = None):
    """Consecutive non-overlapping windows covering the split (the last may be shorter): (x, y) int64 arrays.

    Every target token of the (capped) split is scored exactly once.
    """
    n = len(tokens) if max_tokens is None else min(len(tokens), max_tokens + 1)
    for start in range(0, n - 1, seq_len):
        end = min(start + seq_len + 1, n)
        if end - start < 2:
            break
        w = np.asarray(tokens[start:end], dtype=np.int64)
        yield w[:-1], w[1:]
