"""Reward-model losses and metrics against hand-computed values ([Dxx]: docs/implementation_details.md)."""

import math

import pytest
import torch

from rlaif.reward.losses import (
    calibration_table,
    centering_penalty,
    clamp_labels,
    expected_calibration_error,
    hard_preference_loss,
    normalization_bias,
    pair_loss,
    preference_accuracy,
    soft_preference_loss,
)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_soft_loss_hand_computed():  # [D16]
    # r_a - r_b = 1, p = 0.6: -(0.6 log s(1) + 0.4 log s(-1)) = 0.6 * 0.3132617 + 0.4 * 1.3132617
    loss = soft_preference_loss(torch.tensor([1.5]), torch.tensor([0.5]), torch.tensor([0.6]))
    assert loss.item() == pytest.approx(0.7132616875, abs=1e-6)
    assert loss.item() == pytest.approx(-(0.6 * log_sigmoid(1.0) + 0.4 * log_sigmoid(-1.0)), abs=1e-6)


def test_soft_labels_of_zero_or_one_give_the_hard_loss():  # [D16]
    r_a, r_b = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([-0.4, 0.8, 2.5])
    margin = torch.tensor([0.5, 0.0, 1.0])
    ones, zeros = torch.ones(3), torch.zeros(3)
    torch.testing.assert_close(soft_preference_loss(r_a, r_b, ones), hard_preference_loss(r_a, r_b))
    torch.testing.assert_close(soft_preference_loss(r_a, r_b, zeros), hard_preference_loss(r_b, r_a))
    torch.testing.assert_close(soft_preference_loss(r_a, r_b, ones, margin), hard_preference_loss(r_a, r_b, margin))
    torch.testing.assert_close(soft_preference_loss(r_a, r_b, zeros, margin), hard_preference_loss(r_b, r_a, margin))
    assert hard_preference_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(
        -log_sigmoid(2.0), abs=1e-6
    )


def test_label_order_symmetry():
    r_a, r_b = torch.tensor([0.3, -1.2, 2.0, 0.0]), torch.tensor([-0.4, 0.8, 2.5, 0.0])
    p_a, margin = torch.tensor([0.7, 0.4, 0.5, 1.0]), torch.tensor([0.4, 0.2, 0.0, 1.0])
    torch.testing.assert_close(
        soft_preference_loss(r_a, r_b, p_a, margin), soft_preference_loss(r_b, r_a, 1 - p_a, margin)
    )
    for kind in ("soft", "hard"):
        hard_p = (p_a > 0.5).float()
        torch.testing.assert_close(
            pair_loss(r_a, r_b, hard_p, kind, margin, 0.1), pair_loss(r_b, r_a, 1 - hard_p, kind, margin, 0.1)
        )


def test_margin_is_applied_toward_the_preferred_side():
    # p = 0.6 prefers a: diff 1 becomes 1 - 0.5 = 0.5; p = 0.4 prefers b: diff 1 becomes 1.5.
    r_a, r_b = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    loss = soft_preference_loss(r_a, r_b, torch.tensor([0.6, 0.4]), torch.tensor([0.5, 0.5]))
    expected = [
        -(0.6 * log_sigmoid(0.5) + 0.4 * log_sigmoid(-0.5)),
        -(0.4 * log_sigmoid(1.5) + 0.6 * log_sigmoid(-1.5)),
    ]
    torch.testing.assert_close(loss, torch.tensor(expected))


def test_clamp_and_centering():  # [D17] [D18]
    torch.testing.assert_close(
        clamp_labels(torch.tensor([0.0, 0.45, 0.9, 1.0]), 0.4, 0.6), torch.tensor([0.4, 0.45, 0.6, 0.6])
    )
    r_a, r_b = torch.tensor([1.0, -2.0]), torch.tensor([2.0, 1.0])
    assert centering_penalty(r_a, r_b).item() == pytest.approx((9.0 + 1.0) / 2)
    base = pair_loss(r_a, r_b, torch.ones(2), "hard")
    assert pair_loss(r_a, r_b, torch.ones(2), "hard", center_coef=0.01).item() == pytest.approx(
        base.item() + 0.05, abs=1e-6
    )
    with pytest.raises(ValueError, match="unknown reward loss"):
        pair_loss(r_a, r_b, torch.ones(2), "hinge")


def test_hard_pair_loss_uses_the_preferred_side():
    r_a, r_b = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    loss = pair_loss(r_a, r_b, torch.tensor([1.0, 0.0]), "hard")
    assert loss.item() == pytest.approx((-log_sigmoid(1.0) - log_sigmoid(-1.0)) / 2, abs=1e-6)


def test_normalization_bias_centres_the_scores():  # [D19]
    scores = torch.tensor([1.0, 2.0, 6.0])
    bias = normalization_bias(scores)
    assert bias == pytest.approx(-3.0)
    assert (scores + bias).mean().item() == pytest.approx(0.0, abs=1e-6)


def test_preference_accuracy_counts_ties_half_and_skips_undecided():
    r_a, r_b = torch.tensor([1.0, 0.0, 0.5, 3.0, 0.0]), torch.tensor([0.0, 1.0, 0.5, 1.0, 9.0])
    p_a = torch.tensor([0.8, 0.9, 1.0, 0.0, 0.5])  # right, wrong, tie, wrong, undecided
    assert preference_accuracy(r_a, r_b, p_a) == pytest.approx(1.5 / 4)
    assert math.isnan(preference_accuracy(r_a, r_b, torch.full((5,), 0.5)))


def test_calibration_table_counts_both_orders():
    # diffs 0 -> pred 0.5 twice (bin 5); diff log(3) -> pred 0.75 (bin 7) and 0.25 (bin 2).
    r_a, r_b = torch.tensor([0.0, math.log(3.0)]), torch.tensor([0.0, 0.0])
    table = calibration_table(r_a, r_b, torch.tensor([1.0, 1.0]), bins=10)
    counts = [row["count"] for row in table]
    assert sum(counts) == 4 and counts[5] == 2 and counts[7] == 1 and counts[2] == 1
    assert table[5]["predicted"] == pytest.approx(0.5) and table[5]["observed"] == pytest.approx(0.5)
    assert table[7]["predicted"] == pytest.approx(0.75) and table[7]["observed"] == pytest.approx(1.0)
    assert expected_calibration_error(table) == pytest.approx((0 + 0 + 0.25 + 0.25) / 4)
