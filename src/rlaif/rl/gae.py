"""Reward shaping and Generalised Advantage Estimation over response tokens, (B, T).

Index t is the t-th response token (the action); `values[:, t]` is the critic's estimate of the
state before that action. Convention for padding (positions after the first EOS): rewards and
values there must be zero, either upstream or by passing `mask` to `gae`. Then the episode ends at
the EOS token with a bootstrap value of 0, exactly as if the sequence had length EOS+1.
"""

import torch

KL_ESTIMATORS = ("k1", "k3")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) on the sampled tokens, (B, T). [D05]

    k1 = log pi - log pi_ref: unbiased, but negative on some tokens (the reference's choice).
    k3 = (r - 1) - log r with r = pi_ref / pi: also unbiased, never negative, lower variance
    (Schulman, "Approximating KL divergence", 2020).
    """
    logratio = logprobs - ref_logprobs  # (B, T)
    if estimator == "k1":
        return logratio
    if estimator == "k3":
        # log r = -logratio; written this way to need a single exp
        return torch.expm1(-logratio) + logratio
    raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def penalize_missing_eos(scores: torch.Tensor, has_eos: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract `penalty` from the score of each response that never emitted EOS. [D04]

    The reference replaces such scores with a fixed -1; subtracting (as TRL does) keeps the RM's
    ranking among the unfinished ones while still pushing the policy to end its summaries.
    """
    return scores - penalty * (~has_eos).to(scores.dtype)  # (B,)


def kl_shaped_rewards(
    scores: torch.Tensor,
    kl: torch.Tensor,
    kl_coef: float,
    sequence_lengths: torch.Tensor,
    padding_mask: torch.Tensor,
) -> torch.Tensor:
    """Per-token rewards r_t = -kl_coef * kl_t, plus the scalar score on the last real token. (B, T)

    [D05] the KL penalty is paid on every token; [D06] the RM score is added only at
    `sequence_lengths` (the EOS, or the last token when there is none), where it was read [D03].
    The reference code adds it one position later (sequence_lengths + 1, a padding slot, and keeps
    the value there); we put it on the EOS action itself so the episode ends where the mask ends.
    """
    rewards = (-kl_coef * kl).masked_fill(padding_mask, 0.0)  # (B, T)
    rows = torch.arange(rewards.size(0), device=rewards.device)
    rewards[rows, sequence_lengths] += scores.to(rewards.dtype)
    return rewards


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and returns (targets for the value loss), both (B, T). [D07]

    A_t = sum_k (gamma * lam)^k * delta_{t+k},  delta_t = r_t + gamma * V_{t+1} - V_t,  V_T = 0.
    gamma=1 because episodes are short and the only real reward is terminal; lam=0.95 trades a
    little bias for variance (paper defaults). `mask` (True at real tokens) zeroes rewards and
    values at padding before the loop, and the outputs after it; pass None when that was done
    upstream. Whitening the advantages [D08] is the caller's step, after this.
    """
    if mask is not None:
        mask = mask.to(rewards.dtype)
        rewards, values = rewards * mask, values * mask  # (B, T)
    T = rewards.size(1)
    lastgaelam = torch.zeros_like(rewards[:, 0])  # (B,)
    advantages_reversed = []
    for t in reversed(range(T)):
        nextvalues = values[:, t + 1] if t < T - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)  # (B, T)
    returns = advantages + values
    if mask is not None:
        advantages, returns = advantages * mask, returns * mask
    return advantages, returns
