"""Stages `rl` (RLAIF arm) and `rl_rlhf` (RLHF arm): PPO of the SFT policy against the arm's reward.

Reads sft/model and reward/model (reward_rlhf/model for rl_rlhf; no RM for reward_source
`direct`); prompts are rl.prompts, else the prompt pool from pairs.num_posts on (posts the RM
never trained on). Writes <stage>/{model/ (plain HF folder), adapter/ (lean), metrics.jsonl,
samples.jsonl, heldout.jsonl, metrics.json}; checkpoints/ while it runs (removed once model/ is
saved; a rerun of a killed run resumes from the newest). The PPO itself is rlaif.rl.
"""

from __future__ import annotations

import shutil
import time

import torch

from rlaif.artifacts import RunDir, barrier, is_main_process
from rlaif.config import ConfigError, DatasetConfig, PipelineConfig
from rlaif.data import DataError, build_prompt, load_posts
from rlaif.models import load_tokenizer
from rlaif.rl.heldout import heldout_eval
from rlaif.rl.policy import load_models, save_policy
from rlaif.rl.trainer import PPOTrainer, read_log
from rlaif.tracking import log_rows
from rlaif.training import write_jsonl

REWARD_STAGE = {"rl": "reward", "rl_rlhf": "reward_rlhf"}


def upstream(cfg: PipelineConfig, stage: str = "rl") -> tuple[str, ...]:
    """Stages whose outputs this one reads."""
    return ("sft",) if uses_direct_reward(cfg, stage) else ("sft", REWARD_STAGE[stage])


def uses_direct_reward(cfg: PipelineConfig, stage: str) -> bool:
    """d-RLAIF replaces the RM of the RLAIF arm only; the RLHF arm always has its human-trained RM."""
    return cfg.rl.reward_source == "direct" and stage == "rl"


def data_sources(cfg: PipelineConfig, stage: str = "rl"):
    sources = list(cfg.rl.prompts or cfg.data.prompts)
    # d-RLAIF's prompt template file is an input: editing it must make the policy stale
    if uses_direct_reward(cfg, stage) and cfg.rl.direct_prompt_file:
        sources.append(DatasetConfig(path=cfg.rl.direct_prompt_file))
    return sources + (list(cfg.data.eval) if cfg.rl.heldout_posts else [])


def rl_prompts(cfg: PipelineConfig, tokenizer) -> list[dict]:
    """{id, prompt} of the posts to optimise on (see the module docstring)."""
    if cfg.rl.prompts:
        posts, _ = load_posts(cfg.rl.prompts)
    elif cfg.data.prompts:
        posts, _ = load_posts(cfg.data.prompts)
        skip = cfg.pairs.num_posts or 0
        if skip >= len(posts):
            raise DataError(
                f"pairs.num_posts={skip} uses all {len(posts)} posts of data.prompts; none is left for RL "
                "(lower it, add posts, or set rl.prompts)"
            )
        posts = posts.select(range(skip, len(posts)))
    else:
        raise ConfigError("rl.prompts: empty and so is data.prompts; RL needs posts to optimise on")
    return [{"id": p["id"], "prompt": build_prompt(tokenizer, p, cfg.data.max_prompt_tokens)} for p in posts]


def _reward(cfg: PipelineConfig, rundir: RunDir, stage: str, tokenizer, sft_path: str):
    """(reward fn or None, RM module or None, RM folder or None, shared RM adapter or None).
    None as reward fn: lean mode runs the RM's LoRA adapter on the policy's base (set up after
    the models are built)."""
    rl = cfg.rl
    if uses_direct_reward(cfg, stage):
        from rlaif.rl.rewards import DirectReward

        return DirectReward(rl.direct_labeler or cfg.label.labeler, rl), None, None, None
    from rlaif.reward.model import load_reward_model
    from rlaif.rl.rewards import RewardModelReward, shared_base_adapter

    path = str(rundir.stage_dir(REWARD_STAGE[stage]) / "model")
    if rl.mode == "lean" and (adapter := shared_base_adapter(path, sft_path)) is not None:
        return None, None, path, adapter
    rm, rm_tokenizer = load_reward_model(path, rl.dtype)
    rm.requires_grad_(False)
    return RewardModelReward(rm, rm_tokenizer, tokenizer, rl.forward_batch_size), rm, path, None


def _share_reward(models, rm_path: str, adapter, batch_size: int) -> None:
    """Lean mode with a LoRA RM on the same base: the RM becomes a second adapter [D40] and its
    score head seeds the value head [D42]."""
    from transformers import AutoConfig

    from rlaif.rl.rewards import SharedBaseReward

    models.reward = SharedBaseReward(models.trainable.policy, adapter, AutoConfig.from_pretrained(rm_path), batch_size)
    with torch.no_grad():
        models.trainable.value_head.weight.copy_(models.reward.score.weight)


def run(cfg: PipelineConfig, rundir: RunDir, stage: str = "rl") -> dict:
    from accelerate import Accelerator

    rl = cfg.rl
    # Before anything touches the distributed state: on CPU, accelerate needs cpu=True to use gloo.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    out = rundir.begin(stage, rl, upstream=upstream(cfg, stage), data=data_sources(cfg, stage))
    t0 = time.time()
    sft_path = str(rundir.stage_dir("sft") / "model")
    tokenizer = load_tokenizer(sft_path, padding_side="left")
    prompts = rl_prompts(cfg, tokenizer)
    reward, rm, rm_path, shared_adapter = _reward(cfg, rundir, stage, tokenizer, sft_path)
    torch.manual_seed(cfg.seed)  # LoRA and head initialisation: the same on every process
    models = load_models(rl, sft_path, tokenizer, reward, rm, rm_path)
    if shared_adapter is not None:
        _share_reward(models, rm_path, shared_adapter, rl.forward_batch_size)
    trainer = PPOTrainer(models, tokenizer, prompts, rl, out.dir, cfg.seed, accelerator)
    resumed_at = trainer.resume() if out.resumed else None
    if resumed_at is not None and is_main_process():
        print(f"[rlaif] {stage}: resuming after PPO step {resumed_at}", flush=True)
    train_t0 = time.time()
    last = trainer.train()
    train_seconds = time.time() - train_t0

    metrics = {
        "mode": rl.mode,
        "reward_source": "direct" if uses_direct_reward(cfg, stage) else "reward_model",
        "reward_model": "adapter on the policy's base" if shared_adapter is not None else rm_path,
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
        if rl.heldout_posts and cfg.data.eval:
            posts, _ = load_posts(cfg.data.eval)
            records = [
                {"id": p["id"], "prompt": build_prompt(tokenizer, p, cfg.data.max_prompt_tokens)}
                for p in posts.select(range(min(rl.heldout_posts, len(posts))))
            ]
            summary, rows = heldout_eval(models, tokenizer, records, rl, cfg.seed, rl.forward_batch_size)
            metrics.update(summary)
            write_jsonl(out.dir / "heldout.jsonl", rows)
        save_policy(models, tokenizer, out.dir / "model")
        shutil.rmtree(out.dir / "checkpoints", ignore_errors=True)  # model/ is complete: nothing left to resume
        gain = (
            f"; held-out RM score {metrics['heldout/sft_score']:.3f} (SFT) -> {metrics['heldout/policy_score']:.3f}, "
            f"KL {metrics['heldout/kl_to_sft']:.2f}"
            if "heldout/sft_score" in metrics
            else ""
        )
        print(
            f"[rlaif] {stage}: {metrics['episodes']} episodes in {train_seconds:.0f}s{gain}; model in {out.dir / 'model'}",
            flush=True,
        )
        log_rows(cfg, stage, read_log(out.dir / "metrics.jsonl"))  # mirror to tensorboard / wandb when configured
    barrier()
    metrics["seconds"] = round(time.time() - t0, 2)
    rundir.finish(out, metrics)
    return metrics
