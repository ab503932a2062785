"""The real PPO rollout + update code on the tiny model: direction of one step, NaN stop, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch
from accelerate import Accelerator

from rlaif.config import LoraSettings, PPOSettings, RLConfig
from rlaif.models import embedded_folder, load_tokenizer
from rlaif.reward.model import build_reward_model
from rlaif.rl.build import build_rl_models
from rlaif.rl.checkpoint import checkpoint_dirs, load_checkpoint
from rlaif.rl.losses import logprobs_from_logits
from rlaif.rl.ppo import NonFiniteLossError, ppo_update, rollout
from rlaif.rl.trainer import PPOTrainer

PROMPTS = [
    "SUBREDDIT: r/cooking\n\nTITLE: Burnt rice\n\nPOST: Every time I cook rice the bottom burns. What am I doing wrong?\n\nTL;DR:",
    "SUBREDDIT: r/running\n\nPOST: I started running last month and my knees hurt after 5k. Should I stop?\n\nTL;DR:",
    "POST: My landlord wants to raise the rent by 30% with two weeks notice. Is that legal here?\n\nTL;DR:",
    "POST: I keep forgetting to water my plants and they all die. Any tips for a lazy gardener?\n\nTL;DR:",
]


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory) -> str:
    """A tiny-random reward model (fresh scalar head) saved as the reward stage saves one."""
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder)
    out = tmp_path_factory.mktemp("reward") / "model"
    build_reward_model(folder, tokenizer, seed=1).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return str(out)


def tiny_setup(reward_model_dir: str, mode: str, **ppo_overrides):
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder, padding_side="left")
    ppo = dataclasses.replace(PPOSettings(learning_rate=1e-2, ppo_epochs=1), **ppo_overrides)
    rl = RLConfig(
        mode=mode,
        lora=LoraSettings(enabled=True, r=8),
        response_length=8,
        rollout_batch_size=4,
        total_episodes=16,
        forward_batch_size=2,
        save_steps=2,
        sample_steps=1,
        heldout_posts=0,
        ppo=ppo,
    )
    torch.manual_seed(0)
    models = build_rl_models(rl, folder, reward_model_dir, None, tokenizer, Accelerator(cpu=True))
    return models, tokenizer, rl


def encode(tokenizer, prompts):
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return batch.input_ids, batch.attention_mask


@pytest.mark.parametrize("mode", ["lean", "standard"])
def test_one_step_raises_logprobs_of_positive_advantage_tokens(reward_model_dir, mode):
    models, tokenizer, rl = tiny_setup(reward_model_dir, mode, vf_coef=0.0, micro_batch_size=2)
    queries, mask = encode(tokenizer, PROMPTS)
    r = rollout(models, tokenizer, queries, mask, PROMPTS, rl, torch.Generator().manual_seed(0))
    real = ~r.padding_mask
    assert real.any(1).all() and torch.isfinite(r.advantages).all()
    # a fixed batch: the first two responses were good, the last two bad
    r.advantages = torch.tensor([1.0, 1.0, -1.0, -1.0]).unsqueeze(1).expand_as(r.advantages) * real
    pv = models.trainable
    optimizer = torch.optim.AdamW([p for p in pv.parameters() if p.requires_grad], lr=rl.ppo.learning_rate, eps=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def response_logprob():  # summed over each response's real tokens, (B,)
        with torch.no_grad():
            logits, _ = pv(r.query_responses, r.attention_mask, r.context_length, rl.temperature)
            return (logprobs_from_logits(logits, r.responses) * real).sum(1)

    before = response_logprob()
    torch.testing.assert_close(before, (r.logprobs * real).sum(1), atol=1e-4, rtol=0)  # sampling = forward
    stats = ppo_update(pv, optimizer, scheduler, Accelerator(cpu=True), r, rl, torch.Generator().manual_seed(0), step=0)
    after = response_logprob()
    assert (after[:2] > before[:2]).all(), (before, after)
    assert (after[2:] < before[2:]).all(), (before, after)
    assert stats["policy/clipfrac"] == 0.0 and abs(stats["policy/ratio"] - 1.0) < 1e-4  # one epoch: on-policy


def test_nan_loss_stops_and_keeps_last_good_checkpoint(reward_model_dir, tmp_path):
    models, tokenizer, rl = tiny_setup(reward_model_dir, "lean")
    prompts = [{"id": str(i), "prompt": p} for i, p in enumerate(PROMPTS)]
    trainer = PPOTrainer(models, tokenizer, prompts, rl, tmp_path, seed=0, accelerator=Accelerator(cpu=True))
    trainer.train(max_steps=2)  # checkpoint after step 2
    good = checkpoint_dirs(tmp_path / "checkpoints")
    assert [d.name for d in good] == ["step-2"]
    with torch.no_grad():
        models.trainable.value_head.weight.fill_(float("nan"))  # the critic diverged
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at PPO step 3.*last good checkpoint kept: .*step-2"):
        trainer.train()
    assert [d.name for d in checkpoint_dirs(tmp_path / "checkpoints")] == ["step-2"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    # the kept checkpoint is sound: it loads back finite weights
    step = load_checkpoint(good[0], models.trainable, trainer.optimizer, trainer.scheduler, trainer.generators, 0, 1)
    assert step == 2 and torch.isfinite(models.trainable.value_head.weight).all()


def test_micro_batching_changes_only_float_rounding(reward_model_dir):
    """Token-weighted accumulation [D47]: one micro-batch of 4 == four of 1 (trimmed, regrouped)."""
    results = []
    for micro in (4, 1):
        models, tokenizer, rl = tiny_setup(
            reward_model_dir, "lean", micro_batch_size=micro, ppo_epochs=2, num_minibatches=1
        )
        queries, mask = encode(tokenizer, PROMPTS)
        r = rollout(models, tokenizer, queries, mask, PROMPTS, rl, torch.Generator().manual_seed(0))
        pv = models.trainable
        optimizer = torch.optim.AdamW([p for p in pv.parameters() if p.requires_grad], lr=1e-2, eps=1e-5)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        stats = ppo_update(
            pv, optimizer, scheduler, Accelerator(cpu=True), r, rl, torch.Generator().manual_seed(0), step=0
        )
        results.append(({n: p.detach().clone() for n, p in pv.named_parameters() if p.requires_grad}, stats))
    (w4, s4), (w1, s1) = results
    # Adam divides by sqrt(v): where a gradient is near zero, its rounding noise becomes a step of
    # up to ~lr, so weights get a looser bound than the losses
    for name in w4:
        torch.testing.assert_close(w1[name], w4[name], atol=1e-4, rtol=1e-3)
    for key in ("loss/policy", "loss/value", "policy/approxkl"):
        assert abs(s1[key] - s4[key]) < 1e-4, key


def test_shared_layers_are_computed_once_and_reused_exactly(reward_model_dir):
    """lean [D48]: the top of the stack run from the layer inputs saved while sampling gives the
    full forward's logits, values and reference log-probs."""
    models, tokenizer, rl = tiny_setup(
        reward_model_dir, "lean"
    )  # tiny-random has 2 layers: layer 0 shared, layer 1 adapted
    pv = models.trainable
    assert pv.shared_layers == 1
    assert not any(p.requires_grad for n, p in pv.policy.named_parameters() if ".layers.0." in n)
    with torch.no_grad():  # an adapter that is not the identity
        for name, p in pv.policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    queries, mask = encode(tokenizer, PROMPTS)
    r = rollout(models, tokenizer, queries, mask, PROMPTS, rl, torch.Generator().manual_seed(0))
    L = r.query_responses.size(1)
    assert r.layer_inputs.shape == (4, L - 1, pv.value_head.in_features)
    with torch.no_grad():
        full_logits, full_values = pv(r.query_responses, r.attention_mask, r.context_length, rl.temperature)
        top_logits, top_values = pv(
            r.query_responses, r.attention_mask, r.context_length, rl.temperature, r.layer_inputs
        )
    torch.testing.assert_close(top_logits, full_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(top_values, full_values, atol=1e-4, rtol=1e-4)
    ref_full = models.ref_logprobs(r.query_responses, r.attention_mask, r.context_length, r.responses, rl.temperature)
    torch.testing.assert_close(r.ref_logprobs, ref_full.masked_fill(r.padding_mask, 1.0), atol=1e-4, rtol=1e-4)


def test_rerun_without_a_checkpoint_starts_its_logs_over(reward_model_dir, tmp_path):
    """A run killed after logging step 1 but before its first checkpoint reruns from step 0: its logs
    must not keep the killed run's rows next to the new ones [D44]."""
    prompts = [{"id": str(i), "prompt": p} for i, p in enumerate(PROMPTS)]
    for _ in range(2):  # the killed run, then the rerun (no checkpoint: save_steps=2, one step each)
        models, tokenizer, rl = tiny_setup(reward_model_dir, "lean")
        trainer = PPOTrainer(models, tokenizer, prompts, rl, tmp_path, seed=0, accelerator=Accelerator(cpu=True))
        assert trainer.resume() is None
        trainer.train(max_steps=1)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]
    assert [r["step"] for r in map(json.loads, (tmp_path / "samples.jsonl").read_text().splitlines())] == [1, 1]


def test_sampling_hands_over_its_kv_cache_under_the_current_name(reward_model_dir):
    """transformers 5.x renamed `past_key_values` to `cache` (the old name warns, and goes in 5.40);
    sampling passes the name the model's forward declares, with the same results [D43]."""
    models, tokenizer, rl = tiny_setup(reward_model_dir, "standard")
    queries, mask = encode(tokenizer, PROMPTS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = rollout(models, tokenizer, queries, mask, PROMPTS, rl, torch.Generator().manual_seed(0))
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    real = ~batch.padding_mask
    with torch.no_grad():
        logits, _ = models.trainable(batch.query_responses, batch.attention_mask, batch.context_length, rl.temperature)
    full = logprobs_from_logits(logits, batch.responses)
    torch.testing.assert_close(batch.logprobs * real, full * real, atol=1e-4, rtol=0)  # the cache was used
