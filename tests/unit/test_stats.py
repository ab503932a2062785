"""rlaif.evaluation.stats against values worked out by hand."""

import math

import numpy as np
import pytest

from rlaif.evaluation.stats import (
    bootstrap_ci,
    fit_logistic,
    lc_win_rate,
    lcs_length,
    outcome,
    position_bias,
    preferred_position,
    rouge_l,
    rouge_tokens,
    win_rate,
)


def test_preferred_position():
    assert preferred_position(0.7, 0.3) == "first"
    assert preferred_position(0.2, 0.8) == "second"
    assert preferred_position(0.5, 0.5) is None
    assert preferred_position(None, 0.8) is None


@pytest.mark.parametrize(
    "ab, ba, expected",
    [
        ("first", "second", "win"),  # A chosen in both orders
        ("second", "first", "loss"),  # B chosen in both orders
        ("first", "first", "tie"),  # the first slot both times: the orders disagree on the summary
        ("second", "second", "tie"),
        (None, "second", "tie"),  # an order without an answer cannot confirm the other
        ("first", None, "tie"),
    ],
)
def test_outcome_needs_both_orders_to_agree(ab, ba, expected):
    assert outcome(ab, ba) == expected


def test_position_bias_hand_computed():
    ab = ["first", "first", "second", None]
    ba = ["first", "second", "second", "first"]
    stats = position_bias(ab, ba)
    # pairs answered in both orders: 3; same slot both times: pairs 0 and 2.
    assert stats["answered_pairs"] == 3
    assert stats["flip_rate"] == pytest.approx(2 / 3)
    # answers: first, first, second, first, second, second, first -> 4 of 7 first.
    assert stats["first_rate"] == pytest.approx(4 / 7)
    assert position_bias([None], [None]) == {"flip_rate": None, "first_rate": None, "answered_pairs": 0}


def test_win_rate_counts_ties_as_half():
    assert win_rate([1.0, 0.5, 0.0, 1.0]) == pytest.approx(2.5 / 4)
    with pytest.raises(ValueError):
        win_rate([])


def test_bootstrap_ci_hand_computed():
    # Two items, 0 and 1: a resampled mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles of many replicates are 0 and 1.
    assert bootstrap_ci([0.0, 1.0], n_boot=4000, seed=1) == (0.0, 1.0)
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_bootstrap_ci_is_the_percentile_of_a_plain_loop():
    values = np.array([1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 0.5])
    rng = np.random.default_rng(3)
    replicates = []
    for _ in range(200):
        sample = [values[rng.integers(0, len(values))] for _ in range(len(values))]
        replicates.append(sum(sample) / len(sample))
    # the vectorised draw uses the same generator stream row by row
    lo, hi = bootstrap_ci(values, n_boot=200, seed=3)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(replicates, [0.025, 0.975])))
    assert lo <= values.mean() <= hi


def test_bootstrap_ci_two_dimensional_rows():
    rows = np.array([[1.0, 3.0], [0.0, 3.0]])
    lo, hi = bootstrap_ci(rows, statistic=lambda m: m[:, 0].mean() * m[:, 1].mean(), n_boot=2000)
    assert (lo, hi) == (0.0, 3.0)


def test_fit_logistic_intercept_only_is_the_logit_of_the_mean():
    y = np.array([1.0, 1.0, 1.0, 0.0])
    w = fit_logistic(np.zeros(4), y, l2=0.0)
    assert w[0] == pytest.approx(math.log(3), abs=1e-8)


def test_lc_win_rate_hand_computed():
    # Six pairs where A is longer (A wins 5), two where A is shorter (A wins 1): raw win rate 6/8.
    # The length feature takes two values +-t, so the fit is exact: b + w t = logit(5/6) = log 5,
    # b - w t = logit(1/2) = 0, hence b = log(5) / 2 and the LC win rate is sigmoid(b) = sqrt5 / (1 + sqrt5).
    scores = [1, 1, 1, 1, 1, 0, 1, 0]
    len_a = [20] * 6 + [10] * 2
    len_b = [10] * 6 + [20] * 2
    result = lc_win_rate(scores, len_a, len_b)
    assert win_rate(scores) == 0.75
    assert result["lc_win_rate"] == pytest.approx(math.sqrt(5) / (1 + math.sqrt(5)), abs=2e-3)
    # delta = +-10; std of (+10 x6, -10 x2) = 10 * sqrt(0.75); t = tanh(1 / sqrt(0.75))
    t = math.tanh(1 / math.sqrt(0.75))
    assert result["length_coef"] == pytest.approx(math.log(5) / (2 * t), abs=5e-3)


def test_lc_win_rate_without_length_variation_is_the_raw_rate():
    assert lc_win_rate([1, 0, 0.5], [5, 5, 5], [3, 3, 3])["lc_win_rate"] == pytest.approx(0.5)


def test_rouge_tokens_lowercase_alphanumeric():
    assert rouge_tokens("Hello, World! It's 2am.") == ["hello", "world", "it", "s", "2am"]


def test_lcs_length_hand_computed():
    assert lcs_length(["a", "b", "c", "d"], ["a", "c", "d", "b"]) == 3  # a c d
    assert lcs_length([], ["x"]) == 0


def test_rouge_l_hand_computed():
    # LCS "the cat on the mat" = 5 of 6 tokens each way: P = R = F = 5/6
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    # LCS "the gunman" = 2; P = 2/4, R = 2/6, F = 2PR / (P + R) = 0.4
    assert rouge_l("police killed the gunman", "the gunman was killed by police") == pytest.approx(0.4)
    assert rouge_l("Hello, world", "hello world!") == 1.0
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("nothing shared", "at all") == 0.0
