"""The real DPO step on the tiny model: direction of a step, micro-batching, and OAIF's label reuse on resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from accelerate import Accelerator

from rlaif.config import DPOConfig, LoraSettings, OAIFConfig
from rlaif.dpo.losses import soft_dpo_loss
from rlaif.dpo.online import OnlineDPOTrainer
from rlaif.dpo.sequences import encode_pairs, pack, pair_logprobs
from rlaif.dpo.trainer import DPOStep, MicroBatch, OfflineDPOTrainer
from rlaif.models import embedded_folder, load_causal_lm, load_tokenizer
from rlaif.training import apply_lora


def _pair(i: int) -> dict:
    """The short summary is the preferred one, on either side: a consistent preference one step can learn."""
    short, long = ("rice burns" if i % 2 else "pasta is fine"), "a long summary that rambles on " * (1 + i % 3)
    p_a = [1.0, 0.8, 0.0, 0.6][i % 4]
    a, b = (short, long) if p_a > 0.5 else (long, short)
    return {
        "id": f"p{i}",
        "prompt": f"POST: question number {i} about cooking rice and pasta.\n\nTL;DR:",
        "summary_a": a,
        "summary_b": b,
        "p_a": p_a,
    }


PAIRS = [_pair(i) for i in range(8)]  # fmt: skip


def tiny_policy(lora: bool):
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder)
    torch.manual_seed(0)
    policy = load_causal_lm(folder, tokenizer)
    if lora:
        policy.requires_grad_(False)
        policy = apply_lora(policy, LoraSettings(enabled=True, r=4), task_type="CAUSAL_LM")
    return policy, tokenizer


def settings(**kw) -> DPOConfig:
    base = DPOConfig(arms=["rlaif"], batch_size=8, micro_batch_size=8, learning_rate=1e-2, warmup_ratio=0.0,
                     max_response_tokens=12, max_grad_norm=None)  # fmt: skip
    return dataclasses.replace(base, **kw)


def margins(policy, tokenizer, ref_logps) -> torch.Tensor:
    encoded = encode_pairs(tokenizer, PAIRS, 12)
    with torch.no_grad():
        logps = pair_logprobs(policy, pack(encoded, tokenizer.pad_token_id, "cpu"))
        a, b = logps[:, 0], logps[:, 1]
    return (a - ref_logps[:, 0]) - (b - ref_logps[:, 1])


@pytest.mark.parametrize("lora", [False, True])
def test_one_step_moves_the_margin_towards_each_label(tmp_path, lora):
    policy, tokenizer = tiny_policy(lora)
    trainer = OfflineDPOTrainer(policy, tokenizer, PAIRS, settings(max_steps=1), tmp_path, 0, Accelerator(cpu=True))
    trainer.load_reference(None if lora else policy)
    assert (tmp_path / "reference_logprobs.jsonl").read_text().count("\n") == len(PAIRS)
    before = margins(trainer.update.policy, tokenizer, trainer.ref_logps)
    torch.testing.assert_close(before, torch.zeros(len(PAIRS)), atol=1e-5, rtol=0)  # policy == reference at start
    last = trainer.train()
    after = margins(trainer.update.policy, tokenizer, trainer.ref_logps)
    p = torch.tensor([x["p_a"] for x in PAIRS])
    # gradient descent on -[p log s(bD) + (1-p) log s(-bD)] at D = 0 moves D along sign(p - 1/2)
    moved = [(a > 0) == (pa > 0.5) for a, pa in zip(after.tolist(), p.tolist())]
    assert all(moved), (after, p)
    loss_after = soft_dpo_loss(after, torch.zeros(8), p, 0.5).mean().item()
    assert loss_after < last["loss/dpo"]
    assert last["step"] == 1 and abs(last["loss/dpo"] - 0.693147) < 1e-4 and last["pairs_in_loss"] == 8


def test_micro_batching_changes_only_float_rounding():
    """Each micro-batch's loss is summed and divided by the global batch's pairs: 1 x 8 == 4 x 2. [P05]"""
    results = []
    for micro in (8, 2):
        policy, tokenizer = tiny_policy(lora=False)
        update = DPOStep(policy, settings(micro_batch_size=micro), 1, Accelerator(cpu=True), tokenizer.pad_token_id)
        encoded = encode_pairs(tokenizer, PAIRS, 12)
        ref = update.reference_logprobs(encoded, policy, 4)
        p = torch.tensor([x["p_a"] for x in PAIRS])
        batches = [MicroBatch(encoded[i : i + micro], p[i : i + micro], ref[i : i + micro], torch.ones(len(encoded[i : i + micro])))
                   for i in range(0, 8, micro)]  # fmt: skip
        row = update.step(batches, 0)
        results.append((row, {n: w.detach().clone() for n, w in update.policy.named_parameters()}))
    (row_a, w_a), (row_b, w_b) = results
    assert abs(row_a["loss/dpo"] - row_b["loss/dpo"]) < 1e-6
    for name in w_a:
        # Adam's first step divides by |g|, so float-rounding noise in near-zero gradients shows at ~lr * 1e-3
        torch.testing.assert_close(w_a[name], w_b[name], atol=1e-5, rtol=1e-4)


def test_pairs_left_out_of_the_loss_change_nothing():
    policy, tokenizer = tiny_policy(lora=False)
    update = DPOStep(policy, settings(), 1, Accelerator(cpu=True), tokenizer.pad_token_id)
    before = {n: w.detach().clone() for n, w in update.policy.named_parameters()}
    encoded = encode_pairs(tokenizer, PAIRS, 12)
    ref = update.reference_logprobs(encoded, policy, 8)
    row = update.step([MicroBatch(encoded, torch.full((8,), 0.5), ref, torch.zeros(8))], 0)
    assert row["pairs_in_loss"] == 0 and row["loss/dpo"] is None
    for name, w in update.policy.named_parameters():
        assert torch.equal(w, before[name]), name


def test_oaif_resume_takes_labels_from_the_log_instead_of_the_judge(tmp_path):
    """Train 4 steps (checkpoint at 2), then start over from the checkpoint: steps 3-4 sample the same
    pairs, the judge is not asked again, and the weights end where the first run ended. [P09]"""
    prompts = [{"id": x["id"], "prompt": x["prompt"]} for x in PAIRS]
    oaif = OAIFConfig(arms=["rlaif"], batch_size=4, micro_batch_size=2, total_prompts=16, response_length=6,
                      learning_rate=1e-2, warmup_ratio=0.0, save_steps=2, lora=LoraSettings(enabled=True, r=4))  # fmt: skip
    asked: list[int] = []

    def judge(rows):  # prefers the shorter summary, decisively: a deterministic judge
        asked.append(len(rows))
        return [{"p_a": 1.0 if len(r["summary_a"]) < len(r["summary_b"]) else 0.0} for r in rows]

    def trainer():
        policy, tokenizer = tiny_policy(lora=True)
        return OnlineDPOTrainer(policy, None, tokenizer, prompts, oaif, judge, tmp_path, 0, Accelerator(cpu=True))

    first = trainer()
    first.train()
    weights = {n: w.detach().clone() for n, w in first.update.policy.named_parameters() if w.requires_grad}
    assert asked == [4, 4, 4, 4]
    second = trainer()
    assert second.resume() == 2
    second.train()
    assert asked == [4, 4, 4, 4] and second.labels_reused == 8  # steps 3 and 4: 4 pairs each, from labels.jsonl
    for name, w in second.update.policy.named_parameters():
        if w.requires_grad:
            assert torch.equal(w, weights[name]), name
    rows = [line for line in (tmp_path / "labels.jsonl").read_text().splitlines() if line]
    assert len(rows) == 16  # one per (step, pair): nothing written twice
