"""One PPO step for summarisation: a rollout, then epochs of clipped updates over it.

The steps are numbered as in the reference ppo.py (Huang et al. 2024, arXiv 2403.17031;
vwxyzjn/summarize_from_feedback_details @ 3f14a17); [Dxx] are docs/implementation_details.md.
    rollout: 1 sample -> 2 truncate -> 3 reference / value / score passes -> 4 EOS penalty
             -> 5 KL-shaped rewards -> 6 GAE advantages and returns
    update:  epochs -> shuffled minibatches (one optimizer step each) -> micro-batches
Both run every forward inside the accelerator's autocast, in one precision [D50].
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from rlaif.config import RLConfig
from rlaif.rl import NonFiniteLossError
from rlaif.rl.gae import gae, kl_penalty, kl_shaped_rewards, penalize_missing_eos
from rlaif.rl.losses import entropy_from_logits, logprobs_from_logits, policy_loss, value_loss
from rlaif.rl.masking import (
    contains_eos,
    masked_mean,
    masked_whiten,
    response_padding_mask,
    sequence_lengths,
    truncate_response,
)
from rlaif.rl.policy import RLModels
from rlaif.rl.sampling import sample

INVALID_LOGPROB = 1.0  # reference: a log-prob that cannot occur marks the padding positions


@dataclass
class Rollout:
    """One rollout batch: everything the update reads, all on the run's device."""

    query_responses: torch.Tensor  # (B, L) left-padded query, then the truncated response
    attention_mask: torch.Tensor  # (B, L)
    context_length: int
    responses: torch.Tensor  # (B, T) pad after the first EOS
    padding_mask: torch.Tensor  # (B, T) True after the first EOS
    logprobs: torch.Tensor  # (B, T) policy at rollout time
    ref_logprobs: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T)
    kl: torch.Tensor  # (B, T) per-token estimate, 0 at padding
    raw_scores: torch.Tensor  # (B,) reward source output
    scores: torch.Tensor  # (B,) after the missing-EOS penalty
    rewards: torch.Tensor  # (B, T)
    advantages: torch.Tensor  # (B, T)
    returns: torch.Tensor  # (B, T)
    texts: list[str]
    layer_inputs: torch.Tensor | None = None  # (B, L-1, H) lean: inputs of the first adapted layer [D48]


def _chunked(fn, batch_size: int, *tensors: torch.Tensor) -> torch.Tensor:
    """fn over row chunks of `tensors`, concatenated: bounds the memory of no-grad passes."""
    n = tensors[0].size(0)
    return torch.cat([fn(*(t[i : i + batch_size] for t in tensors)) for i in range(0, n, batch_size)])


def micro_batches(
    order: torch.Tensor, prompt_len: torch.Tensor, num_minibatches: int, micro_batch_size: int
) -> list[list[torch.Tensor]]:
    """Rows in `order` (B,) cut into `num_minibatches` minibatches (one optimizer step each), each
    sorted by prompt length (stable) and cut into micro-batches of similar length [D47]."""
    mb_size = order.size(0) // num_minibatches
    minibatches = []
    for start in range(0, order.size(0), mb_size):
        mb = order[start : start + mb_size]
        mb = mb[torch.argsort(prompt_len[mb], stable=True)]
        minibatches.append(list(mb.split(micro_batch_size)))
    return minibatches


def epoch_order(epoch: int, size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Row order of a PPO epoch [D10]: the rollout's own order in the first (its prompts were drawn
    shuffled), so the rollout can compute the first epoch's exact micro-batches ahead [D50]; a fresh
    shuffle from `generator` (on `device`) in every later one."""
    if epoch == 0:
        return torch.arange(size, device=device)
    return torch.randperm(size, generator=generator, device=device)


def policy_forward(
    model,
    query_responses: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
    layer_inputs: torch.Tensor | None,
    rows: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The update's forward over `rows`: logits / temperature (b, T, V) and values (b, T). The
    left-padding columns every one of these rows has are dropped first: positions come from the
    mask [D01], so the result is the same, on fewer tokens."""
    attention_mask = attention_mask[rows]
    trim = int((attention_mask[:, :context_length] == 0).all(0).long().cumprod(0).sum())
    return model(
        query_responses[rows, trim:],
        attention_mask[:, trim:],
        context_length - trim,
        temperature,
        layer_inputs[rows, trim:] if layer_inputs is not None else None,
    )


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
        return _rollout(models, tokenizer, queries, query_mask, prompts, settings, generator)


def _rollout(models: RLModels, tokenizer, queries, query_mask, prompts, settings: RLConfig, generator) -> Rollout:
    eos, pad, ctx = tokenizer.eos_token_id, tokenizer.pad_token_id, queries.size(1)
    policy_value = models.trainable
    # 1. sample with the KV cache; log-probs (and lean values) come with the samples [D01][D43]
    samples = sample(
        policy_value.policy,
        queries,
        query_mask,
        settings.response_length,
        settings.temperature,
        eos,
        pad,
        generator,
        policy_value.value_head if policy_value.values_from_policy else None,
        collect_layer=policy_value.shared_layers,
        merge_lora=models.full_precision,
    )
    # 2. cut after the first EOS [D02]; the last real token is the EOS, or T-1 without one [D03]
    responses = truncate_response(samples.responses, eos, pad)  # (B, T)
    padding_mask = response_padding_mask(responses, eos)
    seq_len = sequence_lengths(responses, eos)
    query_responses = torch.cat([queries, responses], dim=1)  # (B, L)
    attention_mask = torch.cat([query_mask, torch.ones_like(responses)], dim=1)
    # 3. reference log-probs [D05][D14] (lean: from the shared layers' saved output [D48]),
    #    values (standard mode), scores at the EOS [D03]
    saved = (samples.layer_inputs,) if samples.layer_inputs is not None else ()
    ref_logprobs = _chunked(
        lambda q, a, r, *h: models.ref_logprobs(q, a, ctx, r, settings.temperature, *h),
        settings.forward_batch_size,
        query_responses,
        attention_mask,
        responses,
        *saved,
    )
    if models.full_precision:
        logprobs = samples.logprobs
        values = (
            samples.values
            if samples.values is not None
            else _chunked(
                lambda q, a: policy_value.values(q, a, ctx),
                settings.forward_batch_size,
                query_responses,
                attention_mask,
            )
        )
    else:
        # Reduced precision: the sampling loop's numbers differ from the update's forward by rounding
        # (~1e-3), so log-probs and values come from that forward itself, on the first epoch's
        # micro-batches: the first epoch starts at ratio 1 exactly [D50]
        logprobs, values = torch.empty_like(samples.logprobs), torch.empty_like(samples.logprobs)
        order = epoch_order(0, queries.size(0), generator, queries.device)
        prompt_len = query_mask.sum(1)  # (B,) as ppo_update reads it
        for minibatch in micro_batches(order, prompt_len, settings.ppo.num_minibatches, settings.ppo.micro_batch_size):
            for rows in minibatch:
                logits, row_values = policy_forward(
                    policy_value, query_responses, attention_mask, ctx, samples.layer_inputs, rows, settings.temperature
                )
                logprobs[rows], values[rows] = logprobs_from_logits(logits, responses[rows]), row_values
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    texts = [t.strip() for t in texts]
    raw_scores = models.reward(query_responses, attention_mask, ctx + seq_len, prompts, texts).float()
    # 4. a response that never ends is penalised [D04]
    scores = penalize_missing_eos(raw_scores, contains_eos(responses, eos), settings.missing_eos_penalty)
    # 5. per-token KL penalty, score on the last real token [D05][D06]; padding holds no reward or value
    logprobs = logprobs.masked_fill(padding_mask, INVALID_LOGPROB)
    ref_logprobs = ref_logprobs.masked_fill(padding_mask, INVALID_LOGPROB)
    values = values.masked_fill(padding_mask, 0.0)
    kl = kl_penalty(logprobs, ref_logprobs, settings.kl_estimator).masked_fill(padding_mask, 0.0)
    rewards = kl_shaped_rewards(scores, kl, settings.kl_coef, seq_len, padding_mask)
    if settings.whiten_rewards:  # [D09]
        rewards = masked_whiten(rewards, ~padding_mask, shift_mean=False).masked_fill(padding_mask, 0.0)
    # 6. advantages and returns [D07], advantages whitened over the batch [D08]
    advantages, returns = gae(rewards, values, ~padding_mask, settings.ppo.gamma, settings.ppo.lam)
    if settings.ppo.whiten_advantages:
        advantages = masked_whiten(advantages, ~padding_mask).masked_fill(padding_mask, 0.0)
    return Rollout(
        query_responses,
        attention_mask,
        ctx,
        responses,
        padding_mask,
        logprobs,
        ref_logprobs,
        values,
        kl,
        raw_scores,
        scores,
        rewards,
        advantages,
        returns,
        texts,
        samples.layer_inputs,
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
    """`ppo_epochs` passes over the rollout batch, each over shuffled minibatches [D10]; one optimizer
    step per minibatch, accumulated over micro-batches. `model` is the (DDP-wrapped) PolicyAndValue;
    its forwards run inside `accelerator.autocast()`, as the rollout's did [D50]; `generator` (on the
    batch's device) shuffles.

    Each micro-batch's masked means are weighted by its share of the minibatch's real tokens, so
    the accumulated loss is the minibatch's token mean whatever the micro-batching: micro_batch_size
    only changes float rounding [D47]. That frees the grouping: a minibatch is cut into micro-batches
    of similar prompt length, each trimmed to its own longest prompt (less left padding to compute).
    """
    ppo = settings.ppo
    size, device = batch.responses.size(0), batch.responses.device
    prompt_len = batch.attention_mask[:, : batch.context_length].sum(1)  # (B,)
    real = (~batch.padding_mask).sum(1)  # (B,) real response tokens
    sums: dict[str, torch.Tensor] = {}
    model.train()
    for epoch in range(ppo.ppo_epochs):
        order = epoch_order(epoch, size, generator, device)
        for minibatch in micro_batches(order, prompt_len, ppo.num_minibatches, ppo.micro_batch_size):
            mb_tokens = real[torch.cat(minibatch)].sum()
            for k, mb_inds in enumerate(minibatch):
                weight = real[mb_inds].sum() / mb_tokens
                last = k == len(minibatch) - 1
                # DDP averages gradients across processes only on the last micro-batch
                sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
                with sync:
                    with accelerator.autocast():
                        loss, mb_stats = _micro_batch_loss(model, batch, mb_inds, settings)
                    _check_finite(loss, mb_stats, accelerator, step, epoch)
                    accelerator.backward(loss * weight)
                for key, value in mb_stats.items():
                    sums[key] = sums.get(key, 0.0) + value * weight
            if ppo.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), ppo.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    n = ppo.ppo_epochs * ppo.num_minibatches
    return {key: (total / n).item() for key, total in sums.items()}


def _micro_batch_loss(model, batch: Rollout, mb_inds: torch.Tensor, settings: RLConfig) -> tuple[torch.Tensor, dict]:
    """Clipped policy loss [D10] + vf_coef * clipped value loss [D11], from one batched forward."""
    mb_responses, mb_padding = batch.responses[mb_inds], batch.padding_mask[mb_inds]
    mb_mask = ~mb_padding
    logits, vpred = policy_forward(
        model,
        batch.query_responses,
        batch.attention_mask,
        batch.context_length,
        batch.layer_inputs,
        mb_inds,
        settings.temperature,
    )
    new_logprobs = logprobs_from_logits(logits, mb_responses).masked_fill(mb_padding, INVALID_LOGPROB)  # (b, T)
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


def _check_finite(loss: torch.Tensor, stats: dict, accelerator, step: int, epoch: int) -> None:
    """Stop every process together on a NaN/inf loss (one process raising alone would leave the
    others waiting in the gradient all-reduce)."""
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item() > 0:
        parts = {k: stats[k].item() for k in ("loss/policy", "loss/value")}
        raise NonFiniteLossError(
            f"non-finite loss at PPO step {step + 1}, epoch {epoch + 1} (policy loss {parts['loss/policy']}, "
            f"value loss {parts['loss/value']}, on some process); nothing from this step was saved. "
            "Lower rl.ppo.learning_rate or set rl.ppo.max_grad_norm and rerun"
        )
