"""Progress as a terminal wants it and as a log file wants it.

On a terminal: a tqdm bar. When stderr is redirected (a log file, a batch job), a bar's carriage-return updates
would fill the file with hundreds of redrawn lines; there it prints at most ten plain lines per bar (every tenth of
the way, and the end), each with the count, the rate and the time left, and the last postfix set."""

from __future__ import annotations

import sys
import time


class _Lines:
    """tqdm's interface (update, set_postfix, close, iteration), as a few plain lines on stderr."""

    def __init__(self, iterable=None, total=None, initial=0, desc="", unit="it", **_):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = self.start = initial
        self.desc, self.unit = desc, unit
        self.t0 = time.perf_counter()
        self.postfix = ""
        self.next_mark = self._mark(1)
        self.closed = False

    def _mark(self, k: int) -> int:
        return self.start + max(1, -(-((self.total or 0) - self.start) * k // 10)) if self.total else 1 << 62

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)
        self.close()

    def set_postfix(self, **kw):
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def update(self, n: int = 1):
        self.n += n
        if self.total and self.n >= self.next_mark and self.n < self.total:
            self._line()
            k = 1 + (10 * (self.n - self.start)) // max(self.total - self.start, 1)
            self.next_mark = self._mark(k)

    def _line(self):
        dt = time.perf_counter() - self.t0
        done = self.n - self.start
        rate = done / dt if dt > 0 else 0.0
        left = f", {((self.total - self.n) / rate):.0f} s left" if rate > 0 and self.total and self.n < self.total else ""
        of = f"/{self.total}" if self.total else ""
        extra = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit} in {dt:.0f} s{left}{extra}", file=sys.stderr, flush=True)

    def close(self):
        if not self.closed:
            self.closed = True
            if self.n > self.start:
                self._line()


def bar(iterable=None, *, total=None, initial=0, desc="", unit="it", progress=True, **kw):
    """A progress bar over `iterable` (or updated by hand up to `total`): tqdm on a terminal, a few plain lines in a
    log, nothing when progress is off (--quiet)."""
    from tqdm import tqdm

    if not progress:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    if not sys.stderr.isatty():
        return _Lines(iterable, total=total, initial=initial, desc=desc, unit=unit)
    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, **kw)
