"""Pairwise reward-model losses and metrics: pure tensor functions, (B,) in, no config objects.

`r_a`, `r_b` are the scalar scores of the two summaries of each pair; `p_a` is the label
P(a > b): a soft AI label in [0, 1], or exactly 1.0 / 0.0 for a hard (human) choice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clamp_labels(p_a: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Soft labels squeezed into [low, high]. Constitutional AI (Bai et al. 2022, §4.1) clamps
    chain-of-thought preference probabilities to 40-60% because they are over-confident. [D17]"""
    return p_a.clamp(low, high)


def soft_preference_loss(
    r_a: torch.Tensor, r_b: torch.Tensor, p_a: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy between sigmoid(r_a - r_b) and the label p_a, per pair (B,). [D16]

    With p_a exactly 1 (or 0) this is the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected).
    A margin m >= 0 asks the preferred side to win by at least m (Llama 2, Touvron et al. 2023,
    eq. 2); it is applied toward the side the label prefers, so swapping a and b (and p_a -> 1 - p_a)
    gives the same loss.
    """
    diff = r_a - r_b  # (B,)
    if margin is not None:
        diff = diff - margin * torch.sign(p_a - 0.5)
    return -(p_a * F.logsigmoid(diff) + (1.0 - p_a) * F.logsigmoid(-diff))


def hard_preference_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Bradley-Terry loss -log sigmoid(r_chosen - r_rejected - margin), per pair (B,). [D16]"""
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff)


def centering_penalty(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """mean((r_a + r_b)^2): pulls the scores of each pair toward 0 (Eisenstein et al. 2023,
    arXiv 2312.09244, §3; TRL's `center_rewards_coefficient`). Scalar. [D18]"""
    return ((r_a + r_b) ** 2).mean()


def pair_loss(
    r_a: torch.Tensor,
    r_b: torch.Tensor,
    p_a: torch.Tensor,
    kind: str,
    margin: torch.Tensor | None = None,
    center_coef: float = 0.0,
) -> torch.Tensor:
    """The training loss, a scalar. `soft`: cross-entropy with p_a (already clamped by the caller);
    `hard`: Bradley-Terry on the side p_a prefers (p_a = 0.5 counts as a preferred, callers drop
    such ties for the hard loss)."""
    if kind == "soft":
        losses = soft_preference_loss(r_a, r_b, p_a, margin)
    elif kind == "hard":
        a_wins = p_a >= 0.5
        losses = hard_preference_loss(torch.where(a_wins, r_a, r_b), torch.where(a_wins, r_b, r_a), margin)
    else:
        raise ValueError(f"unknown reward loss {kind!r}; use 'soft' or 'hard'")
    loss = losses.mean()
    if center_coef:
        loss = loss + center_coef * centering_penalty(r_a, r_b)
    return loss


def preference_accuracy(r_a: torch.Tensor, r_b: torch.Tensor, p_a: torch.Tensor) -> float:
    """Share of pairs whose score order matches the label's preferred side; a tied score counts
    half. Pairs with p_a = 0.5 (no preference) are left out."""
    decided = p_a != 0.5
    if not decided.any():
        return float("nan")
    diff, a_wins = (r_a - r_b)[decided], p_a[decided] > 0.5
    correct = torch.where(a_wins, diff > 0, diff < 0).double() + 0.5 * (diff == 0).double()
    return correct.mean().item()


def normalization_bias(raw_scores: torch.Tensor) -> float:
    """The bias that gives `raw_scores` mean 0 (Huang et al. 2024, arXiv 2403.17031, §6: reward
    normalised so the reference summaries score 0 on average). [D19]"""
    return -raw_scores.double().mean().item()


def calibration_table(r_a: torch.Tensor, r_b: torch.Tensor, p_a: torch.Tensor, bins: int = 10) -> list[dict]:
    """Predicted P(a > b) = sigmoid(r_a - r_b) against the observed frequency, in equal-width bins.

    Each pair is counted in both orders, (pred, label) and (1 - pred, 1 - label), so the table does
    not depend on which summary happened to be called `a`. `observed` is the mean label (the
    empirical frequency for hard labels, the mean AI probability for soft ones).
    """
    pred = torch.sigmoid((r_a - r_b).double())
    pred, label = torch.cat([pred, 1 - pred]), torch.cat([p_a.double(), 1 - p_a.double()])
    index = (pred * bins).long().clamp(max=bins - 1)
    table = []
    for i in range(bins):
        sel = index == i
        n = int(sel.sum())
        table.append(
            {
                "bin": [i / bins, (i + 1) / bins],
                "count": n,
                "predicted": pred[sel].mean().item() if n else None,
                "observed": label[sel].mean().item() if n else None,
            }
        )
    return table


def expected_calibration_error(table: list[dict]) -> float:
    """Count-weighted mean |predicted - observed| over the bins of `calibration_table`."""
    total = sum(row["count"] for row in table)
    if not total:
        return float("nan")
    return sum(row["count"] * abs(row["predicted"] - row["observed"]) for row in table if row["count"]) / total
