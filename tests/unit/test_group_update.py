"""The real RLOO / GRPO rollout + update on the tiny model: no critic is built, the rollout's groups
and advantages, the first epoch's ratio of 1, the direction of one step, micro-batching."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from accelerate import Accelerator

from rlaif.config import GRPOConfig, LoraSettings, PPOSettings, RLOOConfig
from rlaif.models import embedded_folder, load_tokenizer
from rlaif.reward.model import build_reward_model
from rlaif.rl.build import build_rl_models
from rlaif.rl.critic_free import group_rollout, group_update
from rlaif.rl.group import grpo_advantages, rloo_advantages
from rlaif.rl.losses import logprobs_from_logits
from tests.unit.test_ppo_update import PROMPTS, encode

K = 2


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory) -> str:
    """A tiny-random reward model (fresh scalar head) saved as the reward stage saves one."""
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder)
    out = tmp_path_factory.mktemp("reward") / "model"
    build_reward_model(folder, tokenizer, seed=1).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return str(out)


def group_setup(reward_model_dir: str, algorithm: str, mode: str, **ppo_overrides):
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder, padding_side="left")
    ppo = dataclasses.replace(PPOSettings(learning_rate=1e-2, ppo_epochs=1), **ppo_overrides)
    section = RLOOConfig if algorithm == "rloo" else GRPOConfig
    settings = section(mode=mode, lora=LoraSettings(enabled=True, r=8), group_size=K, response_length=8,
                       rollout_batch_size=2, total_episodes=16, forward_batch_size=2, heldout_posts=0, ppo=ppo)  # fmt: skip
    torch.manual_seed(0)
    models = build_rl_models(settings, folder, reward_model_dir, None, tokenizer, Accelerator(cpu=True))
    return models, tokenizer, settings


def grouped_rollout(models, tokenizer, settings):
    prompts = [p for p in PROMPTS[:2] for _ in range(K)]  # each prompt K times in a row, as the trainer does
    queries, mask = encode(tokenizer, prompts)
    return group_rollout(models, tokenizer, queries, mask, prompts, settings, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["lean", "standard"])
@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_no_critic_and_group_advantages(reward_model_dir, algorithm, mode):
    models, tokenizer, settings = group_setup(reward_model_dir, algorithm, mode)
    assert models.trainable.value_head is None and models.trainable.value_model is None
    assert not any("value" in name for name, _ in models.trainable.named_parameters())
    r = grouped_rollout(models, tokenizer, settings)
    assert r.values is None and r.returns is None and r.advantages.shape == (2 * K,)
    real = ~r.padding_mask
    if algorithm == "rloo":  # score - beta x summed k1 KL, then leave-one-out
        kl = ((r.logprobs - r.ref_logprobs) * real).sum(1)
        torch.testing.assert_close(r.rewards, r.scores - settings.kl_coef * kl)
        torch.testing.assert_close(r.advantages, rloo_advantages(r.rewards, K))
    else:  # the scores alone, normalised in their group
        torch.testing.assert_close(r.advantages, grpo_advantages(r.scores, K))
    if mode == "standard":  # the policy starts as SFT: its samples' KL to the reference is ~0
        assert r.kl.abs().max() < 1e-4


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_first_epoch_is_on_policy_and_one_step_follows_the_advantage(reward_model_dir, algorithm):
    models, tokenizer, settings = group_setup(reward_model_dir, algorithm, "lean", micro_batch_size=2)
    r = grouped_rollout(models, tokenizer, settings)
    real = ~r.padding_mask
    r.advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])  # the first sample of each prompt good, the second bad
    pv = models.trainable
    optimizer = torch.optim.AdamW([p for p in pv.parameters() if p.requires_grad], lr=settings.ppo.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def response_logprob():
        with torch.no_grad():
            logits, values = pv(r.query_responses, r.attention_mask, r.context_length, settings.temperature)
            assert values is None
            return (logprobs_from_logits(logits, r.responses) * real).sum(1)

    before = response_logprob()
    torch.testing.assert_close(before, (r.logprobs * real).sum(1), atol=1e-4, rtol=0)  # sampling = forward
    stats = group_update(pv, optimizer, scheduler, Accelerator(cpu=True), r, settings, torch.Generator(), step=0)
    after = response_logprob()
    assert (after[0::2] > before[0::2]).all() and (after[1::2] < before[1::2]).all(), (before, after)
    assert stats["policy/clipfrac"] == 0.0 and abs(stats["policy/ratio"] - 1.0) < 1e-4  # ratio 1 in the first epoch
    assert ("loss/kl" in stats) == (algorithm == "grpo") and "loss/value" not in stats


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_micro_batching_changes_only_float_rounding(reward_model_dir, algorithm):
    """Sequences weigh the same whatever the micro-batches: one micro-batch of 4 and four of 1 give
    the same weights after two epochs (the second reshuffled)."""
    weights = []
    for micro in (4, 1):
        models, tokenizer, settings = group_setup(reward_model_dir, algorithm, "lean", micro_batch_size=micro,
                                                  ppo_epochs=2, learning_rate=1e-3)  # fmt: skip
        r = grouped_rollout(models, tokenizer, settings)
        pv = models.trainable
        params = [p for p in pv.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=settings.ppo.learning_rate)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        group_update(pv, optimizer, scheduler, Accelerator(cpu=True), r, settings, torch.Generator().manual_seed(3), 0)
        weights.append([p.detach().clone() for p in params])
    for a, b in zip(*weights):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
