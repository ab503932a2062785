"""The DPO loss with a soft preference target, and the statistics logged beside it. Pure tensor
functions over one value per pair, (B,); [Pxx] are docs/implementation_details.md.

A pair is (a, b) with p = P(a > b): an AI soft label, 1.0 for a human-chosen a, 0.5 for a tie.
The log-ratio of a response y is log pi(y|x) - log pi_ref(y|x), summed over its tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dpo_loss(logratio_a: torch.Tensor, logratio_b: torch.Tensor, p_a: torch.Tensor, beta: float) -> torch.Tensor:
    """-[p log sigmoid(beta D) + (1 - p) log sigmoid(-beta D)], D = logratio_a - logratio_b, per pair (B,). [P01]

    The cross-entropy between the label P(a > b) and the Bradley-Terry probability of the implicit
    rewards beta * logratio (Rafailov et al. 2023, arXiv 2305.18290, eq. 7 is p = 1). At p in {0, 1}
    it is TRL's `sigmoid` loss; at a constant p = 1 - eps it is conservative DPO's label smoothing
    (Mitchell 2023, "A note on DPO with noisy preferences"; TRL <= 0.28's `sigmoid` with
    label_smoothing = eps). logsigmoid keeps it finite for any D."""
    delta = logratio_a - logratio_b  # (B,)
    return -(p_a * F.logsigmoid(beta * delta) + (1.0 - p_a) * F.logsigmoid(-beta * delta))


def preference_stats(
    logps_a: torch.Tensor,
    logps_b: torch.Tensor,
    ref_logps_a: torch.Tensor,
    ref_logps_b: torch.Tensor,
    p_a: torch.Tensor,
    beta: float,
) -> dict[str, torch.Tensor]:
    """Per-pair statistics with TRL's names, (B,) each, oriented by the label: `chosen` is the side
    the label prefers (a when p > 0.5, b when p < 0.5; a on a tie, which `decided` marks 0). [P03]
        rewards/chosen, rewards/rejected   implicit rewards beta * logratio
        rewards/margins                    chosen - rejected
        rewards/accuracies                 1 where the implicit rewards rank the pair as the label does
        logps/chosen, logps/rejected       summed log-probs under the policy
        decided                            1 where p != 0.5 (accuracy is averaged over these only)"""
    a_chosen = p_a >= 0.5
    reward_a, reward_b = beta * (logps_a - ref_logps_a), beta * (logps_b - ref_logps_b)
    chosen = torch.where(a_chosen, reward_a, reward_b)
    rejected = torch.where(a_chosen, reward_b, reward_a)
    return {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "rewards/accuracies": (chosen > rejected).float(),
        "logps/chosen": torch.where(a_chosen, logps_a, logps_b),
        "logps/rejected": torch.where(a_chosen, logps_b, logps_a),
        "decided": (p_a != 0.5).float(),
    }
