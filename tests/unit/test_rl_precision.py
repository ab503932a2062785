"""The RL precision policy [D50]: which rl.dtype x mixed-precision combinations are accepted, and the
first epoch's ratio under fp16 autocast, which accelerate only runs on a GPU (here on the CPU with a
stand-in accelerator; tests/stages/test_rl_precision.py covers the others through the stage)."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from rlaif.config import ConfigError, LoraSettings, PPOSettings, RLConfig, load_config
from rlaif.config.validate import MIXED_PRECISION_ENV, check_rl_precision
from rlaif.models import compute_device, embedded_folder, encode_left, load_tokenizer
from rlaif.reward.model import build_reward_model
from rlaif.rl.build import build_rl_models
from rlaif.rl.ppo import ppo_update, rollout
from tests.conftest import REPO
from tests.stages.test_rl_precision import ACCEPTED, RATIO_TOLERANCE

PROMPTS = [
    "SUBREDDIT: r/cooking\n\nTITLE: Burnt rice\n\nPOST: Every time I cook rice the bottom burns. What am I doing wrong?\n\nTL;DR:",
    "POST: My landlord wants to raise the rent by 30% with two weeks notice. Is that legal here?\n\nTL;DR:",
    "POST: I keep forgetting to water my plants and they all die. Any tips?\n\nTL;DR:",
    "SUBREDDIT: r/running\n\nPOST: My knees hurt after 5k. Should I stop?\n\nTL;DR:",
]


def test_validator_accepts_exactly_the_combinations_the_stage_tests_run(monkeypatch):
    accepted = []
    for dtype in ("float32", "bfloat16", "float16"):
        for mixed_precision in ("no", "bf16", "fp16"):
            try:
                check_rl_precision(dtype, mixed_precision)
                accepted.append((dtype, mixed_precision))
            except ConfigError as e:
                assert str(e).startswith("rl.dtype: ") and "set rl.dtype=" in str(e)
    assert sorted(accepted) == sorted(ACCEPTED)
    # load_config checks rl.dtype against the launch's mixed precision (accelerate launch sets the variable)
    monkeypatch.setenv(MIXED_PRECISION_ENV, "fp16")
    with pytest.raises(ConfigError, match="rl.dtype: bfloat16 weights under fp16 mixed precision"):
        load_config(REPO / "configs" / "tiny.yaml", ["rl.dtype=bfloat16"])
    monkeypatch.setenv(MIXED_PRECISION_ENV, "no")
    with pytest.raises(ConfigError, match="rl.dtype: float16 weights train without loss scaling"):
        load_config(REPO / "configs" / "tiny.yaml", ["rl.dtype=float16"])


class CPUHalfAutocast(Accelerator):
    """accelerate refuses fp16 mixed precision on a CPU (its loss scaler needs a GPU). This stand-in
    runs the forwards under a float16 autocast on the CPU, as a GPU run under `--mixed_precision
    fp16` does, and reports fp16; nothing is stepped before the ratio is measured, so the missing
    loss scaler does not matter here."""

    @property
    def mixed_precision(self) -> str:
        return "fp16"

    def autocast(self, autocast_handler=None):
        return torch.autocast("cpu", dtype=torch.float16)


@pytest.mark.skipif(compute_device().type != "cpu", reason="on a GPU the stage test runs real fp16 mixed precision")
@pytest.mark.parametrize("mode", ["lean", "standard"])
def test_first_epoch_ratio_is_one_under_fp16_autocast(tmp_path, mode):
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder, padding_side="left")
    rm_dir = tmp_path / "reward"
    build_reward_model(folder, tokenizer, seed=1).save_pretrained(rm_dir, safe_serialization=True)
    tokenizer.save_pretrained(rm_dir)
    settings = RLConfig(
        mode=mode,
        lora=LoraSettings(enabled=True, r=8),
        response_length=8,
        rollout_batch_size=4,
        forward_batch_size=2,
        ppo=PPOSettings(ppo_epochs=1, num_minibatches=1, micro_batch_size=2),
    )
    accelerator = CPUHalfAutocast(cpu=True)
    torch.manual_seed(0)
    models = build_rl_models(settings, folder, str(rm_dir), None, tokenizer, accelerator)
    assert not models.full_precision
    with torch.no_grad():  # a policy that is not the reference: an adapter that is not the identity
        for name, p in models.trainable.policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    batch = encode_left(tokenizer, PROMPTS, models.device)
    generator = torch.Generator(device=models.device).manual_seed(0)
    rollout_batch = rollout(models, tokenizer, batch.input_ids, batch.attention_mask, PROMPTS, settings, generator)
    assert torch.isfinite(rollout_batch.advantages).all()
    params = [p for p in models.trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    stats = ppo_update(models.trainable, optimizer, scheduler, accelerator, rollout_batch, settings, generator, step=0)
    assert abs(stats["policy/ratio"] - 1.0) < RATIO_TOLERANCE
    assert (2 * stats["policy/approxkl"]) ** 0.5 < RATIO_TOLERANCE
