"""Lean mode with a LoRA-trained RM on the SFT base: the RM runs as a second adapter [D40]."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from rlaif.config import LoraSettings, RLConfig
from rlaif.models import embedded_folder, load_tokenizer
from rlaif.reward.model import build_reward_model
from rlaif.rl.build import build_rl_models
from rlaif.rl.rewards import RewardModelReward, SharedBaseReward, shared_base_adapter
from rlaif.training import apply_lora

PROMPTS = [
    "POST: My cat ignores me unless I open a can. Normal?\n\nTL;DR:",
    "POST: Rent went up 30%, should I move?\n\nTL;DR:",
]


def test_rm_adapter_on_the_policy_base_scores_like_the_merged_rm(tmp_path):
    sft = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(sft, padding_side="left")
    # a LoRA-trained RM as the reward stage saves it: adapter/ beside the merged model/
    rm = apply_lora(build_reward_model(sft, tokenizer, seed=3), LoraSettings(enabled=True, r=4), "SEQ_CLS")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in rm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained adapter is not the identity
    rm.save_pretrained(tmp_path / "reward" / "adapter")
    merged = rm.merge_and_unload()
    merged.config.reward_bias = 0.3
    merged.save_pretrained(tmp_path / "reward" / "model")
    tokenizer.save_pretrained(tmp_path / "reward" / "model")
    adapter = shared_base_adapter(str(tmp_path / "reward" / "model"), sft)
    assert adapter == tmp_path / "reward" / "adapter"
    assert shared_base_adapter(str(tmp_path / "reward" / "model"), str(tmp_path)) is None  # another base

    rl = RLConfig(mode="lean", lora=LoraSettings(enabled=True, r=8), forward_batch_size=1)
    torch.manual_seed(0)
    models = build_rl_models(rl, sft, str(tmp_path / "reward" / "model"), None, tokenizer, Accelerator(cpu=True))
    policy = models.trainable.policy
    with torch.no_grad():  # a policy adapter that is not the identity either
        for name, p in policy.named_parameters():
            if "lora_B" in name and f".{policy.active_adapter}." in name:
                p.normal_(0, 0.5)
    shared = models.reward  # the builder found adapter/ beside the RM and made it a second adapter
    assert isinstance(shared, SharedBaseReward)
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    qr, mask = batch.input_ids, batch.attention_mask
    last = torch.full((2,), qr.size(1) - 1)
    trainable_before = {n for n, p in policy.named_parameters() if p.requires_grad}
    with torch.no_grad():
        logits_before, _ = models.trainable(qr, mask, 2, 1.0)
    scores = shared(qr, mask, last, PROMPTS, ["", ""])
    separate = RewardModelReward(merged.eval(), tokenizer, tokenizer, 2)(qr, mask, last, PROMPTS, ["", ""])
    torch.testing.assert_close(scores, separate, atol=1e-4, rtol=1e-4)
    # the switch back restores the policy: same trainable set, same outputs
    assert {n for n, p in policy.named_parameters() if p.requires_grad} == trainable_before
    assert not any("reward" in n for n in trainable_before)
    with torch.no_grad():
        logits_after, _ = models.trainable(qr, mask, 2, 1.0)
    torch.testing.assert_close(logits_after, logits_before)
