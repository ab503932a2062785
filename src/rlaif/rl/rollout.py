"""What PPO, RLOO and GRPO share of a rollout: sample, truncate, score, and the log-probs of the
policy and the reference; and the batch layout the updates read (`Rollout`, micro-batches).

The steps are numbered as in the reference ppo.py (Huang et al. 2024, arXiv 2403.17031;
vwxyzjn/summarize_from_feedback_details @ 3f14a17); [Dxx] are docs/implementation_details.md.
`sample_and_score` does steps 1-4 and the per-token KL estimate; each algorithm turns the result
into advantages (rlaif.rl.ppo: KL-shaped rewards and GAE; rlaif.rl.critic_free: group baselines).
Every forward runs inside the accelerator's autocast, in one precision [D50].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlaif.config import RLConfig
from rlaif.rl.gae import kl_penalty, penalize_missing_eos
from rlaif.rl.losses import logprobs_from_logits
from rlaif.rl.masking import contains_eos, response_padding_mask, sequence_lengths, truncate_response
from rlaif.rl.policy import RLModels
from rlaif.rl.rewards import whole_runs
from rlaif.rl.sampling import sample

INVALID_LOGPROB = 1.0  # reference: a log-prob that cannot occur marks the padding positions


@dataclass
class Rollout:
    """One rollout batch: everything the update reads, all on the run's device. RLOO and GRPO rows
    come in groups of `group_size` consecutive rows, the samples of one prompt [D51]."""

    query_responses: torch.Tensor  # (B, L) left-padded query, then the truncated response
    attention_mask: torch.Tensor  # (B, L)
    context_length: int
    responses: torch.Tensor  # (B, T) pad after the first EOS
    padding_mask: torch.Tensor  # (B, T) True after the first EOS
    logprobs: torch.Tensor  # (B, T) policy at rollout time
    ref_logprobs: torch.Tensor  # (B, T)
    values: torch.Tensor | None  # (B, T) PPO's critic; None without one (RLOO, GRPO)
    kl: torch.Tensor  # (B, T) per-token estimate, 0 at padding
    raw_scores: torch.Tensor  # (B,) reward source output
    scores: torch.Tensor  # (B,) after the missing-EOS penalty
    rewards: torch.Tensor  # PPO (B, T) KL-shaped per-token rewards; RLOO (B,) score - beta KL; GRPO (B,) scores
    advantages: torch.Tensor  # PPO (B, T) per token; RLOO and GRPO (B,) one per sequence
    returns: torch.Tensor | None  # (B, T) PPO's value targets; None without a critic
    texts: list[str]
    layer_inputs: torch.Tensor | None = None  # (B, L-1, H) lean: inputs of the first adapted layer [D48]


@dataclass
class Scored:
    """Steps 1-4 of a rollout and the per-token KL: what every algorithm starts from."""

    query_responses: torch.Tensor
    attention_mask: torch.Tensor
    context_length: int
    responses: torch.Tensor
    padding_mask: torch.Tensor
    sequence_lengths: torch.Tensor  # (B,) index of the last real token [D03]
    logprobs: torch.Tensor  # (B, T), INVALID_LOGPROB at padding
    ref_logprobs: torch.Tensor  # (B, T), INVALID_LOGPROB at padding
    values: torch.Tensor | None  # (B, T), 0 at padding; None without a critic
    kl: torch.Tensor  # (B, T) settings.kl_estimator, 0 at padding [D05]
    raw_scores: torch.Tensor
    scores: torch.Tensor
    texts: list[str]
    layer_inputs: torch.Tensor | None


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
    """Row order of an epoch of updates [D10]: the rollout's own order in the first (its prompts were
    drawn shuffled), so the rollout can compute the first epoch's exact micro-batches ahead [D50]; a
    fresh shuffle from `generator` (on `device`) in every later one."""
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The update's forward over `rows`: logits / temperature (b, T, V) and values (b, T), None
    without a critic. The left-padding columns every one of these rows has are dropped first:
    positions come from the mask [D01], so the result is the same, on fewer tokens."""
    attention_mask = attention_mask[rows]
    trim = int((attention_mask[:, :context_length] == 0).all(0).long().cumprod(0).sum())
    return model(
        query_responses[rows, trim:],
        attention_mask[:, trim:],
        context_length - trim,
        temperature,
        layer_inputs[rows, trim:] if layer_inputs is not None else None,
    )


def micro_batch_forward(
    model, batch: Rollout, rows: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """policy_forward over a micro-batch of the rollout: (logits (b, T, V), log-probs of its sampled
    tokens (b, T), INVALID_LOGPROB on padding, values (b, T) or None without a critic)."""
    logits, values = policy_forward(
        model, batch.query_responses, batch.attention_mask, batch.context_length, batch.layer_inputs, rows, temperature
    )
    logprobs = logprobs_from_logits(logits, batch.responses[rows]).masked_fill(
        batch.padding_mask[rows], INVALID_LOGPROB
    )
    return logits, logprobs, values


def sample_and_score(
    models: RLModels, tokenizer, queries, query_mask, prompts: list[str], settings: RLConfig, generator
) -> Scored:
    """Steps 1-4 for left-padded `queries` (B, Lq) and their `prompts` texts, and the per-token KL;
    call inside torch.no_grad() and models.autocast()."""
    eos, pad, ctx = tokenizer.eos_token_id, tokenizer.pad_token_id, queries.size(1)
    policy_value = models.trainable
    critic = policy_value.value_head is not None
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
        group_size=settings.group_size,  # RLOO and GRPO: each prompt's k rows read it once [D56]
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
    k = whole_runs(settings.group_size, settings.forward_batch_size)  # only whole groups per chunk share
    ref_logprobs = _chunked(
        lambda q, a, r, *h: models.ref_logprobs(q, a, ctx, r, settings.temperature, *h, group_size=k),
        settings.forward_batch_size,
        query_responses,
        attention_mask,
        responses,
        *saved,
    )
    values = None
    if models.full_precision:
        logprobs = samples.logprobs
        if critic:
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
        logprobs = torch.empty_like(samples.logprobs)
        values = torch.empty_like(samples.logprobs) if critic else None
        order = epoch_order(0, queries.size(0), generator, queries.device)
        prompt_len = query_mask.sum(1)  # (B,) as the update reads it
        for minibatch in micro_batches(order, prompt_len, settings.ppo.num_minibatches, settings.ppo.micro_batch_size):
            for rows in minibatch:
                logits, row_values = policy_forward(
                    policy_value, query_responses, attention_mask, ctx, samples.layer_inputs, rows, settings.temperature
                )
                logprobs[rows] = logprobs_from_logits(logits, responses[rows])
                if critic:
                    values[rows] = row_values
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    texts = [t.strip() for t in texts]
    raw_scores = models.reward(
        query_responses,
        attention_mask,
        ctx + seq_len,
        prompts,
        texts,
        context_length=ctx,
        group_size=settings.group_size,
    ).float()
    # 4. a response that never ends is penalised [D04]
    scores = penalize_missing_eos(raw_scores, contains_eos(responses, eos), settings.missing_eos_penalty)
    # the per-token KL estimate [D05]; padding holds no log-prob, value or KL
    logprobs = logprobs.masked_fill(padding_mask, INVALID_LOGPROB)
    ref_logprobs = ref_logprobs.masked_fill(padding_mask, INVALID_LOGPROB)
    if values is not None:
        values = values.masked_fill(padding_mask, 0.0)
    kl = kl_penalty(logprobs, ref_logprobs, settings.kl_estimator).masked_fill(padding_mask, 0.0)
    return Scored(
        query_responses,
        attention_mask,
        ctx,
        responses,
        padding_mask,
        seq_len,
        logprobs,
        ref_logprobs,
        values,
        kl,
        raw_scores,
        scores,
        texts,
        samples.layer_inputs,
    )
