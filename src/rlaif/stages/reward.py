"""Stages `reward` (RLAIF arm) and `reward_rlhf` (RLHF arm): a scalar reward model on preference pairs.

Reads, by `source`: labels/labels.jsonl (ai_labels), human comparisons (human: `comparisons`, else
the training part of human.comparisons), or data.reference_posts plus SFT samples
(reference_preferred); starts from sft/model unless `model` names another. Every reward model is
then measured on the held-out part of human.comparisons, the rows the labeler is measured on too
(`agreement_with_people` in metrics.json, per-row scores in human_heldout.jsonl) [H03]. Writes
<stage>/{model/, metrics.json, log_history.jsonl, checkpoints/, human_heldout.jsonl,
reference_samples.jsonl (reference_preferred only)}. model/ is a plain
AutoModelForSequenceClassification folder (num_labels=1) whose config carries reward_bias and
reward_max_length; rlaif.reward.model.score applies both. `--eval-only` scores a saved model on
`eval_comparisons` and writes <stage>/eval_only_metrics.json, leaving the manifest alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from rlaif.artifacts import is_main_process, write_json
from rlaif.config import ConfigError, PipelineConfig, RewardConfig
from rlaif.data import fit_prompt, parse_prompt
from rlaif.data.splits import HumanSplit, human_split
from rlaif.evaluation.agreement import agreement_on_comparisons, calibration, reward_model_extras
from rlaif.jsonl import write_jsonl
from rlaif.models import compute_device, load_causal_lm, load_tokenizer, merge_adapter, save_model
from rlaif.reward.data import (
    human_pairs,
    label_pairs,
    reference_pairs,
    reference_records,
    rlhf_human_pairs,
    sample_for_references,
    split_pairs,
)
from rlaif.reward.losses import normalization_bias
from rlaif.reward.model import build_reward_model, freeze_bottom_layers, load_reward_model, raw_scores
from rlaif.reward.trainer import PairCollator, PairwiseRewardTrainer, evaluate_pairs, tokenize_pairs
from rlaif.stages import StageContext
from rlaif.training import apply_lora, train_resuming, training_arguments

PROXY_NOTE = (
    "reference_preferred is a PROXY for human comparisons: a human wrote the preferred summary, "
    "but no human compared the two summaries"
)


def run(ctx: StageContext) -> dict:
    if ctx.options.get("eval_only"):
        return evaluate_only(ctx)
    cfg, settings, stage = ctx.cfg, ctx.section, ctx.stage.name
    t0 = time.time()
    model_name = str(ctx.artifact("sft", "model")) if settings.model == "sft" else settings.model
    tokenizer = load_tokenizer(model_name, padding_side="right")

    split = human_split(cfg)
    pairs, data_report = _training_pairs(ctx, settings, tokenizer, split)
    train_pairs, held_out = split_pairs(pairs, settings.validation_fraction, cfg.seed, settings.max_examples)
    train_set, val_set = tokenize_pairs(train_pairs, tokenizer, settings), tokenize_pairs(held_out, tokenizer, settings)

    model = build_reward_model(model_name, tokenizer, cfg.seed, settings.dtype)  # [D15] head init, dropout off
    model.config.reward_max_length = settings.max_length
    freeze_bottom_layers(model, settings.freeze_layers)
    model = apply_lora(model, settings.lora, task_type="SEQ_CLS")  # peft trains the score head fully
    checkpoints = ctx.dir / "checkpoints"
    no_eval = {} if len(val_set) else {"eval_strategy": "no"}
    trainer = PairwiseRewardTrainer(
        model=model,
        args=training_arguments(settings, checkpoints, cfg.seed, **no_eval),
        data_collator=PairCollator(tokenizer.pad_token_id),
        train_dataset=train_set,
        eval_dataset=val_set if len(val_set) else None,
        processing_class=tokenizer,
        settings=settings,
    )
    train_result, train_seconds, resume_from = train_resuming(trainer, checkpoints, stage)

    # LoRA: keep the adapter (lean PPO runs it on the policy's base [D40]); evaluate and ship the merged model
    final = merge_adapter(trainer.model, ctx.dir / "adapter" if is_main_process() else None)
    metrics = {
        "source": settings.source,
        **({"source_note": PROXY_NOTE} if settings.source == "reference_preferred" else {}),
        "loss": settings.loss,
        "label_clamp": settings.label_clamp if settings.loss == "soft" else None,
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
        metrics.update(_evaluate(final, tokenizer, cfg, settings, held_out))
        if split.heldout:
            metrics["agreement_with_people"] = _agreement(ctx, final, tokenizer, settings, split, train_pairs)
            # the report's calibration figure: P(chosen) against how often people chose it [H03]
            metrics["calibration"]["people"] = metrics["agreement_with_people"]["calibration"]["table"]
        metrics.update(_score_scale(metrics))
        metrics.update(_normalize(final, tokenizer, cfg, settings, train_pairs))
        save_model(final, tokenizer, ctx.dir / "model")
        write_jsonl(ctx.dir / "log_history.jsonl", trainer.state.log_history)
        shown = [f"{k} {metrics[k]:.3f}" for k in ("accuracy_heldout", "accuracy_human") if k in metrics]
        if "agreement_with_people" in metrics:
            agree = metrics["agreement_with_people"]
            shown.append(
                f"agreement with people {agree['accuracy']['value']:.3f} on {agree['rows']} held-out comparisons "
                f"(longer-wins baseline {agree['length_baseline']['value']:.3f})"
            )
        print(
            f"[rlaif] {stage}: {', '.join(shown + [f'train {train_seconds:.0f}s'])}; model in {ctx.dir / 'model'}",
            flush=True,
        )
    metrics["seconds"] = round(time.time() - t0, 2)
    return metrics


def _training_pairs(ctx: StageContext, settings: RewardConfig, tokenizer, split: HumanSplit) -> tuple[list[dict], dict]:
    cfg = ctx.cfg
    if settings.source == "ai_labels":
        pairs, undecided = label_pairs(ctx.artifact("label", "labels.jsonl"))
        return pairs, {"undecided_dropped": undecided}
    if settings.source == "human":
        return rlhf_human_pairs(cfg, tokenizer, settings.comparisons, settings.min_strength)
    policy = load_causal_lm(str(ctx.artifact("sft", "model")), tokenizer).to(compute_device())
    samples = sample_for_references(
        policy,
        tokenizer,
        reference_records(cfg, tokenizer),
        ctx.dir / "reference_samples.jsonl",
        settings,
        cfg.data.max_summary_tokens,
        cfg.seed,
    )
    pairs = reference_pairs(samples)
    return pairs, {"reference_posts": len(samples), "sample_equals_reference": len(samples) - len(pairs)}


def _evaluate(model, tokenizer, cfg: PipelineConfig, settings: RewardConfig, held_out: list[dict]) -> dict:
    """accuracy_heldout (+ accuracy_ai_heldout for AI labels) and accuracy_human, with calibration tables."""
    metrics, calibration = {}, {}
    if held_out:
        result = evaluate_pairs(
            model, tokenizer, held_out, settings.eval_batch_size, settings.max_length, settings.calibration_bins
        )
        metrics["accuracy_heldout"] = result["accuracy"]
        if settings.source == "ai_labels":
            metrics["accuracy_ai_heldout"] = result["accuracy"]
        metrics["heldout_mean_score_gap"] = result["mean_score_gap"]
        metrics["heldout_score_std"] = result["score_std"]
        metrics["heldout_expected_calibration_error"] = result["expected_calibration_error"]
        calibration["heldout"] = result["calibration"]
    if settings.eval_comparisons:
        metrics.update(_human_metrics(model, tokenizer, settings, settings.max_length, cfg.data.max_prompt_tokens))
        calibration["human"] = metrics.pop("calibration")
    metrics["calibration"] = calibration
    return metrics


def _human_metrics(model, tokenizer, settings: RewardConfig, max_length: int | None, max_prompt_tokens: int) -> dict:
    pairs, report = human_pairs(tokenizer, settings.eval_comparisons, settings.eval_min_strength, max_prompt_tokens)
    result = evaluate_pairs(model, tokenizer, pairs, settings.eval_batch_size, max_length, settings.calibration_bins)
    return {
        "accuracy_human": result["accuracy"],
        "human_pairs": result["pairs"],
        "human_min_strength": settings.eval_min_strength,
        "human_below_min_strength": report["below_min_strength"],
        "human_mean_score_gap": result["mean_score_gap"],
        "human_score_std": result["score_std"],
        "human_expected_calibration_error": result["expected_calibration_error"],
        "calibration": result["calibration"],
    }


def _agreement(ctx: StageContext, model, tokenizer, settings: RewardConfig, split: HumanSplit, train_pairs) -> dict:
    """The reward model against people on the held-out human comparisons [H03]: both summaries scored,
    P(chosen) = sigmoid(score gap); accuracy, length baseline, length-matched and length-balanced
    accuracy, subsets, score scale and score-length correlation. Per-row scores go to
    human_heldout.jsonl."""
    cfg, human, rows = ctx.cfg, ctx.cfg.human, split.heldout
    n = len(rows)
    prompts = [fit_prompt(tokenizer, r["prompt"], cfg.data.max_prompt_tokens) for r in rows]
    scores = raw_scores(
        model,
        tokenizer,
        prompts * 2,
        [r["chosen"] for r in rows] + [r["rejected"] for r in rows],
        settings.eval_batch_size,
        settings.max_length,
    )
    s_chosen, s_rejected = scores[:n], scores[n:]  # (N,), (N,)
    p_chosen = torch.sigmoid(s_chosen - s_rejected).double().numpy()
    result = agreement_on_comparisons(
        rows,
        p_chosen,
        human.high_confidence_strength,
        human.one_sided_min_confidence,
        human.length_match_chars,
        human.bootstrap_samples,
        cfg.seed,
    )
    result.update(
        reward_model_extras(
            s_chosen.numpy(), s_rejected.numpy(), [len(r["chosen"]) for r in rows], [len(r["rejected"]) for r in rows]
        )
    )
    result["calibration"] = calibration(p_chosen, settings.calibration_bins)
    result["split"] = split.report
    # A post the RM trained on (e.g. one of the AI-labelled pairs' posts) that is also held out here.
    trained = {_post_key(p["prompt"]) for p in train_pairs}
    result["heldout_rows_on_trained_posts"] = sum(_post_key(r["prompt"]) in trained for r in rows)
    write_jsonl(
        ctx.dir / "human_heldout.jsonl",
        (
            {
                "id": r["id"],
                "post_id": r["post_id"],
                "strength": r["strength"],
                "confidence": r["confidence"],
                "score_chosen": float(s_chosen[i]),
                "score_rejected": float(s_rejected[i]),
                "chars_chosen": len(r["chosen"]),
                "chars_rejected": len(r["rejected"]),
            }
            for i, r in enumerate(rows)
        ),
    )
    return result


def _score_scale(metrics: dict) -> dict:
    """`score_std`, the spread of the RM's scores on held-out summaries, so a reader can compare the
    scales of two RMs that one kl_coef regularises (a soft-label RM with clamped labels is narrower,
    [D17]); from the held-out human comparisons when there are some, else the held-out pairs."""
    for where, value in (
        (
            "held-out human comparisons (human.comparisons)",
            (metrics.get("agreement_with_people") or {}).get("score_std"),
        ),
        ("held-out training pairs", metrics.get("heldout_score_std")),
        ("reward.eval_comparisons", metrics.get("human_score_std")),
    ):
        if value is not None:
            return {"score_std": value, "score_std_on": where}
    return {"score_std": None, "score_std_on": None}


def _post_key(prompt: str) -> str:
    """Whitespace-normalised start of a prompt's post: the same post, whatever its source's id, title or cut."""
    parsed = parse_prompt(prompt)
    body = parsed["post"] if parsed else prompt
    return " ".join(body.split())[:200]


def _normalize(model, tokenizer, cfg: PipelineConfig, settings: RewardConfig, train_pairs: list[dict]) -> dict:
    """Set config.reward_bias so the human references (else the training summaries) score 0 on average [D19]."""
    if not settings.normalize:
        model.config.reward_bias = 0.0
        return {"reward_bias": 0.0, "normalization_set": None}
    n = settings.normalization_examples
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
    bias = normalization_bias(
        raw_scores(model, tokenizer, prompts, summaries, settings.eval_batch_size, settings.max_length)
    )
    model.config.reward_bias = bias
    return {"reward_bias": bias, "normalization_set": name, "normalization_examples": len(summaries)}


def evaluate_only(ctx: StageContext) -> dict:
    """Score a saved reward model on `eval_comparisons`; nothing is trained and the manifest is untouched."""
    cfg, settings, stage = ctx.cfg, ctx.section, ctx.stage.name
    if not settings.eval_comparisons:
        raise ConfigError(f"{stage}.eval_comparisons: empty; --eval-only needs comparisons to score")
    path = Path(settings.eval_model) if settings.eval_model else ctx.dir / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no reward model in {path}: run `rlaif reward CONFIG` first or set {stage}.eval_model")
    t0 = time.time()
    model, tokenizer = load_reward_model(str(path), settings.dtype)
    model.to(compute_device())
    metrics = {"model": str(path), "comparisons": [ds.path for ds in settings.eval_comparisons]}
    metrics.update(
        _human_metrics(
            model, tokenizer, settings, getattr(model.config, "reward_max_length", None), cfg.data.max_prompt_tokens
        )
    )
    metrics["seconds"] = round(time.time() - t0, 2)
    if is_main_process():
        ctx.dir.mkdir(parents=True, exist_ok=True)
        write_json(ctx.dir / "eval_only_metrics.json", metrics)
        print(
            f"[rlaif] {stage} --eval-only: accuracy_human {metrics['accuracy_human']:.3f} on {metrics['human_pairs']} pairs "
            f"(strength >= {settings.eval_min_strength}); written to {ctx.dir / 'eval_only_metrics.json'}",
            flush=True,
        )
    return metrics
