"""Task metrics on generated answers: accuracy (classification), exact match and token-level F1 (extraction).

Answers are compared after `normalize_answer`: Unicode NFKC, lower case, punctuation replaced by
spaces (except a `.` or `,` between digits, so `1.5 L` and `10,000 mAh` keep their numbers), and
whitespace collapsed. Token F1 is the harmonic mean of precision and recall over the multiset of
normalised whitespace tokens (SQuAD's definition, without its article removal: `The North Face`
is a brand name). Averages are unweighted means over tasks, like the per-domain loss average.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Mapping, Sequence

METRICS = ("accuracy", "exact_match_f1")
_PUNCT = re.compile(r"(?<![0-9])[^\w\s]|[^\w\s](?![0-9])")


def normalize_answer(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCT.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Multiset token overlap F1; two empty answers agree (1.0), one empty answer scores 0."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def score_task(metric: str, predictions: Sequence[str], golds: Sequence[str]) -> dict:
    """{accuracy} or {exact_match, f1}, means over examples, plus `score` (the task's headline number:
    accuracy or exact match) and `examples`."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold answers")
    n = len(golds)
    em = sum(exact_match(p, g) for p, g in zip(predictions, golds)) / n if n else float("nan")
    if metric == "accuracy":
        return {"accuracy": em, "score": em, "examples": n}
    f1 = sum(token_f1(p, g) for p, g in zip(predictions, golds)) / n if n else float("nan")
    return {"exact_match": em, "f1": f1, "score": em, "examples": n}


def average_tasks(per_task: Mapping[str, dict]) -> dict:
    """Unweighted means over tasks of `score`, and of each metric over the tasks that report it."""
    out = {}
    for key in ("score", "accuracy", "exact_match", "f1"):
        vals = [r[key] for r in per_task.values() if key in r]
        if vals:
            out[key] = sum(vals) / len(vals)
    return out
