"""PPO losses and per-token quantities from logits. `mask` is True at real response tokens."""

import torch
import torch.nn.functional as F

from rlaif.rl.masking import masked_mean


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped PPO surrogate, masked mean over tokens. [D10]

    max(-A * ratio, -A * clip(ratio)) is the pessimistic bound: the clip removes the incentive to
    move a token's probability further than 1 +/- cliprange, but never hides a loss.
    """
    logratio = new_logprobs - old_logprobs  # (B, T)
    ratio = torch.exp(logratio)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((pg_losses_clipped > pg_losses).float(), mask),
            # 0.5 * E[logratio^2]: a low-variance estimate of KL(old || new), for monitoring only
            "approxkl": 0.5 * masked_mean(logratio**2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss 0.5 * max((v - R)^2, (v_clipped - R)^2), masked mean. [D11]

    v_clipped stays within cliprange_value of the rollout-time value, so one batch cannot drag the
    critic far, mirroring the policy clip (reference ppo.py: vf_losses1/vf_losses2).
    """
    v_clipped = old_values + torch.clamp(new_values - old_values, -cliprange_value, cliprange_value)  # (B, T)
    vf_losses = (new_values - returns) ** 2
    vf_losses_clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(vf_losses, vf_losses_clipped), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((vf_losses_clipped > vf_losses).float(), mask)}
    return loss, stats


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] per token: (B, T, V), (B, T) -> (B, T).

    Temperature is NOT applied here: the caller divides the logits by it first, so the
    log-probs match the distribution the tokens were sampled from. [D14]
    """
    if logits.dtype in (torch.float32, torch.float64):
        # x[y] - logsumexp(x) equals log_softmax(x)[y] without keeping a (B, T, V) log-softmax
        picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (B, T)
        return picked - torch.logsumexp(logits, dim=-1)
    # bf16/fp16 logsumexp is too coarse: one sequence at a time in float32 bounds the extra
    # memory; the result is float32
    return torch.stack([logprobs_from_logits(row.float(), lab) for row, lab in zip(logits, labels)])


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position: (B, T, V) -> (B, T). Monitoring only."""
    probs = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)
