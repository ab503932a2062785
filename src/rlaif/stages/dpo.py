"""Stages `dpo` (RLAIF arm) and `dpo_rlhf` (RLHF arm): offline DPO of the SFT policy on preference pairs.

Reads sft/model, and labels/labels.jsonl (RLAIF: the AI soft labels, undecided pairs left out) or
human comparisons (RLHF: dpo.comparisons, else the ones reward_rlhf trains on, a = the chosen
summary, p = 1). Writes <stage>/{model/ (merged, plain HF folder), adapter/ (LoRA),
reference_logprobs.jsonl, metrics.jsonl, metrics.json}; checkpoints/ while it runs (removed once
model/ is saved; a rerun of a killed run resumes from the newest). The DPO itself is rlaif.dpo.
"""

from __future__ import annotations

import shutil
import time

from rlaif.artifacts import barrier, is_main_process
from rlaif.dpo.trainer import train_dpo
from rlaif.jsonl import read_complete
from rlaif.models import load_tokenizer, save_model, stage_accelerator
from rlaif.stages import StageContext
from rlaif.tracking import log_rows


def run(ctx: StageContext) -> dict:
    cfg, settings, stage = ctx.cfg, ctx.section, ctx.stage.name
    accelerator = stage_accelerator()
    t0 = time.time()
    sft_path = str(ctx.artifact("sft", "model"))
    tokenizer = load_tokenizer(sft_path)
    pairs, data_report = training_pairs(ctx, tokenizer)
    result = train_dpo(sft_path, pairs, settings, ctx.dir, cfg.seed, ctx.resumed, accelerator, tokenizer)
    metrics = {"arm": ctx.stage.arm, "beta": settings.beta, **data_report, **result.metrics}
    if result.metrics["resumed_after_step"] is not None and is_main_process():
        print(f"[rlaif] {stage}: resumed after step {result.metrics['resumed_after_step']}", flush=True)
    if is_main_process():
        save_model(result.policy, tokenizer, ctx.dir / "model")  # LoRA: merged, adapter kept in adapter/
        shutil.rmtree(ctx.dir / "checkpoints", ignore_errors=True)  # model/ is complete: nothing left to resume
        last = metrics["last_step"]
        print(
            f"[rlaif] {stage}: {metrics['steps']} steps on {metrics['pairs']} pairs in {metrics['train_seconds']:.0f}s; "
            f"last loss {last['loss/dpo']:.4f}, margin {last['rewards/margins']:.3f}; model in {ctx.dir / 'model'}",
            flush=True,
        )
        log_rows(cfg, stage, read_complete(ctx.dir / "metrics.jsonl"))  # mirror to tensorboard / wandb when configured
    barrier()
    metrics["seconds"] = round(time.time() - t0, 2)
    return metrics


def training_pairs(ctx: StageContext, tokenizer) -> tuple[list[dict], dict]:
    """{id, prompt, summary_a, summary_b, p_a} of the stage's arm, in id order (file order must not
    matter), at most dpo.max_pairs; and what was left out."""
    settings = ctx.section
    if ctx.stage.arm == "rlaif":
        from rlaif.reward.data import label_pairs

        pairs, undecided = label_pairs(ctx.artifact("label", "labels.jsonl"))
        report = {"source": "ai_labels", "undecided_dropped": undecided}
    else:
        pairs, report = human_comparison_pairs(ctx.cfg, tokenizer)
        report = {"source": "human", **report}
    pairs = sorted(pairs, key=lambda p: p["id"])[: settings.max_pairs]
    return pairs, report


def human_comparison_pairs(cfg, tokenizer) -> tuple[list[dict], dict]:
    """The RLHF arm's human comparisons as pairs with a = chosen, p_a = 1: dpo.comparisons (with
    dpo.min_strength), else those reward_rlhf trains on (its comparisons or the training part of
    human.comparisons, with its min_strength), so both RLHF methods learn from the same human
    choices; human's held-out posts are left out either way [H02]."""
    from rlaif.reward.data import rlhf_human_pairs

    if cfg.dpo.comparisons:
        return rlhf_human_pairs(cfg, tokenizer, cfg.dpo.comparisons, cfg.dpo.min_strength)
    return rlhf_human_pairs(cfg, tokenizer, cfg.reward_rlhf.comparisons, cfg.reward_rlhf.min_strength)
