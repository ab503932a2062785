"""The math of the critic-free methods, RLOO and GRPO: group baselines and their losses. Tensors
only, no models. A batch holds groups of `k` consecutive rows, the k samples of one prompt [D51].
`mask` is True at real response tokens; padding log-probs must be equal in the tensors compared
(both INVALID_LOGPROB), so their log-ratio is 0 there.

Sources, read at TRL 1.16.0 (trl/trainer/rloo_trainer.py, grpo_trainer.py) and the papers; the
code is ours: RLOO, Ahmadian et al. 2024 (arXiv 2402.14740) [D52]; GRPO, Shao et al. 2024 (arXiv
2402.03300) [D53]; Dr. GRPO, Liu et al. 2025 (arXiv 2503.20783) [D54].
"""

from __future__ import annotations

import torch

from rlaif.rl.gae import kl_penalty
from rlaif.rl.masking import masked_mean

GROUP_STD_EPS = 1e-4
"""Added to the group std before dividing (TRL's GRPOTrainer: 1e-4): a group whose samples all
score the same gets advantage 0, not 0/0."""


def grouped(values: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) -> (B / k, k): one row per prompt."""
    if values.dim() != 1 or values.numel() % k:
        raise ValueError(f"expected (B,) with B a multiple of the group size {k}, got shape {tuple(values.shape)}")
    return values.view(-1, k)


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """A_i = r_i - mean of the other k-1 rewards of its prompt (RLOO's leave-one-out baseline, which
    does not depend on the sample it judges, so the gradient stays unbiased) [D52]. (B,) -> (B,)"""
    if k < 2:
        raise ValueError("the leave-one-out baseline needs k >= 2 samples per prompt")
    g = grouped(rewards, k)
    baseline = (g.sum(1, keepdim=True) - g) / (k - 1)
    return (g - baseline).reshape(-1)


def grpo_advantages(scores: torch.Tensor, k: int, scale: bool = True) -> torch.Tensor:
    """A_i = (s_i - group mean) / (group std + eps), the std unbiased (TRL's nanstd; torch.std) [D53];
    `scale=False` is Dr. GRPO's: no division by the std [D54]. (B,) -> (B,)"""
    g = grouped(scores, k)
    advantages = g - g.mean(1, keepdim=True)
    if scale:
        advantages = advantages / (g.std(1, keepdim=True) + GROUP_STD_EPS)
    return advantages.reshape(-1)


def sequence_kl(kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over the real tokens of a per-token KL estimate: (B, T) -> (B,)."""
    return (kl * mask.to(kl.dtype)).sum(1)


def rloo_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """RLOO's sequence reward: score - kl_coef x the sequence's summed KL (k1 by default: Ahmadian et
    al. and TRL's RLOOTrainer take logp - ref_logp) [D52]. (B,), (B, T) -> (B,)"""
    return scores - kl_coef * sequence_kl(kl, mask)


def rloo_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """RLOO's clipped surrogate on whole sequences, as TRL's RLOOTrainer: the ratio is
    pi(y|x) / pi_old(y|x) = exp(sum_t (logp_t - old_logp_t)), and the loss the mean over sequences
    of max(-A ratio, -A clip(ratio, 1 +/- cliprange)) [D52]. (b, T), (b, T), (b,), (b, T) -> ()"""
    token_logratio = (new_logprobs - old_logprobs) * mask.to(new_logprobs.dtype)  # (b, T)
    logratio = token_logratio.sum(1)  # (b,)
    ratio = torch.exp(logratio)
    losses = -advantages * ratio
    losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = torch.max(losses, losses_clipped).mean()
    with torch.no_grad():
        stats = {
            "clipfrac": (losses_clipped > losses).float().mean(),
            "approxkl": 0.5 * masked_mean(token_logratio**2, mask),
            "ratio": ratio.mean(),
        }
    return loss, stats


def grpo_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
    kl_coef: float,
    length_normalizer: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO's loss [D53]: per token, the clipped surrogate max(-A r_t, -A clip(r_t)) with r_t =
    exp(logp_t - old_logp_t) and the sequence's advantage A, plus kl_coef x k3(logp_t, ref_logp_t)
    (the current policy's, with its gradient); each sequence's token mean, then the mean over
    sequences. `length_normalizer` (Dr. GRPO [D54]): each sequence's token *sum* divided by this
    constant (the response length) instead of by its own length. (b, T) x3, (b,), (b, T) -> ()"""
    maskf = mask.to(new_logprobs.dtype)
    logratio = new_logprobs - old_logprobs  # (b, T)
    ratio = torch.exp(logratio)
    adv = advantages.unsqueeze(1)  # (b, 1)
    surrogate = -adv * ratio
    surrogate_clipped = -adv * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg = torch.max(surrogate, surrogate_clipped)  # (b, T)
    kl = kl_penalty(new_logprobs, ref_logprobs, "k3")  # (b, T)
    per_token = pg + kl_coef * kl
    lengths = maskf.sum(1).clamp(min=1.0) if length_normalizer is None else float(length_normalizer)
    loss = ((per_token * maskf).sum(1) / lengths).mean()
    with torch.no_grad():
        stats = {
            "pg_loss": ((pg * maskf).sum(1) / lengths).mean(),
            "kl": masked_mean(kl, mask),
            "clipfrac": masked_mean((surrogate_clipped > surrogate).float(), mask),
            "approxkl": 0.5 * masked_mean(logratio**2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats
