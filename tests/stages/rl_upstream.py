"""Upstream artifacts for rl stage tests, registered through the real RunDir: the tiny-random model
as sft/model, and a tiny-random reward model (fresh scalar head, as rlaif.reward.model builds it)
as reward/model. Training them would only add seconds; RL needs their outputs, not their quality."""

from __future__ import annotations

import os
import shutil

import torch

from rlaif.artifacts import RunDir
from rlaif.config import LoraSettings, PipelineConfig
from rlaif.models import embedded_folder, load_tokenizer
from rlaif.reward.model import build_reward_model
from rlaif.training import apply_lora


def make_upstream(cfg: PipelineConfig, reward_stages: tuple[str, ...] = ("reward",), lora_rm: bool = False) -> RunDir:
    """`lora_rm`: the reward model is LoRA-trained on sft/model (a random, non-identity adapter), saved
    as the reward stage saves one: the merged model/ and the adapter/ beside it."""
    rundir = RunDir(cfg)
    out = rundir.begin("sft", cfg.sft)
    shutil.copytree(embedded_folder("tiny-random"), out.dir / "model")
    rundir.finish(out, {})
    tokenizer = load_tokenizer(str(out.dir / "model"))
    for stage in reward_stages:
        out = rundir.begin(stage, getattr(cfg, stage) or cfg.reward, upstream=("sft",))
        rm = build_reward_model(str(rundir.stage_dir("sft") / "model"), tokenizer, seed=1)
        if lora_rm:
            rm = apply_lora(rm, LoraSettings(enabled=True, r=4), "SEQ_CLS")
            generator = torch.Generator(device="cpu").manual_seed(2)
            with torch.no_grad():
                for name, p in rm.named_parameters():
                    if "lora_B" in name:
                        p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
            rm.save_pretrained(out.dir / "adapter")
            rm = rm.merge_and_unload()
        rm.config.reward_bias = 0.25
        rm.save_pretrained(out.dir / "model", safe_serialization=True)
        tokenizer.save_pretrained(out.dir / "model")
        rundir.finish(out, {})
    return rundir


def stage_device_type() -> str:
    """Where the stages compute: RLAIF_DEVICE when set (scripts/gpu_check.sh sets cuda), else the GPU
    when torch sees one (as rlaif.models.compute_device decides; written out here so these tests also
    run against code that predates it)."""
    return os.environ.get("RLAIF_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
