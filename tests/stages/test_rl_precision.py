"""The RL stage's precision [D50] and its critic's start [D49] (issue #11, items 2, 6 and 7), through
the stage itself on the tiny preset: under RLAIF_DEVICE=cuda (scripts/gpu_check.sh) on a GPU.

- The first PPO epoch starts on-policy: with one epoch of one minibatch nothing has been stepped
  when the ratio is measured, so the logged ratio is 1 and approxkl 0 up to float noise, for every
  combination of rl.dtype and accelerate's mixed precision the validator accepts.
- lean mode runs in bfloat16, the whole stage.
- The critic starts as the reward model, bias included: its value of the state after a scored
  response's EOS equals the RM's score of that response.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlaif.cli import main
from rlaif.config import load_config

from .rl_upstream import make_upstream, stage_device_type

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "tldr" / "sff_validation_posts_250.jsonl"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"real TL;DR posts not found at {DATA}")
CONFIG = str(REPO / "configs" / "tiny.yaml")
MIXED_PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"  # set by `accelerate launch --mixed_precision`
REWARD_BIAS = 0.25  # what rl_upstream gives its reward models
# rl.dtype x accelerate mixed precision that config.validate.check_rl_precision accepts
# (tests/unit/test_rl_precision.py checks that this is exactly the accepted set)
ACCEPTED = [("float32", "no"), ("float32", "bf16"), ("float32", "fp16"), ("bfloat16", "no"), ("bfloat16", "bf16")]
# float32 takes the sampling loop's own log-probs (~1e-6 from the update's forward) [D43]; reduced
# precision recomputes them with the update's forward on its first-epoch micro-batches (exact) [D50].
# Rollout and update in different precisions (bf16 autocast against float32) differ by ~1e-3.
RATIO_TOLERANCE = 1e-4


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one state per process; these tests each set their own mixed precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def run_rl(tmp_path: Path, *overrides: str, lora_rm: bool = False) -> Path:
    args = [f"output_dir={tmp_path / 'run'}", *overrides]
    make_upstream(load_config(CONFIG, args), lora_rm=lora_rm)
    assert main(["rl", CONFIG, *[x for a in args for x in ("--set", a)]]) == 0
    return tmp_path / "run" / "rl"


@pytest.mark.parametrize("mode", ["lean", "standard"])
@pytest.mark.parametrize("dtype, mixed_precision", ACCEPTED)
def test_first_epoch_ratio_is_one(tmp_path, monkeypatch, fresh_accelerator_state, mode, dtype, mixed_precision):
    if mixed_precision == "fp16" and stage_device_type() == "cpu":
        pytest.skip(
            "accelerate refuses fp16 mixed precision on a CPU; tests/unit/test_rl_precision.py runs this "
            "combination with a CPU fp16 autocast, scripts/gpu_check.sh on a GPU"
        )
    monkeypatch.setenv(MIXED_PRECISION_ENV, mixed_precision)
    out = run_rl(
        tmp_path,
        f"rl.mode={mode}",
        f"rl.dtype={dtype}",
        "rl.total_episodes=4",  # one PPO step
        "rl.heldout_posts=0",
        "rl.ppo.ppo_epochs=1",
        "rl.ppo.num_minibatches=1",
        "rl.ppo.micro_batch_size=2",  # micro-batched and trimmed, as in training
    )
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    rms_logratio = math.sqrt(2 * first["policy/approxkl"])  # approxkl = 0.5 * mean(logratio^2)
    assert abs(first["policy/ratio"] - 1.0) < RATIO_TOLERANCE, first["policy/ratio"]
    assert rms_logratio < RATIO_TOLERANCE, rms_logratio
    assert first["policy/clipfrac"] == 0.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == {"dtype": dtype, "mixed_precision": mixed_precision}


def test_lean_bfloat16_runs_the_whole_stage(tmp_path, monkeypatch, fresh_accelerator_state):
    """bf16 base, float32 adapter and value head: sampling, update, checkpoint, held-out check, merge."""
    monkeypatch.setenv(MIXED_PRECISION_ENV, "no")
    out = run_rl(tmp_path, "rl.mode=lean", "rl.dtype=bfloat16", "rl.save_steps=2", "rl.heldout_posts=2")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss/total"]) for r in rows)
    heldout = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert len(heldout) == 2 and all(r["generation"]["dtype"] == "bfloat16" for r in heldout)
    assert (out / "model" / "config.json").exists() and (out / "adapter" / "value_head.safetensors").exists()


@pytest.mark.parametrize(
    "mode, lora_rm",
    [("standard", False), ("lean", False), ("lean", True)],
    ids=["standard", "lean-separate-rm", "lean-rm-adapter-on-policy-base"],
)
def test_critic_starts_as_the_reward_model(tmp_path, monkeypatch, fresh_accelerator_state, mode, lora_rm):
    """[D49] V(state after a scored response's EOS) == the RM's score of it, reward bias included. In
    lean with the RM as an adapter on the policy's base, the head reads the policy's features, not
    the RM adapter's, so there the head itself is checked: the RM's score weights and its bias."""
    from rlaif.rl.trainer import PPOTrainer

    starts = []
    real_init = PPOTrainer.__init__

    def init(self, models, tokenizer, prompts, *args, **kwargs):
        starts.append(critic_start(models, tokenizer, prompts[0]["prompt"]))
        real_init(self, models, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(PPOTrainer, "__init__", init)
    monkeypatch.setenv(MIXED_PRECISION_ENV, "no")
    run_rl(tmp_path, f"rl.mode={mode}", "rl.total_episodes=4", "rl.heldout_posts=0", lora_rm=lora_rm)
    value, score, head_weight, head_bias, reward_score_weight, reward_bias = starts[0]
    assert reward_bias == REWARD_BIAS
    if lora_rm:
        torch.testing.assert_close(head_weight, reward_score_weight)
        assert head_bias is not None and head_bias.item() == REWARD_BIAS
    else:
        torch.testing.assert_close(value, score, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def critic_start(models, tokenizer, prompt: str):
    """(V after the EOS, RM score, value head weight and bias, RM score weight, RM bias) on one prompt +
    summary + EOS, copied before training changes them."""
    device = models.trainable.value_head.weight.device
    query = tokenizer(prompt, add_special_tokens=False).input_ids
    response = tokenizer(" The rice burns at the bottom.", add_special_tokens=False).input_ids + [
        tokenizer.eos_token_id
    ]
    query_response = torch.tensor([query + response], device=device)
    mask = torch.ones_like(query_response)
    score = models.reward(
        query_response, mask, torch.tensor([query_response.size(1) - 1], device=device), [prompt], [""]
    )
    # one more position holds the state after the EOS; values[:, t] is the state before token t
    extended = torch.cat([query_response, query_response[:, -1:]], dim=1)
    value = models.trainable.values(extended, torch.ones_like(extended), len(query))[:, -1]
    reward = models.reward
    rm_head = reward.score if hasattr(reward, "score") else reward.model.score
    head = models.trainable.value_head
    head_bias = head.bias.detach().clone() if head.bias is not None else None
    return value, score, head.weight.detach().clone(), head_bias, rm_head.weight.detach().float().clone(), reward.bias
