"""Stage `sft`: supervised fine-tuning of the policy on TL;DR posts and human reference summaries.

Reads data.sft; writes sft/{model/, samples.jsonl, log_history.jsonl, metrics.json, checkpoints/}.
The loss covers the summary tokens and the EOS only (prompt tokens are masked with -100), so the
model learns to stop. Uses the transformers Trainer, so `accelerate launch` gives data parallel,
DeepSpeed or FSDP unchanged, and an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import time

import torch.nn.functional as F
from transformers import DataCollatorForSeq2Seq, Trainer

from rlaif.artifacts import is_main_process, write_json
from rlaif.data import build_prompt, load_posts
from rlaif.evaluation.stats import mean_or_none
from rlaif.generation import generate
from rlaif.jsonl import write_jsonl
from rlaif.models import load_causal_lm, load_tokenizer, position_ids, save_model
from rlaif.stages import StageContext
from rlaif.training import apply_lora, train_resuming, training_arguments

IGNORE_INDEX = -100  # label value the causal-LM loss skips


def tokenize_example(tokenizer, record: dict, max_prompt_tokens: int, max_summary_tokens: int) -> dict:
    """Prompt + " summary" + EOS, with labels masked on the prompt. The summary is cut to its token
    budget before EOS is appended, so every target ends with EOS."""
    prompt = build_prompt(tokenizer, record, max_prompt_tokens)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    summary_ids = tokenizer(" " + record["summary"], add_special_tokens=False).input_ids[:max_summary_tokens]
    target = summary_ids + [tokenizer.eos_token_id]
    return {
        "input_ids": prompt_ids + target,
        "attention_mask": [1] * (len(prompt_ids) + len(target)),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + target,
        "prompt": prompt,
    }


def run(ctx: StageContext) -> dict:
    cfg, settings = ctx.cfg, ctx.section
    t0 = time.time()

    tokenizer = load_tokenizer(settings.model, padding_side="left")  # see _Collator
    posts, load_report = load_posts(cfg.data.sft, require_summary=True)
    posts = posts.shuffle(seed=cfg.seed)
    n_val = max(1, round(len(posts) * settings.validation_fraction))
    if len(posts) - n_val < 1:
        raise ValueError(f"data.sft: {len(posts)} rows leave nothing to train on after a validation split of {n_val}")
    val_posts, train_posts = posts.select(range(n_val)), posts.select(range(n_val, len(posts)))
    if settings.max_examples is not None:
        train_posts = train_posts.select(range(min(settings.max_examples, len(train_posts))))

    def encode(record):
        return tokenize_example(tokenizer, record, cfg.data.max_prompt_tokens, cfg.data.max_summary_tokens)

    columns = train_posts.column_names
    train_set = train_posts.map(encode, remove_columns=columns, desc="tokenize train")
    val_set = val_posts.map(encode, remove_columns=columns, desc="tokenize validation")

    model = load_causal_lm(settings.model, tokenizer)
    model = apply_lora(model, settings.lora, task_type="CAUSAL_LM")
    checkpoints = ctx.dir / "checkpoints"
    trainer = Trainer(
        model=model,
        args=training_arguments(settings, checkpoints, cfg.seed),
        data_collator=_Collator(tokenizer),
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        compute_loss_func=summary_loss,
    )

    # The loss before training is measured once and kept, so a resumed run reports the true start.
    before_path = ctx.dir / "eval_before.json"
    if before_path.exists():
        eval_before = json.loads(before_path.read_text())["eval_loss"]
    else:
        eval_before = trainer.evaluate()["eval_loss"]
        if is_main_process():
            write_json(before_path, {"eval_loss": eval_before})

    train_result, train_seconds, resume_from = train_resuming(trainer, checkpoints, ctx.stage.name)
    eval_after = trainer.evaluate()["eval_loss"]

    if is_main_process():
        save_model(trainer.model, tokenizer, ctx.dir / "model")
    metrics = {
        "train_loss": train_result.training_loss,
        "eval_loss_before": eval_before,
        "eval_loss_after": eval_after,
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.time() - t0, 2),
        "examples": len(train_set),
        "validation_examples": len(val_set),
        "global_steps": trainer.state.global_step,
        "resumed_from_checkpoint": resume_from,
        "skipped_bad_rows": load_report.skipped_bad,
        "duplicate_rows": load_report.duplicates,
        "processes": trainer.args.world_size,
    }
    if is_main_process():
        write_jsonl(ctx.dir / "log_history.jsonl", trainer.state.log_history)
        samples = _samples(trainer.model, tokenizer, val_set, val_posts, settings)
        write_jsonl(ctx.dir / "samples.jsonl", samples)
        metrics["sample_eos_rate"] = mean_or_none([s["ended_with_eos"] for s in samples])
        print(
            f"[rlaif] sft: eval loss {eval_before:.4f} -> {eval_after:.4f} in {train_seconds:.0f}s; model in {ctx.dir / 'model'}",
            flush=True,
        )
    return metrics


def _samples(model, tokenizer, val_set, val_posts, settings) -> list[dict]:
    n = min(settings.num_samples, len(val_set))
    prompts = [val_set[i]["prompt"] for i in range(n)]
    generations = generate(model, tokenizer, prompts, max_new_tokens=settings.sample_max_new_tokens, desc="sft samples")
    return [
        {
            "id": val_posts[i]["id"],
            "prompt": prompts[i],
            "reference": val_posts[i]["summary"],
            "generated": g[0].text,
            "ended_with_eos": g[0].ended_with_eos,
        }
        for i, g in enumerate(generations)
    ]


def summary_loss(outputs, labels, num_items_in_batch=None):
    """Token cross-entropy over the summary positions, from logits of the last columns only.

    The model returned logits for the last `keep` columns (see _Collator); the logit at column t
    predicts token t+1, so they line up with labels[:, T-keep+1:]. Summed and divided by the
    number of label tokens in the whole (accumulated, all-rank) batch when the Trainer gives it.
    """
    logits = outputs.logits[:, :-1]  # (B, keep-1, V)
    targets = labels[:, labels.shape[1] - logits.shape[1] :]  # (B, keep-1)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    return loss / count


class _Collator(DataCollatorForSeq2Seq):
    """Left-pads, so every summary ends in the last column and the loss needs logits only for the
    last `keep` columns: `logits_to_keep` skips the LM head (49k x 576 for SmolLM2) and the
    softmax over the prompt positions, whose loss is masked anyway. Explicit position_ids keep absolute-position
    models (GPT-2) correct under left padding."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")

    def __call__(self, features, return_tensors=None):
        features = [{k: v for k, v in f.items() if k != "prompt"} for f in features]
        batch = super().__call__(features, return_tensors)
        batch["position_ids"] = position_ids(batch["attention_mask"])  # (B, T)
        first_label = int((batch["labels"] != IGNORE_INDEX).any(0).nonzero()[0])
        batch["logits_to_keep"] = batch["labels"].shape[1] - first_label + 1
        return batch
