"""Stages `reward` (RLAIF arm) and `reward_rlhf` (RLHF arm): a scalar reward model on preference pairs.

Reads, by `source`: labels/labels.jsonl (ai_labels), human comparisons (human), or
data.reference_posts plus SFT samples (reference_preferred); starts from sft/model unless `model`
names another. Writes <stage>/{model/, metrics.json, log_history.jsonl, checkpoints/,
reference_samples.jsonl (reference_preferred only)}. model/ is a plain
AutoModelForSequenceClassification folder (num_labels=1) whose config carries reward_bias and
reward_max_length; rlaif.reward.model.score applies both. `--eval-only` scores a saved model on
`eval_comparisons` and writes <stage>/eval_only_metrics.json, leaving the manifest alone.
"""

from __future__ import annotations

import time
from pathlib import Path

from rlaif.artifacts import RunDir, is_main_process, write_json
from rlaif.config import ConfigError, PipelineConfig, RewardConfig
from rlaif.models import load_causal_lm, load_tokenizer
from rlaif.reward.data import (
    human_pairs,
    label_pairs,
    reference_pairs,
    reference_records,
    sample_for_references,
    split_pairs,
)
from rlaif.reward.losses import normalization_bias
from rlaif.reward.model import build_reward_model, freeze_bottom_layers, load_reward_model, raw_scores
from rlaif.reward.trainer import PairCollator, PairwiseRewardTrainer, evaluate_pairs, tokenize_pairs
from rlaif.training import apply_lora, save_final_model, train_resuming, training_arguments, write_jsonl

PROXY_NOTE = (
    "reference_preferred is a PROXY for human comparisons: a human wrote the preferred summary, "
    "but no human compared the two summaries"
)


def upstream(cfg: PipelineConfig, stage: str = "reward") -> tuple[str, ...]:
    """Stages whose outputs this one reads."""
    rm: RewardConfig = getattr(cfg, stage)
    needs = []
    if rm.model == "sft" or rm.source == "reference_preferred":
        needs.append("sft")
    if rm.source == "ai_labels":
        needs.append("label")
    return tuple(needs)


def data_sources(cfg: PipelineConfig, stage: str = "reward"):
    rm: RewardConfig = getattr(cfg, stage)
    sources = list(rm.comparisons) if rm.source == "human" else []
    if rm.source == "reference_preferred" or rm.normalize:
        sources += cfg.data.reference_posts
    return sources + list(rm.eval_comparisons)


def run(cfg: PipelineConfig, rundir: RunDir, stage: str = "reward", eval_only: bool = False) -> dict:
    if eval_only:
        return evaluate_only(cfg, rundir, stage)
    rm: RewardConfig = getattr(cfg, stage)
    out = rundir.begin(stage, rm, upstream=upstream(cfg, stage), data=data_sources(cfg, stage))
    t0 = time.time()
    model_name = str(rundir.stage_dir("sft") / "model") if rm.model == "sft" else rm.model
    tokenizer = load_tokenizer(model_name, padding_side="right")

    pairs, data_report = _training_pairs(cfg, rundir, rm, tokenizer, out.dir)
    train_pairs, held_out = split_pairs(pairs, rm.validation_fraction, cfg.seed, rm.max_examples)
    train_set, val_set = tokenize_pairs(train_pairs, tokenizer, rm), tokenize_pairs(held_out, tokenizer, rm)

    model = build_reward_model(model_name, tokenizer, cfg.seed, rm.dtype)  # [D15] head init, dropout off
    model.config.reward_max_length = rm.max_length
    freeze_bottom_layers(model, rm.freeze_layers)
    model = apply_lora(model, rm.lora, task_type="SEQ_CLS")  # peft trains the score head fully
    checkpoints = out.dir / "checkpoints"
    no_eval = {} if len(val_set) else {"eval_strategy": "no"}
    trainer = PairwiseRewardTrainer(
        model=model,
        args=training_arguments(rm, checkpoints, cfg.seed, **no_eval),
        data_collator=PairCollator(tokenizer.pad_token_id),
        train_dataset=train_set,
        eval_dataset=val_set if len(val_set) else None,
        processing_class=tokenizer,
        rm=rm,
    )
    train_result, train_seconds, resume_from = train_resuming(trainer, checkpoints, stage)

    final = trainer.model
    if hasattr(final, "merge_and_unload"):  # LoRA: keep the adapter, evaluate and ship the merged model
        if is_main_process():
            final.save_pretrained(out.dir / "adapter", safe_serialization=True)
        final = final.merge_and_unload()
    metrics = {
        "source": rm.source,
        **({"source_note": PROXY_NOTE} if rm.source == "reference_preferred" else {}),
        "loss": rm.loss,
        "label_clamp": rm.label_clamp if rm.loss == "soft" else None,
        "model_init": model_name,
        "train_loss": train_result.training_loss,
        "examples": len(train_set),
        "heldout_examples": len(val_set),
        "global_steps": trainer.state.global_step,
        "resumed_from_checkpoint": resume_from,
        "train_seconds": round(train_seconds, 2),
        "processes": trainer.args.world_size,
        **data_report,
    }
    if is_main_process():
        metrics.update(_evaluate(final, tokenizer, cfg, rm, held_out))
        metrics.update(_normalize(final, tokenizer, cfg, rm, train_pairs))
        save_final_model(final, tokenizer, out.dir / "model")
        write_jsonl(out.dir / "log_history.jsonl", trainer.state.log_history)
        shown = [f"{k} {metrics[k]:.3f}" for k in ("accuracy_heldout", "accuracy_human") if k in metrics]
        print(
            f"[rlaif] {stage}: {', '.join(shown + [f'train {train_seconds:.0f}s'])}; model in {out.dir / 'model'}",
            flush=True,
        )
    metrics["seconds"] = round(time.time() - t0, 2)
    rundir.finish(out, metrics)
    return metrics


def _training_pairs(
    cfg: PipelineConfig, rundir: RunDir, rm: RewardConfig, tokenizer, out_dir: Path
) -> tuple[list[dict], dict]:
    if rm.source == "ai_labels":
        pairs, undecided = label_pairs(rundir.stage_dir("label") / "labels.jsonl")
        return pairs, {"undecided_dropped": undecided}
    if rm.source == "human":
        return human_pairs(tokenizer, rm.comparisons, rm.min_confidence, cfg.data.max_prompt_tokens)
    policy = load_causal_lm(str(rundir.stage_dir("sft") / "model"), tokenizer)
    samples = sample_for_references(
        policy,
        tokenizer,
        reference_records(cfg, tokenizer),
        out_dir / "reference_samples.jsonl",
        rm,
        cfg.data.max_summary_tokens,
        cfg.seed,
    )
    pairs = reference_pairs(samples)
    return pairs, {"reference_posts": len(samples), "sample_equals_reference": len(samples) - len(pairs)}


def _evaluate(model, tokenizer, cfg: PipelineConfig, rm: RewardConfig, held_out: list[dict]) -> dict:
    """accuracy_heldout (+ accuracy_ai_heldout for AI labels) and accuracy_human, with calibration tables."""
    metrics, calibration = {}, {}
    if held_out:
        result = evaluate_pairs(model, tokenizer, held_out, rm.eval_batch_size, rm.max_length, rm.calibration_bins)
        metrics["accuracy_heldout"] = result["accuracy"]
        if rm.source == "ai_labels":
            metrics["accuracy_ai_heldout"] = result["accuracy"]
        metrics["heldout_mean_score_gap"] = result["mean_score_gap"]
        metrics["heldout_expected_calibration_error"] = result["expected_calibration_error"]
        calibration["heldout"] = result["calibration"]
    if rm.eval_comparisons:
        metrics.update(_human_metrics(model, tokenizer, rm, rm.max_length, cfg.data.max_prompt_tokens))
        calibration["human"] = metrics.pop("calibration")
    metrics["calibration"] = calibration
    return metrics


def _human_metrics(model, tokenizer, rm: RewardConfig, max_length: int | None, max_prompt_tokens: int) -> dict:
    pairs, report = human_pairs(tokenizer, rm.eval_comparisons, rm.eval_min_confidence, max_prompt_tokens)
    result = evaluate_pairs(model, tokenizer, pairs, rm.eval_batch_size, max_length, rm.calibration_bins)
    return {
        "accuracy_human": result["accuracy"],
        "human_pairs": result["pairs"],
        "human_min_confidence": rm.eval_min_confidence,
        "human_below_min_confidence": report["below_min_confidence"],
        "human_mean_score_gap": result["mean_score_gap"],
        "human_expected_calibration_error": result["expected_calibration_error"],
        "calibration": result["calibration"],
    }


def _normalize(model, tokenizer, cfg: PipelineConfig, rm: RewardConfig, train_pairs: list[dict]) -> dict:
    """Set config.reward_bias so the human references (else the training summaries) score 0 on average [D19]."""
    if not rm.normalize:
        model.config.reward_bias = 0.0
        return {"reward_bias": 0.0, "normalization_set": None}
    n = rm.normalization_examples
    if cfg.data.reference_posts:
        records = reference_records(cfg, tokenizer)[:n]
        prompts, summaries, name = (
            [r["prompt"] for r in records],
            [r["reference"] for r in records],
            "data.reference_posts references",
        )
    else:
        half = train_pairs[: max(1, n // 2)]
        prompts = [p["prompt"] for p in half] * 2
        summaries = [p["summary_a"] for p in half] + [p["summary_b"] for p in half]
        name = "training pair summaries"
    bias = normalization_bias(raw_scores(model, tokenizer, prompts, summaries, rm.eval_batch_size, rm.max_length))
    model.config.reward_bias = bias
    return {"reward_bias": bias, "normalization_set": name, "normalization_examples": len(summaries)}


def evaluate_only(cfg: PipelineConfig, rundir: RunDir, stage: str) -> dict:
    """Score a saved reward model on `eval_comparisons`; nothing is trained and the manifest is untouched."""
    rm: RewardConfig = getattr(cfg, stage)
    if not rm.eval_comparisons:
        raise ConfigError(f"{stage}.eval_comparisons: empty; --eval-only needs comparisons to score")
    path = Path(rm.eval_model) if rm.eval_model else rundir.stage_dir(stage) / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no reward model in {path}: run `rlaif reward CONFIG` first or set {stage}.eval_model")
    t0 = time.time()
    model, tokenizer = load_reward_model(str(path), rm.dtype)
    metrics = {"model": str(path), "comparisons": [ds.path for ds in rm.eval_comparisons]}
    metrics.update(
        _human_metrics(
            model, tokenizer, rm, getattr(model.config, "reward_max_length", None), cfg.data.max_prompt_tokens
        )
    )
    metrics["seconds"] = round(time.time() - t0, 2)
    if is_main_process():
        rundir.stage_dir(stage).mkdir(parents=True, exist_ok=True)
        write_json(rundir.stage_dir(stage) / "eval_only_metrics.json", metrics)
        print(
            f"[rlaif] {stage} --eval-only: accuracy_human {metrics['accuracy_human']:.3f} on {metrics['human_pairs']} pairs "
            f"(confidence >= {rm.eval_min_confidence}); written to {rundir.stage_dir(stage) / 'eval_only_metrics.json'}",
            flush=True,
        )
    return metrics
