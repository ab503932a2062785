"""One PPO step for summarisation: a rollout, then epochs of clipped updates over it.

The steps are numbered as in the reference ppo.py (Huang et al. 2024, arXiv 2403.17031;
vwxyzjn/summarize_from_feedback_details @ 3f14a17); [Dxx] are docs/implementation_details.md.
    rollout: 1 sample -> 2 truncate -> 3 reference / value / score passes -> 4 EOS penalty
             (rlaif.rl.rollout, shared with RLOO and GRPO) -> 5 KL-shaped rewards -> 6 GAE
    update:  epochs -> shuffled minibatches (one optimizer step each) -> micro-batches (rlaif.rl.update)
Both run every forward inside the accelerator's autocast, in one precision [D50].
"""

from __future__ import annotations

import torch

from rlaif.config import RLConfig
from rlaif.rl import NonFiniteLossError
from rlaif.rl.gae import gae, kl_shaped_rewards
from rlaif.rl.losses import entropy_from_logits, policy_loss, value_loss
from rlaif.rl.masking import masked_mean, masked_whiten
from rlaif.rl.policy import RLModels
from rlaif.rl.rollout import (
    INVALID_LOGPROB,
    Rollout,
    epoch_order,
    micro_batch_forward,
    micro_batches,
    policy_forward,
    sample_and_score,
)
from rlaif.rl.update import update

__all__ = [
    "INVALID_LOGPROB",
    "NonFiniteLossError",
    "Rollout",
    "epoch_order",
    "micro_batches",
    "policy_forward",
    "ppo_update",
    "rollout",
]


@torch.no_grad()
def rollout(
    models: RLModels,
    tokenizer,
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    prompts: list[str],
    settings: RLConfig,
    generator: torch.Generator,
) -> Rollout:
    """Sample, score and shape one batch of left-padded `queries` (B, Lq) on models.device; `generator`
    (on the same device) draws the samples."""
    with models.autocast():  # the precision the update computes in [D50]
        s = sample_and_score(models, tokenizer, queries, query_mask, prompts, settings, generator)
    # 5. per-token KL penalty, score on the last real token [D05][D06]; padding holds no reward or value
    rewards = kl_shaped_rewards(s.scores, s.kl, settings.kl_coef, s.sequence_lengths, s.padding_mask)
    if settings.whiten_rewards:  # [D09]
        rewards = masked_whiten(rewards, ~s.padding_mask, shift_mean=False).masked_fill(s.padding_mask, 0.0)
    # 6. advantages and returns [D07], advantages whitened over the batch [D08]
    advantages, returns = gae(rewards, s.values, ~s.padding_mask, settings.ppo.gamma, settings.ppo.lam)
    if settings.ppo.whiten_advantages:
        advantages = masked_whiten(advantages, ~s.padding_mask).masked_fill(s.padding_mask, 0.0)
    return Rollout(
        s.query_responses,
        s.attention_mask,
        s.context_length,
        s.responses,
        s.padding_mask,
        s.logprobs,
        s.ref_logprobs,
        s.values,
        s.kl,
        s.raw_scores,
        s.scores,
        rewards,
        advantages,
        returns,
        s.texts,
        s.layer_inputs,
    )


def ppo_update(
    model,
    optimizer,
    scheduler,
    accelerator,
    batch: Rollout,
    settings: RLConfig,
    generator: torch.Generator,
    step: int,
) -> dict[str, float]:
    """PPO's epochs of clipped updates over the rollout (rlaif.rl.update.update); each micro-batch's
    masked means are weighted by its share of the minibatch's real tokens, so the accumulated loss is
    the minibatch's token mean whatever the micro-batching [D47]."""
    real = (~batch.padding_mask).sum(1)  # (B,) real response tokens
    return update(model, optimizer, scheduler, accelerator, batch, settings, generator, step, _micro_batch_loss, real)


def _micro_batch_loss(model, batch: Rollout, mb_inds: torch.Tensor, settings: RLConfig) -> tuple[torch.Tensor, dict]:
    """Clipped policy loss [D10] + vf_coef * clipped value loss [D11], from one batched forward."""
    mb_padding = batch.padding_mask[mb_inds]
    mb_mask = ~mb_padding
    logits, new_logprobs, vpred = micro_batch_forward(model, batch, mb_inds, settings.temperature)
    vpred = vpred.masked_fill(mb_padding, 0.0)
    ppo = settings.ppo
    pg_loss, pg_stats = policy_loss(
        new_logprobs, batch.logprobs[mb_inds], batch.advantages[mb_inds], mb_mask, ppo.cliprange
    )
    vf_loss, vf_stats = value_loss(vpred, batch.values[mb_inds], batch.returns[mb_inds], mb_mask, ppo.cliprange_value)
    loss = pg_loss + ppo.vf_coef * vf_loss
    with torch.no_grad():
        stats = {
            "policy/approxkl": pg_stats["approxkl"],
            "policy/clipfrac": pg_stats["clipfrac"],
            "policy/ratio": pg_stats["ratio"],
            "policy/entropy": masked_mean(entropy_from_logits(logits), mb_mask),
            "loss/policy": pg_loss.detach(),
            "loss/value": vf_loss.detach(),
            "loss/total": loss.detach(),
            "val/clipfrac": vf_stats["vf_clipfrac"],
            "val/vpred": masked_mean(vpred, mb_mask),
        }
    return loss, stats
