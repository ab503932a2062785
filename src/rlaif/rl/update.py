"""The update loop PPO, RLOO and GRPO share: epochs of shuffled minibatches over one rollout, one
optimizer step per minibatch, accumulated over micro-batches; only the micro-batch loss and what a
row weighs differ (rlaif.rl.ppo: tokens; rlaif.rl.critic_free: sequences)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from rlaif.config import RLConfig
from rlaif.rl import NonFiniteLossError
from rlaif.rl.rollout import Rollout, epoch_order, micro_batches

# (model, rollout, micro-batch rows, settings) -> (the micro-batch's mean loss, its stats)
MicroBatchLoss = Callable[[torch.nn.Module, Rollout, torch.Tensor, RLConfig], tuple[torch.Tensor, dict]]


def update(
    model,
    optimizer,
    scheduler,
    accelerator,
    batch: Rollout,
    settings: RLConfig,
    generator: torch.Generator,
    step: int,
    micro_batch_loss: MicroBatchLoss,
    row_weights: torch.Tensor,
) -> dict[str, float]:
    """`ppo_epochs` passes over the rollout batch, each over shuffled minibatches [D10]; one optimizer
    step per minibatch, accumulated over micro-batches. `model` is the (DDP-wrapped) PolicyAndValue;
    its forwards run inside `accelerator.autocast()`, as the rollout's did [D50]; `generator` (on the
    batch's device) shuffles.

    `micro_batch_loss` returns the mean over its rows of what a row weighs in `row_weights` (B,):
    a token mean for PPO (weights = real tokens), a sequence mean for RLOO and GRPO (weights = 1).
    Each micro-batch is weighted by its share of the minibatch's weight, so the accumulated loss is
    the minibatch's mean whatever the micro-batching: micro_batch_size only changes float rounding
    [D47]. That frees the grouping: a minibatch is cut into micro-batches of similar prompt length,
    each trimmed to its own longest prompt (less left padding to compute).
    """
    ppo = settings.ppo
    size, device = batch.responses.size(0), batch.responses.device
    prompt_len = batch.attention_mask[:, : batch.context_length].sum(1)  # (B,)
    row_weights = row_weights.to(torch.float32)
    sums: dict[str, torch.Tensor] = {}
    model.train()
    for epoch in range(ppo.ppo_epochs):
        order = epoch_order(epoch, size, generator, device)
        for minibatch in micro_batches(order, prompt_len, ppo.num_minibatches, ppo.micro_batch_size):
            mb_weight = row_weights[torch.cat(minibatch)].sum()
            for k, mb_inds in enumerate(minibatch):
                weight = row_weights[mb_inds].sum() / mb_weight
                last = k == len(minibatch) - 1
                # DDP averages gradients across processes only on the last micro-batch
                sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
                with sync:
                    with accelerator.autocast():
                        loss, mb_stats = micro_batch_loss(model, batch, mb_inds, settings)
                    _check_finite(loss, mb_stats, accelerator, step, epoch, settings.algorithm)
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


def _check_finite(loss: torch.Tensor, stats: dict, accelerator, step: int, epoch: int, algorithm: str) -> None:
    """Stop every process together on a NaN/inf loss (one process raising alone would leave the
    others waiting in the gradient all-reduce) [D46]."""
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item() > 0:
        parts = ", ".join(
            f"{key.split('/')[1]} loss {stats[key].item()}"
            for key in ("loss/policy", "loss/value", "loss/kl")
            if key in stats
        )
        raise NonFiniteLossError(
            f"non-finite loss at {algorithm.upper()} step {step + 1}, epoch {epoch + 1} ({parts}, on some process); "
            "nothing from this step was saved. Lower the learning rate (ppo.learning_rate of the stage's section) "
            "or set ppo.max_grad_norm and rerun"
        )
