"""Metric math on hand-made answers: normalisation, exact match, token F1 (duplicates), averages."""

from __future__ import annotations

import math

import pytest

from tandem.evaluation.metrics import average_tasks, exact_match, normalize_answer, score_task, token_f1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("  The North Face ", "the north face"),
        ("colour: Black; size: M", "colour black size m"),
        ("1.5 L", "1.5 l"),
        ("10,000 mAh.", "10,000 mah"),
        ("Levi's", "levi s"),
        ("H&M", "h m"),
        ("ＵＳ　９", "us 9"),  # full-width letters and space (NFKC)
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_ignores_case_punctuation_and_spacing_only():
    assert exact_match("colour:black;size:M", "colour: black; size: m") == 1.0
    assert exact_match("Sony.", "sony") == 1.0
    assert exact_match("1.5 L", "15 L") == 0.0  # the decimal point is part of the number
    assert exact_match("colour: black", "colour: black; size: M") == 0.0


def test_token_f1_hand_computed():
    # pred tokens: colour black size l (4); gold: colour black size m (4); overlap 3 -> P = R = 3/4.
    assert token_f1("colour: black; size: L", "colour: black; size: M") == pytest.approx(0.75)
    # pred 2 tokens both in gold of 4: P = 1, R = 1/2, F1 = 2/3.
    assert token_f1("colour: black", "colour: black; size: M") == pytest.approx(2 / 3)
    assert token_f1("nike", "adidas") == 0.0
    assert token_f1("Black", "black") == 1.0


def test_token_f1_counts_duplicates_once_per_occurrence():
    # pred "black black black" vs gold "black": overlap min(3, 1) = 1, P = 1/3, R = 1, F1 = 0.5.
    assert token_f1("black black black", "black") == pytest.approx(0.5)
    # pred "black" vs gold "black black": P = 1, R = 1/2.
    assert token_f1("black", "black black") == pytest.approx(2 / 3)


def test_token_f1_empty_answers():
    assert token_f1("", "") == 1.0
    assert token_f1("", "sony") == 0.0
    assert token_f1("...", "sony") == 0.0  # punctuation only normalises to empty


def test_score_task_and_average():
    cls = score_task("accuracy", ["yes", "No", "yes", "maybe"], ["yes", "no", "no", "yes"])
    assert cls == {"accuracy": 0.5, "score": 0.5, "examples": 4}
    ext = score_task("exact_match_f1", ["Sony", "colour: red"], ["sony", "colour: red; size: S"])
    assert ext["exact_match"] == 0.5 and ext["score"] == 0.5
    assert ext["f1"] == pytest.approx((1.0 + 2 * 1.0 * 0.5 / 1.5) / 2)
    avg = average_tasks({"a": cls, "b": ext})
    assert avg["score"] == pytest.approx(0.5)
    assert avg["accuracy"] == 0.5 and avg["exact_match"] == 0.5 and avg["f1"] == ext["f1"]
    assert math.isnan(score_task("accuracy", [], [])["accuracy"])
    with pytest.raises(ValueError):
        score_task("bleu", ["a"], ["a"])
    with pytest.raises(ValueError):
        score_task("accuracy", ["a"], ["a", "b"])
