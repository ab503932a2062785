"""RLOO's and GRPO's math (rlaif.rl.group) against plain-loop references and hand-computed cases."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from rlaif.rl.group import (
    GROUP_STD_EPS,
    grpo_advantages,
    grpo_loss,
    rloo_advantages,
    rloo_loss,
    rloo_rewards,
)


def loop_rloo_advantages(rewards: list[float], k: int) -> list[float]:
    out = []
    for start in range(0, len(rewards), k):
        group = rewards[start : start + k]
        for i, r in enumerate(group):
            others = [x for j, x in enumerate(group) if j != i]
            out.append(r - sum(others) / len(others))
    return out


def loop_grpo_advantages(scores: list[float], k: int, scale: bool) -> list[float]:
    out = []
    for start in range(0, len(scores), k):
        group = scores[start : start + k]
        mean, std = statistics.mean(group), statistics.stdev(group)
        out += [(s - mean) / (std + GROUP_STD_EPS) if scale else s - mean for s in group]
    return out


def test_rloo_baseline_hand_computed():
    # one prompt, k = 4: the baseline of each sample is the mean of the other three
    a = rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]), 4)
    expected = [1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3]
    torch.testing.assert_close(a, torch.tensor(expected))
    # k = 2: each sample against the other
    torch.testing.assert_close(rloo_advantages(torch.tensor([0.5, -0.5]), 2), torch.tensor([1.0, -1.0]))


def test_rloo_baseline_matches_a_plain_loop_and_sums_to_zero_per_group():
    rewards = torch.randn(24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for k in (2, 3, 4, 6):
        a = rloo_advantages(rewards, k)
        torch.testing.assert_close(a, torch.tensor(loop_rloo_advantages(rewards.tolist(), k), dtype=torch.float64))
        # A_i = k/(k-1) (r_i - group mean): zero-sum in every group
        torch.testing.assert_close(a.view(-1, k).sum(1), torch.zeros(24 // k, dtype=torch.float64))


def test_rloo_rewards_subtract_the_summed_kl_of_real_tokens():
    scores = torch.tensor([1.0, 0.0])
    kl = torch.tensor([[0.1, 0.2, 9.0], [0.5, -0.1, 0.3]])
    mask = torch.tensor([[True, True, False], [True, True, True]])  # the 9.0 is padding
    torch.testing.assert_close(rloo_rewards(scores, kl, mask, 0.5), torch.tensor([1.0 - 0.5 * 0.3, -0.5 * 0.7]))


def test_grpo_advantages_hand_computed_and_against_a_loop():
    # k = 2: mean 2, unbiased std sqrt(2)
    a = grpo_advantages(torch.tensor([1.0, 3.0]), 2)
    torch.testing.assert_close(a, torch.tensor([-1.0, 1.0]) / (math.sqrt(2) + GROUP_STD_EPS))
    torch.testing.assert_close(grpo_advantages(torch.tensor([1.0, 3.0]), 2, scale=False), torch.tensor([-1.0, 1.0]))
    # a group whose samples all score the same: advantage 0, not 0/0
    assert grpo_advantages(torch.tensor([0.7, 0.7, 0.7]), 3).tolist() == [0.0, 0.0, 0.0]
    scores = torch.randn(24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for k in (2, 4, 8):
        for scale in (True, False):
            expected = torch.tensor(loop_grpo_advantages(scores.tolist(), k, scale), dtype=torch.float64)
            torch.testing.assert_close(grpo_advantages(scores, k, scale), expected)


def test_group_size_must_divide_the_batch():
    with pytest.raises(ValueError, match="multiple of the group size 4"):
        grpo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.zeros(4), 1)


def loop_grpo_loss(new, old, ref, adv, mask, eps, beta, normalizer=None) -> float:
    """GRPO's objective written token by token (Shao et al. 2024, eq. 3, negated; k3 KL, eq. 4)."""
    per_sequence = []
    for i in range(len(new)):
        total, n = 0.0, 0
        for t in range(len(new[i])):
            if not mask[i][t]:
                continue
            ratio = math.exp(new[i][t] - old[i][t])
            clipped = min(max(ratio, 1 - eps), 1 + eps)
            surrogate = min(ratio * adv[i], clipped * adv[i])
            r = math.exp(ref[i][t] - new[i][t])
            k3 = r - math.log(r) - 1
            total += -surrogate + beta * k3
            n += 1
        per_sequence.append(total / (normalizer if normalizer is not None else n))
    return sum(per_sequence) / len(per_sequence)


def random_case(seed: int, b: int = 6, t: int = 5):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    new = old + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.3  # some ratios beyond the clip
    ref = old + torch.randn(b, t, generator=g, dtype=torch.float64) * 0.2
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    return new, old, ref, adv, mask


@pytest.mark.parametrize("normalizer", [None, 5])
def test_grpo_loss_matches_a_plain_loop(normalizer):
    for seed in range(3):
        new, old, ref, adv, mask = random_case(seed)
        loss, stats = grpo_loss(new, old, ref, adv, mask, 0.2, 0.04, normalizer)
        expected = loop_grpo_loss(new.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(), 0.2, 0.04,
                                  normalizer)  # fmt: skip
        assert loss.item() == pytest.approx(expected, rel=1e-12)
        assert 0.0 < stats["clipfrac"].item() < 1.0


def test_grpo_loss_hand_computed_on_policy():
    # on-policy (ratio 1) and at the reference (k3 = 0): the loss is -mean(A), whatever the lengths
    logp = torch.tensor([[-1.0, -2.0, 1.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    adv = torch.tensor([2.0, -1.0])
    loss, stats = grpo_loss(logp, logp, logp, adv, mask, 0.2, 0.04)
    assert loss.item() == pytest.approx(-0.5) and stats["ratio"].item() == 1.0 and stats["kl"].item() == 0.0
    # Dr. GRPO: token sums over the constant 4: -(2 x 2/4 + (-1) x 3/4) / 2
    loss, _ = grpo_loss(logp, logp, logp, adv, mask, 0.2, 0.04, length_normalizer=4)
    assert loss.item() == pytest.approx(-(2 * 2 / 4 - 3 / 4) / 2)
    # the KL term: one token, log pi - log ref = log 2: k3 = 1/2 - log(1/2) - 1
    one = torch.tensor([[math.log(0.5)]])
    loss, _ = grpo_loss(one, one, one - math.log(2), torch.tensor([0.0]), torch.tensor([[True]]), 0.2, 0.1)
    assert loss.item() == pytest.approx(0.1 * (0.5 + math.log(2) - 1))


def test_grpo_gradient_weighs_sequences_equally_and_dr_grpo_weighs_tokens():
    """GRPO's per-sequence mean gives a short sequence's tokens more weight than a long one's; Dr.
    GRPO's constant normaliser gives every token the same weight (Liu et al. 2025's length bias)."""
    old = torch.zeros(2, 4)
    mask = torch.tensor([[True, False, False, False], [True, True, True, True]])
    adv = torch.tensor([1.0, 1.0])
    for normalizer, expected in ((None, [[-0.5, 0, 0, 0], [-0.125] * 4]), (4, [[-0.125, 0, 0, 0], [-0.125] * 4])):
        new = old.clone().requires_grad_(True)
        grpo_loss(new, old, old, adv, mask, 0.2, 0.0, normalizer)[0].backward()
        torch.testing.assert_close(new.grad, torch.tensor(expected))


def loop_rloo_loss(new, old, adv, mask, eps) -> float:
    losses = []
    for i in range(len(new)):
        ratio = math.exp(sum(n - o for n, o, m in zip(new[i], old[i], mask[i]) if m))
        clipped = min(max(ratio, 1 - eps), 1 + eps)
        losses.append(-min(ratio * adv[i], clipped * adv[i]))
    return sum(losses) / len(losses)


def test_rloo_loss_matches_a_plain_loop_and_hand_computed_cases():
    for seed in range(3):
        new, old, _, adv, mask = random_case(seed)
        loss, _ = rloo_loss(new, old, adv, mask, 0.2)
        expected = loop_rloo_loss(new.tolist(), old.tolist(), adv.tolist(), mask.tolist(), 0.2)
        assert loss.item() == pytest.approx(expected, rel=1e-12)
    # a sequence ratio of 2 (log 2 over two tokens): clipped to 1.2 for A > 0, kept at 2 for A < 0
    old = torch.zeros(2, 3)
    new = torch.tensor([[0.5, math.log(2) - 0.5, 7.0]] * 2)  # the 7.0 is padding
    mask = torch.tensor([[True, True, False]] * 2)
    loss, stats = rloo_loss(new, old, torch.tensor([1.0, -1.0]), mask, 0.2)
    assert loss.item() == pytest.approx((-1.2 + 2.0) / 2)
    assert stats["clipfrac"].item() == 0.5 and stats["ratio"].item() == pytest.approx(2.0)
