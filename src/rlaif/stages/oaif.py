"""Stages `oaif` (RLAIF arm: the LLM labeler judges each pair in both orders) and `oaif_rlhf` (RLHF
arm: reward_rlhf/model picks): online DPO of the SFT policy (Guo et al. 2024, arXiv 2402.04792).

Reads sft/model (policy and reference) and, RLHF arm, reward_rlhf/model; prompts are oaif.prompts,
else the prompt pool's posts the reward model never saw (as for PPO). Writes <stage>/{model/
(merged, plain HF folder), adapter/ (LoRA), labels.jsonl (every judged pair, appended as it comes),
metrics.jsonl, samples.jsonl, metrics.json}; checkpoints/ while it runs (removed once model/ is
saved). A rerun of a killed run resumes from the newest checkpoint and reuses the labels already in
labels.jsonl. The loop is rlaif.dpo.online.
"""

from __future__ import annotations

import copy
import shutil
import time

import torch

from rlaif.artifacts import barrier, is_main_process
from rlaif.config import PipelineConfig
from rlaif.data import policy_posts, prompt_records
from rlaif.dpo.online import Judge, OnlineDPOTrainer
from rlaif.jsonl import read_complete
from rlaif.models import load_causal_lm, load_tokenizer, save_model
from rlaif.stages import StageContext
from rlaif.tracking import log_rows


def oaif_prompts(cfg: PipelineConfig, tokenizer) -> list[dict]:
    """{id, prompt} of the posts to optimise on (see the module docstring)."""
    posts = policy_posts(cfg, cfg.oaif.prompts, "oaif")
    return [
        {"id": r["id"], "prompt": r["prompt"]} for r in prompt_records(posts, tokenizer, cfg.data.max_prompt_tokens)
    ]


def labeler_settings(cfg: PipelineConfig):
    """The RLAIF arm's judge: oaif.labeler, else label.labeler."""
    return cfg.oaif.labeler or cfg.label.labeler


def ai_judge(cfg: PipelineConfig) -> Judge:
    """The LLM labeler as OAIF's judge: every pair in both orders, the soft label P(a > b) of the
    two [L01]; label.prompt_style and label.fewshot_file, as the offline labels have. [P08]"""
    from rlaif.labelers.annotate import soft_label
    from rlaif.labelers.base import make_labeler
    from rlaif.labelers.prompts import judge_text_from_prompt, make_prompt

    settings = labeler_settings(cfg)
    labeler = make_labeler(settings)
    prompt = make_prompt("summarize", cfg.label.prompt_style, settings.max_rationale_tokens, cfg.label.fewshot_file)

    def judge(rows: list[dict]) -> list[dict]:
        requests = [
            req
            for r in rows
            for req in prompt.pair_requests(judge_text_from_prompt(r["prompt"]), r["summary_a"], r["summary_b"])
        ]
        results = labeler.judge(requests)
        out = []
        for i in range(len(rows)):
            ab, ba = results[2 * i], results[2 * i + 1]
            failed = ab.failed or ba.failed  # a transport failure after retries: left out, recorded
            p_a, undecided = (None, True) if failed else soft_label(ab, ba, cfg.oaif.undecided)
            out.append({"p_a": p_a, "undecided": undecided, "failed": failed,
                        "orders": [ab.to_json("ab"), ba.to_json("ba")], "judge": f"{labeler.backend}:{labeler.model}",
                        "prompt_id": prompt.prompt_id})  # fmt: skip
        return out

    return judge


def reward_model_judge(rm_path: str, rm_stage: str, batch_size: int) -> Judge:
    """The RLHF arm's reward model as OAIF's judge: it picks the summary it scores higher (p = 1 or 0;
    0.5 on an exact tie). [P08]"""
    from rlaif.reward.model import load_reward_model, score

    model, rm_tokenizer = load_reward_model(rm_path)
    model.to("cuda" if torch.cuda.is_available() else "cpu")

    def judge(rows: list[dict]) -> list[dict]:
        prompts = [r["prompt"] for r in rows]
        scores = score(model, rm_tokenizer, prompts * 2, [r["summary_a"] for r in rows] + [r["summary_b"] for r in rows],
                       batch_size).tolist()  # fmt: skip
        n = len(rows)
        return [
            {
                "p_a": 1.0 if a > b else 0.0 if a < b else 0.5,
                "score_a": a,
                "score_b": b,
                "judge": f"reward model {rm_stage}",
            }
            for a, b in zip(scores[:n], scores[n:])
        ]

    return judge


def run(ctx: StageContext) -> dict:
    from accelerate import Accelerator

    from rlaif.training import apply_lora

    cfg, settings, stage = ctx.cfg, ctx.section, ctx.stage.name
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # cpu=True: gloo on a CPU-only machine
    t0 = time.time()
    sft_path = str(ctx.artifact("sft", "model"))
    tokenizer = load_tokenizer(sft_path)
    prompts = oaif_prompts(cfg, tokenizer)
    judge = None
    if is_main_process():  # rank 0 judges every process's pairs: one judge in memory
        if ctx.stage.arm == "rlaif":
            judge = ai_judge(cfg)
        else:
            judge = reward_model_judge(
                str(ctx.artifact(ctx.stage.reward, "model")), ctx.stage.reward, settings.micro_batch_size
            )
    torch.manual_seed(cfg.seed)  # LoRA initialisation: the same on every process
    policy = load_causal_lm(sft_path, tokenizer, settings.dtype)
    policy.config.use_cache = False
    reference = None
    if settings.lora.enabled:
        policy.requires_grad_(False)
        policy = apply_lora(policy, settings.lora, task_type="CAUSAL_LM")
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)  # the frozen SFT policy
    trainer = OnlineDPOTrainer(policy, reference, tokenizer, prompts, settings, judge, ctx.dir, cfg.seed, accelerator)
    resumed_at = trainer.resume() if ctx.resumed else None
    if resumed_at is not None and is_main_process():
        print(f"[rlaif] {stage}: resuming after step {resumed_at}", flush=True)
    train_t0 = time.time()
    last = trainer.train()
    train_seconds = time.time() - train_t0
    metrics = {
        "arm": ctx.stage.arm,
        "judge": (
            f"labeler {labeler_settings(cfg).backend}:{labeler_settings(cfg).model}"
            if ctx.stage.arm == "rlaif"
            else f"reward model {ctx.stage.reward}"
        ),
        "beta": settings.beta,
        "lora": settings.lora.enabled,
        "steps": trainer.num_steps,
        "prompts": trainer.num_steps * settings.batch_size,
        "prompts_available": len(prompts),
        "processes": accelerator.num_processes,
        "resumed_after_step": resumed_at,
        "labels_reused": trainer.labels_reused,
        "train_seconds": round(train_seconds, 2),
        "prompts_per_second": round(
            (trainer.num_steps - (resumed_at or 0)) * settings.batch_size / max(train_seconds, 1e-9), 4
        ),
        "last_step": last,
    }
    if is_main_process():
        policy = trainer.update.policy
        policy.config.use_cache = True
        save_model(policy, tokenizer, ctx.dir / "model")
        shutil.rmtree(ctx.dir / "checkpoints", ignore_errors=True)  # model/ is complete: nothing left to resume
        print(
            f"[rlaif] {stage}: {metrics['prompts']} prompts x 2 samples in {train_seconds:.0f}s; "
            f"model in {ctx.dir / 'model'}",
            flush=True,
        )
        log_rows(cfg, stage, read_complete(ctx.dir / "metrics.jsonl"))
    barrier()
    metrics["seconds"] = round(time.time() - t0, 2)
    return metrics
