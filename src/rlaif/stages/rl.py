"""Stages `rl` / `rl_rlhf` (PPO), `rloo` / `rloo_rlhf` (RLOO) and `grpo` / `grpo_rlhf` (GRPO): RL of the
SFT policy against the arm's reward. One code path; the stage's section (rl, rloo, grpo) sets the
algorithm [D51].

Reads sft/model and the arm's reward model (the registry's `reward` of the stage; none for the
RLAIF arm's reward_source `direct`); prompts are the section's `prompts`, else the prompt pool from
pairs.num_posts on (posts the RM never trained on; rlaif.data.splits). Writes <stage>/{model/
(plain HF folder), adapter/ (lean), metrics.jsonl, samples.jsonl, heldout.jsonl, metrics.json,
trajectory/ (with `snapshots`)}; checkpoints/ while it runs (removed once model/ is saved; a rerun
of a killed run resumes from the newest). The models come from rlaif.rl.build, the loop is rlaif.rl.
"""

from __future__ import annotations

import shutil
import time

import torch

from rlaif.artifacts import barrier, is_main_process
from rlaif.config import PipelineConfig
from rlaif.data import eval_records, policy_posts, prompt_records
from rlaif.jsonl import read_complete, write_jsonl
from rlaif.models import load_tokenizer, stage_accelerator
from rlaif.pipeline import uses_direct_reward
from rlaif.rl.build import build_rl_models
from rlaif.rl.heldout import heldout_kl, heldout_summaries
from rlaif.rl.policy import save_policy
from rlaif.rl.rewards import SharedBaseReward
from rlaif.rl.trainer import PPOTrainer
from rlaif.stages import StageContext
from rlaif.tracking import log_rows


def rl_prompts(cfg: PipelineConfig, tokenizer, section: str = "rl") -> list[dict]:
    """{id, prompt} of the posts to optimise on (see the module docstring); `section`: rl, rloo or grpo."""
    posts = policy_posts(cfg, getattr(cfg, section).prompts, section)
    return [
        {"id": r["id"], "prompt": r["prompt"]} for r in prompt_records(posts, tokenizer, cfg.data.max_prompt_tokens)
    ]


def run(ctx: StageContext) -> dict:
    cfg, settings, stage = ctx.cfg, ctx.section, ctx.stage.name
    accelerator = stage_accelerator()
    t0 = time.time()
    sft_dir = str(ctx.artifact("sft", "model"))
    tokenizer = load_tokenizer(sft_dir, padding_side="left")
    prompts = rl_prompts(cfg, tokenizer, ctx.stage.section)
    direct_labeler = _direct_settings(ctx)
    reward_model_dir = None if direct_labeler is not None else str(ctx.artifact(ctx.stage.reward, "model"))
    torch.manual_seed(cfg.seed)  # LoRA and head initialisation: the same on every process
    models = build_rl_models(settings, sft_dir, reward_model_dir, direct_labeler, tokenizer, accelerator)
    trainer = PPOTrainer(models, tokenizer, prompts, settings, ctx.dir, cfg.seed, accelerator)
    resumed_at = trainer.resume() if ctx.resumed else None
    if resumed_at is not None and is_main_process():
        print(f"[rlaif] {stage}: resuming after {settings.algorithm.upper()} step {resumed_at}", flush=True)
    train_t0 = time.time()
    last = trainer.train()
    train_seconds = time.time() - train_t0

    metrics = {
        "algorithm": settings.algorithm,
        "group_size": settings.group_size,
        **({"dr_grpo": settings.dr_grpo} if settings.algorithm == "grpo" else {}),
        "mode": settings.mode,
        "reward_source": "direct" if direct_labeler is not None else "reward_model",
        "reward_model": "adapter on the policy's base"
        if isinstance(models.reward, SharedBaseReward)
        else reward_model_dir,
        "device": str(accelerator.device),
        "precision": {"dtype": settings.dtype, "mixed_precision": accelerator.mixed_precision},
        "steps": trainer.num_steps,
        "episodes": trainer.num_steps * trainer.global_batch,
        "processes": accelerator.num_processes,
        "prompts_available": len(prompts),
        "resumed_after_step": resumed_at,
        "train_seconds": round(train_seconds, 2),
        "episodes_per_second": round(
            (trainer.num_steps - (resumed_at or 0)) * trainer.global_batch / max(train_seconds, 1e-9), 4
        ),
        "last_step": last,
    }
    if is_main_process():
        records = (
            eval_records(cfg, tokenizer, settings.heldout_posts) if settings.heldout_posts and cfg.data.eval else []
        )
        # the KL check samples from the policy in memory, before save_policy merges its adapter
        kls = heldout_kl(models, tokenizer, records, settings, cfg.seed) if records else []
        save_policy(models, tokenizer, ctx.dir / "model")
        if records:
            summary, rows = heldout_summaries(
                records,
                kls,
                tokenizer,
                settings,
                sft_dir,
                str(ctx.dir / "model"),
                reward_model_dir,
                direct_labeler,
                accelerator.device,
            )
            metrics.update(summary)
            write_jsonl(ctx.dir / "heldout.jsonl", rows)
        shutil.rmtree(ctx.dir / "checkpoints", ignore_errors=True)  # model/ is complete: nothing left to resume
        gain = (
            f"; held-out RM score {metrics['heldout/sft_score']:.3f} (SFT) -> {metrics['heldout/policy_score']:.3f}, "
            f"KL {metrics['heldout/kl_to_sft']:.2f}"
            if "heldout/sft_score" in metrics
            else ""
        )
        print(
            f"[rlaif] {stage}: {metrics['episodes']} episodes in {train_seconds:.0f}s{gain}; model in {ctx.dir / 'model'}",
            flush=True,
        )
        log_rows(cfg, stage, read_complete(ctx.dir / "metrics.jsonl"))  # mirror to tensorboard / wandb when configured
    barrier()
    metrics["seconds"] = round(time.time() - t0, 2)
    return metrics


def _direct_settings(ctx: StageContext):
    """The labeler of a d-RLAIF reward, None when the stage reads a reward model."""
    return (ctx.section.direct_labeler or ctx.cfg.label.labeler) if uses_direct_reward(ctx.cfg, ctx.stage) else None
