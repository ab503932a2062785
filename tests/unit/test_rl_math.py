"""Math checks for rlaif.rl vs plain loops and literals ([Dxx]: docs/implementation_details.md)."""

import math

import pytest
import torch

from rlaif.rl.gae import gae, kl_penalty, kl_shaped_rewards, penalize_missing_eos
from rlaif.rl.losses import entropy_from_logits, logprobs_from_logits, policy_loss, value_loss
from rlaif.rl.masking import (
    contains_eos,
    first_true_indices,
    masked_var,
    masked_whiten,
    response_padding_mask,
    sequence_lengths,
    truncate_response,
)

EOS, PAD = 2, 0
# row 0: EOS mid-way, junk after it; row 1: EOS twice; row 2: never ends (cut by the length limit)
RESPONSES = torch.tensor([[5, 6, 2, 7, 8], [5, 2, 2, 9, 9], [5, 6, 7, 8, 9]])  # (3, 5)


def gae_by_loop(rewards, values, gamma, lam):
    """Textbook GAE, one scalar at a time, episode ends at the last column."""
    B, T = rewards.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        running = 0.0
        for t in reversed(range(T)):
            next_v = values[b, t + 1].item() if t + 1 < T else 0.0
            delta = rewards[b, t].item() + gamma * next_v - values[b, t].item()
            running = delta + gamma * lam * running
            adv[b, t] = running
    return adv, adv + values


# --- masking: [D02] [D03] [D04] ---


def test_first_true_indices():
    bools = torch.tensor([[False, True, True], [False, False, False], [True, False, False]])
    assert first_true_indices(bools).tolist() == [1, 3, 0]


def test_truncate_after_first_eos():
    out = truncate_response(RESPONSES, EOS, PAD)
    assert out.tolist() == [[5, 6, 2, 0, 0], [5, 2, 0, 0, 0], [5, 6, 7, 8, 9]]
    assert contains_eos(out, EOS).tolist() == [True, True, False]


@pytest.mark.parametrize("pad", [PAD, EOS])  # EOS reused as pad must not shift the lengths
def test_sequence_lengths_and_padding_mask(pad):
    out = truncate_response(RESPONSES, EOS, pad)
    assert sequence_lengths(out, EOS).tolist() == [2, 1, 4]  # EOS index; last token when no EOS
    assert response_padding_mask(out, EOS).tolist() == [
        [False, False, False, True, True],
        [False, False, True, True, True],
        [False, False, False, False, False],
    ]


# --- rewards: [D04] [D05] [D06] ---


def test_kl_estimators_hand_computed():
    logp = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-2.0, -1.0, -0.5]])
    k1 = kl_penalty(logp, ref, "k1")
    k3 = kl_penalty(logp, ref, "k3")
    # k1 = logp - ref
    torch.testing.assert_close(k1, torch.tensor([[1.0, -1.0, 0.0]]))
    # k3 = (r - 1) - log r, r = exp(ref - logp): r = e^-1 -> e^-1 - 1 + 1; r = e -> e - 1 - 1; r = 1 -> 0
    torch.testing.assert_close(k3, torch.tensor([[math.exp(-1), math.e - 2.0, 0.0]]))
    assert (k1 < 0).any() and (k3 >= 0).all()


def test_kl_estimator_unknown_name():
    with pytest.raises(ValueError, match="k1.*k3"):
        kl_penalty(torch.zeros(1, 2), torch.zeros(1, 2), "k2")


def test_missing_eos_penalty():
    scores = torch.tensor([1.0, 2.0, 3.0])
    has_eos = contains_eos(RESPONSES, EOS)  # [T, T, F]
    torch.testing.assert_close(penalize_missing_eos(scores, has_eos, 1.0), torch.tensor([1.0, 2.0, 2.0]))


def test_score_added_at_eos_or_last_token():
    out = truncate_response(RESPONSES, EOS, PAD)
    scores = torch.tensor([1.0, 2.0, 3.0])
    kl = torch.full((3, 5), 0.1)
    rewards = kl_shaped_rewards(scores, kl, 0.5, sequence_lengths(out, EOS), response_padding_mask(out, EOS))
    k = -0.05  # -kl_coef * kl on every real token
    expected = torch.tensor(
        [
            [k, k, k + 1.0, 0.0, 0.0],  # score on the EOS (index 2), padding zero
            [k, k + 2.0, 0.0, 0.0, 0.0],  # first EOS only
            [k, k, k, k, k + 3.0],  # no EOS: score on the last token
        ]
    )
    torch.testing.assert_close(rewards, expected)


# --- GAE: [D07] ---


def test_gae_matches_plain_loop():
    torch.manual_seed(0)
    rewards, values = torch.randn(4, 7), torch.randn(4, 7)
    for gamma, lam in [(1.0, 0.95), (0.9, 0.5)]:
        adv, ret = gae(rewards, values, None, gamma, lam)
        exp_adv, exp_ret = gae_by_loop(rewards, values, gamma, lam)
        torch.testing.assert_close(adv, exp_adv)
        torch.testing.assert_close(ret, exp_ret)


def test_gae_hand_computed_with_padding():
    # one episode of 3 real tokens then 1 padding slot, gamma=1, lam=0.95
    rewards = torch.tensor([[0.1, -0.2, 1.0, 5.0]])  # 5.0 / 9.0 at the padding: must be ignored
    values = torch.tensor([[0.5, 0.3, 0.6, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # t=2: delta = 1.0 + 0 - 0.6 = 0.4                        A2 = 0.4
    # t=1: delta = -0.2 + 0.6 - 0.3 = 0.1                     A1 = 0.1 + 0.95 * 0.4 = 0.48
    # t=0: delta = 0.1 + 0.3 - 0.5 = -0.1                     A0 = -0.1 + 0.95 * 0.48 = 0.356
    torch.testing.assert_close(adv, torch.tensor([[0.356, 0.48, 0.4, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.856, 0.78, 1.0, 0.0]]))
    # zeroing upstream and passing no mask is the same convention
    adv2, ret2 = gae(rewards * mask, values * mask, None, 1.0, 0.95)
    torch.testing.assert_close(adv2, adv)
    torch.testing.assert_close(ret2, ret)


# --- whitening: [D08] [D09] ---


def test_masked_whiten_over_mask():
    torch.manual_seed(0)
    values = torch.randn(6, 10) * 3.0 + 2.0
    mask = torch.rand(6, 10) > 0.3
    values[~mask] = 1e3  # padding must not leak into the statistics
    w = masked_whiten(values, mask)[mask]
    assert abs(w.mean().item()) < 1e-5
    assert abs(w.std().item() - 1.0) < 1e-4  # unbiased std, like masked_var
    kept = masked_whiten(values, mask, shift_mean=False)[mask]
    torch.testing.assert_close(kept.mean(), values[mask].mean())


def test_masked_var_needs_two_values():
    with pytest.raises(ValueError):
        masked_var(torch.ones(1, 3), torch.tensor([[True, False, False]]))


# --- losses: [D10] [D11] [D14] ---


def test_policy_loss_hand_computed():
    ratios = [1.1, 1.5, 0.5, 1.5, 7.0]
    new = torch.log(torch.tensor([ratios]))
    old = torch.zeros(1, 5)
    adv = torch.tensor([[1.0, 1.0, -2.0, -1.0, 100.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    loss, stats = policy_loss(new, old, adv, mask, cliprange=0.2)
    # per token max(-A*r, -A*clip(r, 0.8, 1.2)):
    #   A=1,  r=1.1: max(-1.1, -1.1) = -1.1   inside the clip range
    #   A=1,  r=1.5: max(-1.5, -1.2) = -1.2   clipped
    #   A=-2, r=0.5: max( 1.0,  1.6) =  1.6   clipped
    #   A=-1, r=1.5: max( 1.5,  1.2) =  1.5   not clipped: the pessimistic side is unclipped
    torch.testing.assert_close(loss, torch.tensor((-1.1 - 1.2 + 1.6 + 1.5) / 4))
    torch.testing.assert_close(stats["clipfrac"], torch.tensor(0.5))
    torch.testing.assert_close(stats["ratio"], torch.tensor((1.1 + 1.5 + 0.5 + 1.5) / 4))
    approxkl = 0.5 * sum(math.log(r) ** 2 for r in ratios[:4]) / 4
    torch.testing.assert_close(stats["approxkl"], torch.tensor(approxkl))


def test_value_loss_hand_computed():
    old = torch.tensor([[0.5, 0.5, 0.5, 0.0]])
    new = torch.tensor([[0.6, 1.0, 0.0, 50.0]])
    returns = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, stats = value_loss(new, old, returns, mask, cliprange_value=0.2)
    # v=0.6 -> clipped 0.6: max(0.16, 0.16) = 0.16
    # v=1.0 -> clipped 0.7: max(0.00, 0.09) = 0.09   clipped
    # v=0.0 -> clipped 0.3: max(1.00, 0.49) = 1.00
    torch.testing.assert_close(loss, torch.tensor(0.5 * (0.16 + 0.09 + 1.0) / 3))
    torch.testing.assert_close(stats["vf_clipfrac"], torch.tensor(1 / 3))


def test_logprobs_and_entropy_from_logits():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 3, 11), torch.randint(0, 11, (2, 3))
    expected = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logprobs_from_logits(logits, labels), expected)
    bf16 = logprobs_from_logits(logits.bfloat16(), labels)
    torch.testing.assert_close(bf16, expected, atol=0.05, rtol=0.0)
    # uniform logits have entropy log V
    torch.testing.assert_close(entropy_from_logits(torch.zeros(1, 2, 11)), torch.full((1, 2), math.log(11)))


def test_policy_step_follows_advantage_sign():
    torch.manual_seed(0)
    V, H = 8, 16
    policy = torch.nn.Sequential(torch.nn.Embedding(V, H), torch.nn.Linear(H, V))
    states = torch.tensor([[0, 1, 2], [3, 4, 5]])  # (B, T) distinct contexts
    actions = torch.tensor([[6, 7, 6], [7, 6, 7]])
    adv = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    with torch.no_grad():
        old = logprobs_from_logits(policy(states), actions)
    opt = torch.optim.SGD(policy.parameters(), lr=0.1)
    loss, _ = policy_loss(logprobs_from_logits(policy(states), actions), old, adv, mask, cliprange=0.2)
    loss.backward()
    opt.step()
    with torch.no_grad():
        new = logprobs_from_logits(policy(states), actions)
    assert (new[0] > old[0]).all()  # positive advantage: more likely
    assert (new[1] < old[1]).all()  # negative advantage: less likely
