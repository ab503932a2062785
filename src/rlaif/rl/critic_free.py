"""One RLOO or GRPO step: a rollout of k samples per prompt, group advantages, clipped updates.

The rollout is PPO's (rlaif.rl.rollout: sampling, reward sources, both memory modes, the same
precision rules) without a critic; the update loop is PPO's (rlaif.rl.update) with a loss that is
a mean over sequences, so a micro-batch weighs its share of the minibatch's sequences [D47][D51].
The math is rlaif.rl.group.
"""

from __future__ import annotations

import torch

from rlaif.config import RLConfig
from rlaif.rl.group import grpo_advantages, grpo_loss, rloo_advantages, rloo_loss, rloo_rewards
from rlaif.rl.losses import entropy_from_logits
from rlaif.rl.masking import masked_mean
from rlaif.rl.policy import RLModels
from rlaif.rl.rollout import Rollout, micro_batch_forward, sample_and_score
from rlaif.rl.update import update


@torch.no_grad()
def group_rollout(
    models: RLModels,
    tokenizer,
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    prompts: list[str],
    settings: RLConfig,
    generator: torch.Generator,
) -> Rollout:
    """Sample and score left-padded `queries` (B, Lq), which hold each prompt `group_size` times in a
    row (the trainer repeats them), and give every sample its group advantage: RLOO's leave-one-out
    [D52] or GRPO's normalised one [D53][D54]."""
    with models.autocast():  # the precision the update computes in [D50]
        s = sample_and_score(models, tokenizer, queries, query_mask, prompts, settings, generator)
    k = settings.group_size
    if settings.algorithm == "rloo":
        rewards = rloo_rewards(s.scores, s.kl, ~s.padding_mask, settings.kl_coef)
        advantages = rloo_advantages(rewards, k)
    elif settings.algorithm == "grpo":
        rewards = s.scores  # GRPO's KL is in the loss, not the reward [D53]
        advantages = grpo_advantages(rewards, k, scale=not settings.dr_grpo)
    else:
        raise ValueError(f"group_rollout is for rloo and grpo, not {settings.algorithm!r}")
    return Rollout(
        s.query_responses,
        s.attention_mask,
        s.context_length,
        s.responses,
        s.padding_mask,
        s.logprobs,
        s.ref_logprobs,
        None,
        s.kl,
        s.raw_scores,
        s.scores,
        rewards,
        advantages,
        None,
        s.texts,
        s.layer_inputs,
    )


def group_update(
    model,
    optimizer,
    scheduler,
    accelerator,
    batch: Rollout,
    settings: RLConfig,
    generator: torch.Generator,
    step: int,
) -> dict[str, float]:
    """Epochs of clipped updates over the rollout; every sequence weighs the same (both losses are
    means over sequences, TRL's `grpo` and RLOO aggregation) [D52][D53]."""
    per_sequence = torch.ones(batch.responses.size(0), device=batch.responses.device)
    return update(
        model, optimizer, scheduler, accelerator, batch, settings, generator, step, _micro_batch_loss, per_sequence
    )


def _micro_batch_loss(model, batch: Rollout, mb_inds: torch.Tensor, settings: RLConfig) -> tuple[torch.Tensor, dict]:
    """The algorithm's loss over the micro-batch's sequences, from one batched forward (no values)."""
    mb_padding = batch.padding_mask[mb_inds]
    mb_mask = ~mb_padding
    logits, new_logprobs, _ = micro_batch_forward(model, batch, mb_inds, settings.temperature)
    old_logprobs, advantages = batch.logprobs[mb_inds], batch.advantages[mb_inds]
    cliprange = settings.ppo.cliprange
    extra = {}
    if settings.algorithm == "rloo":
        loss, stats = rloo_loss(new_logprobs, old_logprobs, advantages, mb_mask, cliprange)
        policy_part = loss.detach()
    else:
        normalizer = settings.response_length if settings.dr_grpo else None
        loss, stats = grpo_loss(new_logprobs, old_logprobs, batch.ref_logprobs[mb_inds], advantages, mb_mask,
                                cliprange, settings.kl_coef, normalizer)  # fmt: skip
        policy_part = stats["pg_loss"]
        extra = {"loss/kl": stats["kl"]}
    with torch.no_grad():
        out = {
            "policy/approxkl": stats["approxkl"],
            "policy/clipfrac": stats["clipfrac"],
            "policy/ratio": stats["ratio"],
            "policy/entropy": masked_mean(entropy_from_logits(logits), mb_mask),
            "loss/policy": policy_part,
            "loss/total": loss.detach(),
            **extra,
        }
    return loss, out
