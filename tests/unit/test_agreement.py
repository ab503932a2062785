"""rlaif.evaluation.agreement and the paired / clustered intervals of rlaif.evaluation.stats, against
values worked out by hand."""

import math

import numpy as np
import pytest

from rlaif.evaluation.agreement import (
    agreement,
    agreement_on_comparisons,
    calibration,
    correct_scores,
    length_balanced,
    longer_wins,
    reward_model_extras,
    rows_id,
)
from rlaif.evaluation.stats import bootstrap_ci, cluster_bootstrap_ci, paired_bootstrap_ci, pearson


def test_correct_scores_and_longer_wins():
    np.testing.assert_array_equal(correct_scores([0.9, 0.5, 0.2, np.nan])[:3], [1.0, 0.5, 0.0])
    assert np.isnan(correct_scores([np.nan])[0])
    np.testing.assert_array_equal(longer_wins([10, 5, 7], [8, 9, 7]), [1.0, 0.0, 0.5])


def test_agreement_hand_computed():
    # Six comparisons of four posts. The judge: right on rows 0, 1, 3, wrong on 2, undecided on 4,
    # a tie (0.5) on 5. Lengths (chosen, rejected): the chosen one is longer on rows 0, 2, 4, shorter on 1,
    # equal on 3, shorter on 5.
    p = [0.9, 0.7, 0.2, 0.6, np.nan, 0.5]
    len_c = [30, 10, 40, 20, 50, 12]
    len_r = [10, 12, 20, 20, 10, 30]
    posts = ["a", "a", "b", "c", "c", "d"]
    high = [True, False, True, True, False, False]
    m = agreement(p, len_c, len_r, posts, {"high": high}, length_match=2, n_boot=200)
    assert (m["rows"], m["posts"], m["answered"]) == (6, 4, 5)
    # answered rows 0, 1, 2, 3, 5: correct 1, 1, 0, 1, 0.5 -> 3.5 / 5
    assert m["accuracy"]["value"] == pytest.approx(0.7) and m["accuracy"]["n"] == 5
    # longer wins on those rows: 1, 0, 1, 0.5 (equal), 0 -> 2.5 / 5
    assert m["length_baseline"]["value"] == pytest.approx(0.5)
    assert m["minus_length_baseline"]["value"] == pytest.approx(0.2)
    # length-matched (|delta| <= 2): rows 1 (delta -2) and 3 (delta 0): correct 1, 1; baseline 0, 0.5
    assert m["length_matched"]["accuracy"]["value"] == 1.0 and m["length_matched"]["accuracy"]["n"] == 2
    assert m["length_matched"]["length_baseline"]["value"] == pytest.approx(0.25)
    # prefers the longer one, over answered rows of unequal length (0, 1, 2, 5):
    # row 0 right & chosen longer -> 1; row 1 right & chosen shorter -> 0; row 2 wrong & chosen longer -> 0;
    # row 5 tie -> 1/2. Mean 1.5 / 4.
    assert m["prefers_longer"]["value"] == pytest.approx(0.375) and m["prefers_longer"]["n"] == 4
    # all rows, the undecided one as 1/2: (3.5 + 0.5) / 6; baseline over all six: (2.5 + 1) / 6
    assert m["all_rows"]["accuracy"]["value"] == pytest.approx(4 / 6)
    assert m["all_rows"]["length_baseline"]["value"] == pytest.approx(3.5 / 6)
    # the subset among answered rows: 0, 2, 3 -> correct 1, 0, 1; baseline 1, 1, 0.5
    assert m["subsets"]["high"]["accuracy"]["value"] == pytest.approx(2 / 3)
    assert m["subsets"]["high"]["length_baseline"]["value"] == pytest.approx(2.5 / 3)
    # length-balanced: answered rows with chosen longer (0, 2): correct 1, 0; chosen shorter (1, 5): 1, 0.5
    assert m["length_balanced"]["value"] == pytest.approx((0.5 + 0.75) / 2)
    for key in ("accuracy", "length_baseline", "length_balanced"):
        assert m[key]["ci_low"] <= m[key]["value"] <= m[key]["ci_high"], key


def test_length_balanced_accuracy_is_one_half_for_a_judge_that_only_follows_length():
    delta = np.array([5.0, 12.0, -3.0, -8.0, 20.0, -15.0, 7.0, 0.0])
    follows_length = np.where(delta > 0, 1.0, np.where(delta < 0, 0.0, 0.5))
    assert length_balanced(follows_length, delta) == 0.5
    # Right on 5 of 6 rows where the chosen one is longer and 1 of 2 where it is shorter:
    # raw accuracy 6/8, balanced (5/6 + 1/2) / 2 = 2/3.
    correct = np.array([1, 1, 1, 1, 1, 0, 1, 0], dtype=float)
    d = np.array([10.0] * 6 + [-10.0] * 2)
    assert length_balanced(correct, d) == pytest.approx(2 / 3)
    assert math.isnan(length_balanced(correct[:6], d[:6]))  # no pair the shorter one won


def test_calibration_counts_each_row_from_both_sides():
    # p_chosen 0.85 twice, 0.3 once, 0.5 once; bins of width 0.5 -> [0, .5) and [.5, 1].
    cal = calibration([0.85, 0.85, 0.3, 0.5, np.nan], bins=2)
    low, high = cal["table"]
    # from both sides: predictions 0.85 (chosen), 0.15 (not), 0.85, 0.15, 0.3 (chosen), 0.7 (not), 0.5 (chosen), 0.5 (not)
    assert low["count"] == 3 and low["predicted"] == pytest.approx((0.15 + 0.15 + 0.3) / 3)
    assert low["observed"] == pytest.approx(1 / 3)
    assert high["count"] == 5 and high["predicted"] == pytest.approx((0.85 + 0.85 + 0.7 + 0.5 + 0.5) / 5)
    assert high["observed"] == pytest.approx(3 / 5)
    ece = (3 * abs(0.2 - 1 / 3) + 5 * abs(0.68 - 0.6)) / 8
    assert cal["expected_calibration_error"] == pytest.approx(ece)
    assert cal["brier"] == pytest.approx((0.15**2 * 2 + 0.7**2 + 0.5**2) / 4) and cal["n"] == 4


def test_reward_model_extras():
    extras = reward_model_extras([2.0, 0.0], [1.0, -1.0], [30, 10], [20, 0])
    scores = np.array([2.0, 0.0, 1.0, -1.0])
    assert extras["score_std"] == pytest.approx(scores.std(ddof=1))
    # scores and lengths (30, 10, 20, 0) are perfectly linear: 2 + 0.1 * (len - 30) ... -> correlation 1
    assert extras["score_length_correlation"] == pytest.approx(1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None


def test_cluster_bootstrap_with_singleton_groups_is_the_plain_bootstrap():
    values = [1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    assert cluster_bootstrap_ci(values, list("abcdefg"), n_boot=300, seed=4) == bootstrap_ci(values, n_boot=300, seed=4)


def test_cluster_bootstrap_resamples_whole_groups_as_a_plain_loop_does():
    values = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    groups = ["p", "p", "q", "r", "r", "r"]  # p: rows 0-1, q: row 2, r: rows 3-5
    members = {"p": [0, 1], "q": [2], "r": [3, 4, 5]}
    rng = np.random.default_rng(7)
    replicates = []
    for _ in range(300):
        picked = [["p", "q", "r"][k] for k in rng.integers(0, 3, size=3)]
        rows = [i for g in picked for i in members[g]]
        replicates.append(values[rows].mean())
    expected = tuple(np.quantile(replicates, [0.025, 0.975]))
    assert cluster_bootstrap_ci(values, groups, n_boot=300, seed=7) == pytest.approx(expected)
    # Two groups, all ones and all zeros: a replicate is all p (1), all q (0), or half of each.
    assert cluster_bootstrap_ci([1.0, 1.0, 0.0, 0.0], ["p", "p", "q", "q"], n_boot=4000) == (0.0, 1.0)


def test_paired_bootstrap_hand_computed():
    # A constant per-post difference has a point interval.
    result = paired_bootstrap_ci([3.0, 5.0, 1.0], [2.0, 4.0, 0.0])
    assert (result["mean_diff"], result["ci_low"], result["ci_high"], result["n"]) == (1.0, 1.0, 1.0, 3)
    # It is the plain bootstrap of the differences, drawn with the same stream.
    x, y = [0.3, 0.9, 0.1, 0.5], [0.1, 0.4, 0.2, 0.2]
    paired = paired_bootstrap_ci(x, y, n_boot=500, seed=2)
    assert (paired["ci_low"], paired["ci_high"]) == bootstrap_ci(np.subtract(x, y), n_boot=500, seed=2)
    with pytest.raises(ValueError, match="different shapes"):
        paired_bootstrap_ci([1.0, 2.0], [1.0])


def test_paired_interval_separates_what_two_independent_intervals_cannot():
    # Ten posts of very different difficulty; the policy beats SFT on every one by 0.1 to 0.3.
    sft = np.array([-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    policy = sft + np.array([0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.2])
    lo_p, hi_p = bootstrap_ci(policy, seed=0)
    lo_s, hi_s = bootstrap_ci(sft, seed=0)
    assert lo_p < hi_s and lo_s < hi_p  # the independent intervals overlap
    paired = paired_bootstrap_ci(policy, sft, seed=0)
    assert paired["mean_diff"] == pytest.approx(0.2) and 0.1 <= paired["ci_low"] < paired["ci_high"] <= 0.3


def test_agreement_on_comparison_records_subsets_and_rows_id():
    rows = [
        {"id": "1", "post_id": "a", "chosen": "x" * 20, "rejected": "y" * 10, "strength": 4, "confidence": 9},
        {"id": "2", "post_id": "b", "chosen": "x" * 10, "rejected": "y" * 20, "strength": 3, "confidence": 2},
        {"id": "3", "post_id": "c", "chosen": "x" * 10, "rejected": "y" * 12, "strength": 1, "confidence": 6},
        {"id": "4", "post_id": "d", "chosen": "x" * 15, "rejected": "y" * 10, "strength": None, "confidence": None},
    ]
    m = agreement_on_comparisons(rows, [1.0, 1.0, 0.0, 1.0], 3, 8, 2, 100, 0)
    assert m["subsets"]["high_confidence"]["accuracy"] == pytest.approx(
        {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 2}
    )
    assert m["subsets"]["one_sided"]["accuracy"]["n"] == 1 and m["subsets"]["one_sided"]["min_confidence"] == 8
    assert m["length_matched"]["accuracy"]["n"] == 1  # row 3: 10 vs 12 characters
    assert m["rows_id"] == rows_id(list(reversed(rows))) != rows_id(rows[:3])


def test_rl_versus_sft_verdict_comes_from_the_paired_per_post_difference():
    """Issue #11 item 8c: the report's RL-vs-SFT verdict. Every post moved up by 0.1-0.3, but posts
    differ far more than that, so the two systems' own intervals overlap (the old verdict: not
    distinguishable); the paired interval of the per-post difference says above SFT [E10]."""
    from rlaif.evaluation.metrics import versus_baseline
    from rlaif.report.results import _versus

    sft = [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    rl = [s + d for s, d in zip(sft, [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.2])]
    ids = [f"p{i}" for i in range(10)]
    rows = {name: {i: {"summary": "x"} for i in ids} for name in ("rl", "sft")}
    scores = {"reward": {"rl": dict(zip(ids, rl)), "sft": dict(zip(ids, sft))}}
    paired = versus_baseline("rl", "sft", rows, {}, scores, 1000, 0)
    assert paired["n"] == 10 and "rouge_l" not in paired
    lo_rl, hi_rl = bootstrap_ci(np.array(rl), seed=0)
    lo_sft, hi_sft = bootstrap_ci(np.array(sft), seed=0)
    assert lo_rl < hi_sft and lo_sft < hi_rl  # two independent intervals overlap
    verdict = _versus(paired["rm_score/reward"])
    assert verdict.startswith("above SFT: per-post difference 0.200, paired 95% CI [") and verdict.endswith("10 posts")
