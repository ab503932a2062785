"""Soft-label arithmetic, order mapping, undecided handling and label metrics, on literal numbers."""

from __future__ import annotations

import math

import pytest

from rlaif.labelers.annotate import alignment, label_metrics, soft_label
from rlaif.labelers.base import JudgeResult, decide, read_choices_with


def result(p_first: float | None) -> JudgeResult:
    if p_first is None:
        return JudgeResult("r", None, 0.01, "undecided: ...")
    return JudgeResult("r", (p_first, 1 - p_first), 0.9)


def test_soft_label_averages_both_orders_mapped_back_to_a():
    # order ab: P(a) = p_first = 0.8; order ba: a is second, P(a) = p_second = 1 - 0.3 = 0.7
    assert soft_label(result(0.8), result(0.3), "drop") == (pytest.approx(0.75), False)
    # a labeler that always says "first" with 0.9 has no preference left after averaging
    assert soft_label(result(0.9), result(0.9), "drop") == (pytest.approx(0.5), False)


@pytest.mark.parametrize("ab,ba", [(None, 0.3), (0.8, None), (None, None)])
def test_undecided_is_dropped_or_kept_at_half_never_a_coin_flip(ab, ba):
    assert soft_label(result(ab), result(ba), "drop") == (None, True)
    assert soft_label(result(ab), result(ba), "half") == (0.5, True)


def test_decide_renormalises_and_keeps_the_raw_mass():
    r = decide((0.3, 0.1), True, 20, "because")
    assert (r.p_first, r.p_second, r.raw_mass, r.error) == (
        pytest.approx(0.75),
        pytest.approx(0.25),
        pytest.approx(0.4),
        None,
    )
    r = decide((0.0001, 0.0), False, 20, "because", ["The", " A"])
    assert (
        r.p_first is None
        and r.raw_mass == pytest.approx(0.0001)
        and r.error.startswith("undecided:")
        and "'The'" in r.error
    )


def test_choice_mass_sums_spellings_of_a_choice():
    top = {"1": math.log(0.5), " 1": math.log(0.1), " 2": math.log(0.2), "12": math.log(0.1), "The": math.log(0.05)}
    assert read_choices_with(("1", "2"), lambda more: top).masses == (pytest.approx(0.6), pytest.approx(0.2))
    two_ones = [("1", math.log(0.3)), ("1", math.log(0.1))]
    assert read_choices_with(("1", "2"), lambda more: two_ones).masses == (pytest.approx(0.4), 0.0)


def record(p_ab_first, p_ba_first, human=None, undecided="drop"):
    ab, ba = result(p_ab_first), result(p_ba_first)
    p_a, is_undecided = soft_label(ab, ba, undecided)
    r = {"p_a": p_a, "undecided": is_undecided, "orders": [ab.to_json("ab"), ba.to_json("ba")]}
    if human:
        r["human_choice"] = human
    return r


def test_position_bias_and_confidence():
    records = [
        record(0.9, 0.8),  # first wins in both orders -> same position, first
        record(0.7, 0.6),  # same position, first
        record(0.2, 0.1),  # second wins in both orders -> same position, second
        record(0.9, 0.2),  # a wins in both orders: consistent, no position bias
        record(None, 0.5),  # undecided
    ]
    m = label_metrics(records)
    assert m["pairs"] == 5 and m["undecided"] == 1 and m["undecided_rate"] == pytest.approx(0.2)
    assert m["position_bias"] == {
        "same_position_wins_rate": pytest.approx(0.75),
        "first_position_share": pytest.approx(2 / 3),
        "pairs": 4,
    }
    # p_a: 0.55, 0.55, 0.55, 0.85 -> confidence max(p, 1-p)
    assert m["mean_confidence"] == pytest.approx((0.55 * 3 + 0.85) / 4)
    assert "alignment_with_humans" not in m


def test_alignment_is_the_accuracy_of_the_binarised_soft_label():
    records = [
        record(0.9, 0.2, human="a"),  # p_a 0.85 -> a: agree
        record(0.9, 0.2, human="b"),  # disagree
        record(0.2, 0.9, human="b"),  # p_a 0.15 -> b: agree
        record(0.6, 0.6, human="a"),  # p_a 0.5 exactly: half credit
        record(None, 0.9, human="a"),  # undecided, dropped: left out
    ]
    assert alignment(records) == {"accuracy": pytest.approx(2.5 / 4), "pairs": 4, "dropped_undecided": 1}
    kept = [record(None, 0.9, human="a", undecided="half")]
    assert alignment(kept) == {"accuracy": 0.5, "pairs": 1, "dropped_undecided": 0}
    assert label_metrics(records)["alignment_with_humans"]["accuracy"] == pytest.approx(0.625)
