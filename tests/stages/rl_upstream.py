"""Upstream artifacts for rl stage tests, registered through the real RunDir: the tiny-random model
as sft/model, and a tiny-random reward model (fresh scalar head, as rlaif.reward.model builds it)
as reward/model. Training them would only add seconds; RL needs their outputs, not their quality."""

from __future__ import annotations

import shutil

from rlaif.artifacts import RunDir
from rlaif.config import PipelineConfig
from rlaif.models import embedded_folder, load_tokenizer
from rlaif.reward.model import build_reward_model


def make_upstream(cfg: PipelineConfig, reward_stages: tuple[str, ...] = ("reward",)) -> RunDir:
    rundir = RunDir(cfg)
    out = rundir.begin("sft", cfg.sft)
    shutil.copytree(embedded_folder("tiny-random"), out.dir / "model")
    rundir.finish(out, {})
    tokenizer = load_tokenizer(str(out.dir / "model"))
    for stage in reward_stages:
        out = rundir.begin(stage, getattr(cfg, stage) or cfg.reward, upstream=("sft",))
        rm = build_reward_model(str(rundir.stage_dir("sft") / "model"), tokenizer, seed=1)
        rm.config.reward_bias = 0.25
        rm.save_pretrained(out.dir / "model", safe_serialization=True)
        tokenizer.save_pretrained(out.dir / "model")
        rundir.finish(out, {})
    return rundir
