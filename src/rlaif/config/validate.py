"""Config checks that need more than one field or the file system; errors name the dotted field."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from rlaif.config.base import EMBEDDED_MODELS, ConfigError

if TYPE_CHECKING:
    from rlaif.config.pipeline import PipelineConfig


def validate(cfg: PipelineConfig) -> None:
    """Checks that need more than one field or the file system."""
    for section in ("sft", "prompts", "eval", "reference_posts"):
        for i, ds in enumerate(getattr(cfg.data, section)):
            where = f"data.{section}.{i}.path"
            if not ds.path:
                raise ConfigError(f"{where}: empty; give a Hub dataset id or a local file")
            if ds.is_local and not Path(ds.path).expanduser().exists():
                raise ConfigError(f"{where}: file not found: {ds.path}")
            if ds.limit is not None and ds.limit <= 0:
                raise ConfigError(f"data.{section}.{i}.limit: must be positive, got {ds.limit}")
    _check_model_name(cfg.sft.model, "sft.model")
    _validate_human(cfg)
    _validate_pairs_label(cfg)
    if not 0.0 < cfg.sft.validation_fraction < 1.0:
        raise ConfigError(f"sft.validation_fraction: must be in (0, 1), got {cfg.sft.validation_fraction}")
    if cfg.data.max_prompt_tokens < 32:
        raise ConfigError(f"data.max_prompt_tokens: {cfg.data.max_prompt_tokens} leaves no room for a post")
    for name in ("reward", "reward_rlhf"):
        if getattr(cfg, name) is not None:
            _validate_reward(cfg, name)
    if cfg.rl is not None:
        _validate_rl(cfg)
    _validate_evaluate(cfg)


def _validate_reward(cfg: PipelineConfig, name: str) -> None:
    rm = getattr(cfg, name)
    if rm.model != "sft":
        _check_model_name(rm.model, f"{name}.model")
    if rm.eval_model and not Path(rm.eval_model).expanduser().is_dir():
        raise ConfigError(f"{name}.eval_model: model folder not found: {rm.eval_model}")
    for key in ("comparisons", "eval_comparisons"):
        for i, ds in enumerate(getattr(rm, key)):
            if not ds.path:
                raise ConfigError(f"{name}.{key}.{i}.path: empty; give a Hub dataset id or a local file")
            if ds.is_local and not Path(ds.path).expanduser().exists():
                raise ConfigError(f"{name}.{key}.{i}.path: file not found: {ds.path}")
    if rm.source == "human" and not rm.comparisons and not (cfg.human.comparisons and cfg.human.heldout_fraction < 1):
        raise ConfigError(
            f"{name}.comparisons: source `human` needs comparison sources here, or human.comparisons with a "
            "training part (human.heldout_fraction < 1)"
        )
    for key in ("min_strength", "eval_min_strength"):
        _check_strength(getattr(rm, key), f"{name}.{key}")
    if rm.source == "reference_preferred" and not cfg.data.reference_posts:
        raise ConfigError(
            f"data.reference_posts: {name}.source `reference_preferred` needs posts with reference summaries"
        )
    clamp = rm.label_clamp
    if len(clamp) != 2 or not 0.0 <= clamp[0] <= 0.5 <= clamp[1] <= 1.0:
        raise ConfigError(f"{name}.label_clamp: expected [low, high] with 0 <= low <= 0.5 <= high <= 1, got {clamp}")
    if not 0.0 <= rm.validation_fraction < 1.0:
        raise ConfigError(f"{name}.validation_fraction: must be in [0, 1), got {rm.validation_fraction}")
    if rm.max_length is not None and rm.max_length < 16:
        raise ConfigError(f"{name}.max_length: {rm.max_length} tokens is too short for a prompt and a summary")
    if rm.freeze_layers < 0 or (rm.freeze_layers and rm.lora.enabled):
        raise ConfigError(
            f"{name}.freeze_layers: must be >= 0 and is for full fine-tuning only (lora.enabled is {rm.lora.enabled})"
        )
    if rm.calibration_bins < 1:
        raise ConfigError(f"{name}.calibration_bins: must be at least 1, got {rm.calibration_bins}")


def _check_strength(value: int | None, where: str) -> None:
    if value is not None and not 0 <= value <= 4:
        raise ConfigError(
            f"{where}: a strength |confidence - 5| is 0-4 (3 keeps confidence <= 2 or >= 8), got {value} [H01]"
        )


def _validate_human(cfg: PipelineConfig) -> None:
    human = cfg.human
    for i, ds in enumerate(human.comparisons):
        if not ds.path:
            raise ConfigError(f"human.comparisons.{i}.path: empty; give a Hub dataset id or a local file")
        if ds.is_local and not Path(ds.path).expanduser().exists():
            raise ConfigError(f"human.comparisons.{i}.path: file not found: {ds.path}")
    if not 0.0 < human.heldout_fraction <= 1.0:
        raise ConfigError(f"human.heldout_fraction: must be in (0, 1], got {human.heldout_fraction}")
    if human.max_heldout is not None and human.max_heldout <= 0:
        raise ConfigError(f"human.max_heldout: must be positive, got {human.max_heldout}")
    if not 1 <= human.high_confidence_strength <= 4:
        raise ConfigError(
            f"human.high_confidence_strength: a strength |confidence - 5| is 1-4, got {human.high_confidence_strength}"
        )
    if human.one_sided_min_confidence is not None and not 1 <= human.one_sided_min_confidence <= 9:
        raise ConfigError(
            f"human.one_sided_min_confidence: a raw 9-point confidence (1-9), got {human.one_sided_min_confidence}"
        )
    if human.length_match_chars < 0 or human.bootstrap_samples <= 0:
        raise ConfigError("human.length_match_chars must be >= 0 and human.bootstrap_samples positive")


def _validate_rl(cfg: PipelineConfig) -> None:
    rl, ppo = cfg.rl, cfg.rl.ppo
    if rl.mode == "lean" and not rl.lora.enabled:
        raise ConfigError("rl.lora.enabled: lean mode trains a LoRA adapter; use rl.mode=standard for full fine-tuning")
    for where, value in (
        ("rl.total_episodes", rl.total_episodes),
        ("rl.rollout_batch_size", rl.rollout_batch_size),
        ("rl.response_length", rl.response_length),
        ("rl.forward_batch_size", rl.forward_batch_size),
        ("rl.sample_steps", rl.sample_steps),
        ("rl.save_steps", rl.save_steps),
        ("rl.save_total_limit", rl.save_total_limit),
        ("rl.ppo.ppo_epochs", ppo.ppo_epochs),
        ("rl.ppo.num_minibatches", ppo.num_minibatches),
        ("rl.ppo.micro_batch_size", ppo.micro_batch_size),
    ):
        if value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value}")
    if rl.rollout_batch_size % ppo.num_minibatches:
        raise ConfigError(
            f"rl.ppo.num_minibatches: {ppo.num_minibatches} does not divide rl.rollout_batch_size={rl.rollout_batch_size}"
        )
    if rl.total_episodes < rl.rollout_batch_size:
        raise ConfigError(
            f"rl.total_episodes: {rl.total_episodes} is less than one rollout batch ({rl.rollout_batch_size})"
        )
    for where, value in (
        ("rl.temperature", rl.temperature),
        ("rl.ppo.learning_rate", ppo.learning_rate),
        ("rl.ppo.cliprange", ppo.cliprange),
        ("rl.ppo.cliprange_value", ppo.cliprange_value),
        ("rl.ppo.adam_eps", ppo.adam_eps),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{where}: must be a positive number, got {value}")
    for where, value in (
        ("rl.kl_coef", rl.kl_coef),
        ("rl.missing_eos_penalty", rl.missing_eos_penalty),
        ("rl.ppo.vf_coef", ppo.vf_coef),
        ("rl.ppo.weight_decay", ppo.weight_decay),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}: must be a number >= 0, got {value}")
    if not 0.0 <= rl.shared_layers < 1.0:
        raise ConfigError(
            f"rl.shared_layers: a fraction in [0, 1) (the top layers must keep adapters), got {rl.shared_layers}"
        )
    if not (0.0 <= ppo.gamma <= 1.0 and 0.0 <= ppo.lam <= 1.0):
        raise ConfigError(f"rl.ppo.gamma / rl.ppo.lam: must be in [0, 1], got {ppo.gamma} / {ppo.lam}")
    if rl.heldout_posts < 0:
        raise ConfigError(f"rl.heldout_posts: must be >= 0, got {rl.heldout_posts}")
    for i, ds in enumerate(rl.prompts):
        if not ds.path or (ds.is_local and not Path(ds.path).expanduser().exists()):
            raise ConfigError(f"rl.prompts.{i}.path: file not found: {ds.path!r}")
    if rl.reward_source == "direct":
        labeler = rl.direct_labeler or cfg.label.labeler
        where = "rl.direct_labeler" if rl.direct_labeler else "label.labeler"
        if labeler.backend != "hf_local":
            raise ConfigError(
                f"{where}.backend: reward_source `direct` needs the hf_local backend, got {labeler.backend!r}"
            )
        _check_model_name(labeler.model, f"{where}.model")


def _validate_pairs_label(cfg: PipelineConfig) -> None:
    pairs, label = cfg.pairs, cfg.label
    if pairs.num_posts is not None and pairs.num_posts <= 0:
        raise ConfigError(f"pairs.num_posts: must be positive, got {pairs.num_posts}")
    if pairs.temperature <= 0:
        raise ConfigError(
            f"pairs.temperature: must be > 0 (greedy decoding gives two identical summaries), got {pairs.temperature}"
        )
    for where, value in (
        ("pairs.max_new_tokens", pairs.max_new_tokens),
        ("pairs.batch_size", pairs.batch_size),
        ("label.labeler.batch_size", label.labeler.batch_size),
        ("label.labeler.api.concurrency", label.labeler.api.concurrency),
        ("label.alignment_max_pairs", label.alignment_max_pairs),
    ):
        if value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value}")
    labeler = label.labeler
    if labeler.backend != "openai_api":
        _check_model_name(labeler.model, "label.labeler.model")
    if label.prompt_style == "cot" and labeler.max_rationale_tokens <= 0:
        raise ConfigError(
            f"label.labeler.max_rationale_tokens: must be positive for prompt_style cot, got {labeler.max_rationale_tokens}"
        )
    if not 1 <= labeler.top_logprobs <= 20:
        raise ConfigError(
            f"label.labeler.top_logprobs: must be in [1, 20] (the OpenAI API's range), got {labeler.top_logprobs}"
        )
    if label.fewshot_file and not Path(label.fewshot_file).expanduser().is_file():
        raise ConfigError(f"label.fewshot_file: file not found: {label.fewshot_file}")
    if not 0.0 <= label.max_failed_fraction <= 1.0:
        raise ConfigError(f"label.max_failed_fraction: must be in [0, 1], got {label.max_failed_fraction}")
    if labeler.api.timeout_s <= 0 or labeler.api.max_retries < 0 or labeler.api.backoff_s < 0:
        raise ConfigError("label.labeler.api: timeout_s must be > 0, max_retries and backoff_s >= 0")
    _check_strength(label.alignment_min_strength, "label.alignment_min_strength")
    for section in ("alignment_summarize", "alignment_dialogue"):
        for i, ds in enumerate(getattr(label, section)):
            if not ds.path:
                raise ConfigError(f"label.{section}.{i}.path: empty; give a Hub dataset id or a local file")
            if ds.is_local and not Path(ds.path).expanduser().exists():
                raise ConfigError(f"label.{section}.{i}.path: file not found: {ds.path}")


def _validate_evaluate(cfg: PipelineConfig) -> None:
    from rlaif.pipeline import system_names  # the registry names every system; imported late: it reads config

    ev = cfg.evaluate
    systems = system_names()
    for i, item in enumerate(ev.comparisons):
        a, sep, b = item.partition(":")
        if not sep or a not in systems or b not in systems or a == b:
            raise ConfigError(
                f"evaluate.comparisons.{i}: {item!r} is not `A:B` with two different systems of {', '.join(systems)}"
            )
    for where, value in (
        ("evaluate.max_new_tokens", ev.max_new_tokens),
        ("evaluate.batch_size", ev.batch_size),
        ("evaluate.bootstrap_samples", ev.bootstrap_samples),
        ("evaluate.judge.batch_size", ev.judge.batch_size),
        ("report.num_samples", cfg.report.num_samples + 1),
    ):
        if value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value}")
    if ev.max_posts is not None and ev.max_posts <= 0:
        raise ConfigError(f"evaluate.max_posts: must be positive, got {ev.max_posts}")
    if ev.judge.backend != "openai_api":
        _check_model_name(ev.judge.model, "evaluate.judge.model")
    if ev.judge_style == "cot" and ev.judge.max_rationale_tokens <= 0:
        raise ConfigError(
            f"evaluate.judge.max_rationale_tokens: must be positive for judge_style cot, got {ev.judge.max_rationale_tokens}"
        )


def _check_model_name(name: str, where: str) -> None:
    if not name:
        raise ConfigError(f"{where}: empty; give smollm2-135m, tiny-random, a Hub id or a folder")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if name not in EMBEDDED_MODELS and looks_local and not Path(name).expanduser().is_dir():
        raise ConfigError(f"{where}: model folder not found: {name}")
