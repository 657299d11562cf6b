"""A follow-up experiment: TANDEM with Delta measured on train windows the proxy never trains on.

`tandem.mixing.lm.LMProblem` draws the held sequences for Delta from the same train split the twins train
on, so for a small, repeated domain they are memorised windows. Inside `patched()`, each domain's train
split is cut in two for stage one: the last `eval_sequences * seq_len + 1` tokens form the held part
that Delta is measured on, and the twins train on the rest. Stage two (the target) still trains on the
whole split. This only tests the hypothesis in BENCHMARKS.md; the library is unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def patched() -> Iterator[None]:
    from tandem.data.sampler import MixtureSampler
    from tandem.mixing import lm

    original = lm.LMProblem.__init__

    def init(self, cfg, data, batch_size, horizon_rows=None):
        original(self, cfg, data, batch_size, horizon_rows)
        seq_len = cfg.train.seq_len
        held = cfg.mixer.eval_sequences * seq_len + 1
        arrays = data.split_arrays("train")
        self.train = MixtureSampler([a[:-held] for a in arrays], seq_len, cfg.seed, self.names)
        self.held = MixtureSampler([a[-held:] for a in arrays], seq_len, cfg.seed + 7919, self.names)

    lm.LMProblem.__init__ = init
    try:
        yield
    finally:
        lm.LMProblem.__init__ = original
