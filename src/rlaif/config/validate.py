"""Config checks that need more than one field or the file system; errors name the dotted field."""

from __future__ import annotations

import math
import os
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
    for name in ("rl", "rloo", "grpo"):
        if getattr(cfg, name) is not None:
            _validate_rl(cfg, name)
    _validate_methods(cfg)
    _validate_evaluate(cfg)
    for name in ("sft", "reward", "reward_rlhf", "rl", "dpo", "oaif"):
        lora = getattr(getattr(cfg, name, None), "lora", None)
        if lora is not None and not 0.0 <= lora.frozen_layers < 1.0:
            raise ConfigError(f"{name}.lora.frozen_layers: must be in [0, 1), got {lora.frozen_layers}")


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
    wider = human.labeler_max_heldout
    if wider is not None and (human.max_heldout is None or wider < human.max_heldout):
        raise ConfigError(
            f"human.labeler_max_heldout: {wider} must be at least human.max_heldout ({human.max_heldout}, "
            "None = all held-out rows): the labeler's rows start with the rows every judge shares"
        )
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


MIXED_PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"  # what `accelerate launch --mixed_precision` (or its config) sets


def check_rl_precision(dtype: str, mixed_precision: str) -> None:
    """The RL stage's weights dtype (`rl.dtype`) against accelerate's mixed precision (no, bf16,
    fp16) [D50]. Accepted: float32 with any of them, bfloat16 without mixed precision or with bf16.
    Refused: float16 weights (PPO has no loss scaling of its own: gradients and updates of float16
    weights underflow), and bfloat16 weights under fp16 autocast."""
    if dtype == "float16":
        raise ConfigError(
            "rl.dtype: float16 weights train without loss scaling; set rl.dtype=bfloat16, or rl.dtype=float32 "
            "under `accelerate launch --mixed_precision fp16` (float32 weights, fp16 compute, a loss scaler)"
        )
    if dtype == "bfloat16" and mixed_precision == "fp16":
        raise ConfigError(
            "rl.dtype: bfloat16 weights under fp16 mixed precision; set rl.dtype=float32 for fp16 mixed "
            "precision, or launch with --mixed_precision bf16 (or no)"
        )


def _validate_rl(cfg: PipelineConfig, name: str = "rl") -> None:
    """One RL section: `rl` (PPO), `rloo` or `grpo` [D51]."""
    rl = getattr(cfg, name)
    ppo = rl.ppo
    if rl.mode == "lean" and not rl.lora.enabled:
        raise ConfigError(
            f"{name}.lora.enabled: lean mode trains a LoRA adapter; use {name}.mode=standard for full fine-tuning"
        )
    check_rl_precision(rl.dtype, os.environ.get(MIXED_PRECISION_ENV, "no").lower())
    for where, value in (
        (f"{name}.total_episodes", rl.total_episodes),
        (f"{name}.rollout_batch_size", rl.rollout_batch_size),
        (f"{name}.response_length", rl.response_length),
        (f"{name}.forward_batch_size", rl.forward_batch_size),
        (f"{name}.sample_steps", rl.sample_steps),
        (f"{name}.save_steps", rl.save_steps),
        (f"{name}.save_total_limit", rl.save_total_limit),
        (f"{name}.ppo.ppo_epochs", ppo.ppo_epochs),
        (f"{name}.ppo.num_minibatches", ppo.num_minibatches),
        (f"{name}.ppo.micro_batch_size", ppo.micro_batch_size),
    ):
        if value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value}")
    _validate_groups(rl, name)
    rows = rl.rollout_batch_size * rl.group_size  # samples per process per step
    if rows % ppo.num_minibatches:
        of = f"{name}.rollout_batch_size={rl.rollout_batch_size}"
        if rl.group_size > 1:
            of = f"{name}.rollout_batch_size x {name}.group_size = {rows}"
        raise ConfigError(f"{name}.ppo.num_minibatches: {ppo.num_minibatches} does not divide {of}")
    if rl.total_episodes < rows:
        raise ConfigError(f"{name}.total_episodes: {rl.total_episodes} is less than one rollout batch ({rows})")
    for where, value in (
        (f"{name}.temperature", rl.temperature),
        (f"{name}.ppo.learning_rate", ppo.learning_rate),
        (f"{name}.ppo.cliprange", ppo.cliprange),
        (f"{name}.ppo.cliprange_value", ppo.cliprange_value),
        (f"{name}.ppo.adam_eps", ppo.adam_eps),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{where}: must be a positive number, got {value}")
    for where, value in (
        (f"{name}.kl_coef", rl.kl_coef),
        (f"{name}.missing_eos_penalty", rl.missing_eos_penalty),
        (f"{name}.ppo.vf_coef", ppo.vf_coef),
        (f"{name}.ppo.weight_decay", ppo.weight_decay),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}: must be a number >= 0, got {value}")
    if not 0.0 <= rl.shared_layers < 1.0:
        raise ConfigError(
            f"{name}.shared_layers: a fraction in [0, 1) (the top layers must keep adapters), got {rl.shared_layers}"
        )
    if not (0.0 <= ppo.gamma <= 1.0 and 0.0 <= ppo.lam <= 1.0):
        raise ConfigError(f"{name}.ppo.gamma / {name}.ppo.lam: must be in [0, 1], got {ppo.gamma} / {ppo.lam}")
    if rl.heldout_posts < 0:
        raise ConfigError(f"{name}.heldout_posts: must be >= 0, got {rl.heldout_posts}")
    for i, ds in enumerate(rl.prompts):
        if not ds.path or (ds.is_local and not Path(ds.path).expanduser().exists()):
            raise ConfigError(f"{name}.prompts.{i}.path: file not found: {ds.path!r}")
    if rl.reward_source == "direct":  # any labeler backend rates [D45]
        labeler = rl.direct_labeler or cfg.label.labeler
        where = f"{name}.direct_labeler" if rl.direct_labeler else "label.labeler"
        if labeler.backend != "openai_api":
            _check_model_name(labeler.model, f"{where}.model")
        if labeler.batch_size <= 0 or labeler.api.concurrency <= 0:
            raise ConfigError(f"{where}.batch_size / {where}.api.concurrency: must be positive")
        if not 1 <= labeler.top_logprobs <= 20:
            raise ConfigError(
                f"{where}.top_logprobs: must be in [1, 20] (the OpenAI API's range), got {labeler.top_logprobs}"
            )
        if rl.direct_prompt_file:
            if rl.direct_discourage_length:
                raise ConfigError(
                    "rl.direct_discourage_length: applies to the built-in prompt only; edit rl.direct_prompt_file instead"
                )
            _check_prompt_file(rl.direct_prompt_file, "rating", "rl.direct_prompt_file", None, labeler, where)


def _validate_groups(rl, name: str) -> None:
    """k samples per prompt: PPO any k >= 1, RLOO and GRPO k >= 2 (a leave-one-out baseline or a
    group std needs a second sample); Dr. GRPO is a GRPO option [D51][D54]."""
    if rl.group_size < 1:
        raise ConfigError(f"{name}.group_size: must be positive, got {rl.group_size}")
    if rl.algorithm in ("rloo", "grpo") and rl.group_size < 2:
        raise ConfigError(
            f"{name}.group_size: {rl.algorithm.upper()} compares each sample with the others of its prompt; "
            f"needs >= 2, got {rl.group_size}"
        )
    if rl.dr_grpo and rl.algorithm != "grpo":
        raise ConfigError(f"{name}.dr_grpo: a GRPO option; {name}.algorithm is {rl.algorithm!r}")
    if rl.snapshots < 0:
        raise ConfigError(f"{name}.snapshots: must be >= 0, got {rl.snapshots}")


def _validate_methods(cfg: PipelineConfig) -> None:
    """The sections dpo, oaif and best_of_n (each None when off)."""
    for name in ("dpo", "oaif", "best_of_n"):
        section = getattr(cfg, name)
        if section is not None and (not section.arms or len(set(section.arms)) != len(section.arms)):
            raise ConfigError(f"{name}.arms: list rlaif and/or rlhf, each once; got {section.arms}")
    for name in ("dpo", "oaif"):
        if getattr(cfg, name) is not None:
            _validate_preference_optim(cfg, name)
    dpo = cfg.dpo
    if dpo is not None:
        if dpo.num_epochs <= 0 or (dpo.max_steps is not None and dpo.max_steps <= 0):
            raise ConfigError(
                f"dpo.num_epochs / dpo.max_steps: must be positive, got {dpo.num_epochs} / {dpo.max_steps}"
            )
        if dpo.reference_batch_size <= 0 or (dpo.max_pairs is not None and dpo.max_pairs <= 0):
            raise ConfigError("dpo.reference_batch_size and dpo.max_pairs: must be positive")
        _check_sources(dpo.comparisons, "dpo.comparisons")
    oaif = cfg.oaif
    if oaif is not None:
        for where, value in (
            ("oaif.total_prompts", oaif.total_prompts),
            ("oaif.response_length", oaif.response_length),
            ("oaif.sample_steps", oaif.sample_steps),
        ):
            if value <= 0:
                raise ConfigError(f"{where}: must be positive, got {value}")
        if oaif.total_prompts < oaif.batch_size:
            raise ConfigError(f"oaif.total_prompts: {oaif.total_prompts} is less than one batch ({oaif.batch_size})")
        if not (math.isfinite(oaif.temperature) and oaif.temperature > 0):
            raise ConfigError(
                f"oaif.temperature: must be > 0 (two greedy samples are identical), got {oaif.temperature}"
            )
        _check_sources(oaif.prompts, "oaif.prompts")
        if oaif.labeler is not None and oaif.labeler.backend != "openai_api":
            _check_model_name(oaif.labeler.model, "oaif.labeler.model")
    bon = cfg.best_of_n
    if bon is not None:
        for where, value in (
            ("best_of_n.n", bon.n),
            ("best_of_n.max_new_tokens", bon.max_new_tokens),
            ("best_of_n.sample_batch_size", bon.sample_batch_size),
            ("best_of_n.score_batch_size", bon.score_batch_size),
        ):
            if value <= 0:
                raise ConfigError(f"{where}: must be positive, got {value}")
        if not (math.isfinite(bon.temperature) and bon.temperature > 0):
            raise ConfigError(f"best_of_n.temperature: must be > 0, got {bon.temperature}")
        if not cfg.data.eval:
            raise ConfigError("data.eval: best_of_n samples the evaluation posts; list at least one source")


def _validate_preference_optim(cfg: PipelineConfig, name: str) -> None:
    section = getattr(cfg, name)
    for where, value in (
        ("batch_size", section.batch_size),
        ("micro_batch_size", section.micro_batch_size),
        ("max_response_tokens", section.max_response_tokens),
        ("save_steps", section.save_steps),
        ("save_total_limit", section.save_total_limit),
    ):
        if value <= 0:
            raise ConfigError(f"{name}.{where}: must be positive, got {value}")
    if section.batch_size % section.micro_batch_size:
        raise ConfigError(
            f"{name}.micro_batch_size: {section.micro_batch_size} does not divide {name}.batch_size={section.batch_size}"
        )
    for where, value in (
        ("beta", section.beta),
        ("learning_rate", section.learning_rate),
        ("adam_eps", section.adam_eps),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name}.{where}: must be a positive number, got {value}")
    if not 0.0 <= section.warmup_ratio < 1.0:
        raise ConfigError(f"{name}.warmup_ratio: must be in [0, 1), got {section.warmup_ratio}")
    if section.weight_decay < 0 or (section.max_grad_norm is not None and section.max_grad_norm <= 0):
        raise ConfigError(f"{name}.weight_decay must be >= 0 and {name}.max_grad_norm > 0 (or null)")


def _check_sources(sources, where: str) -> None:
    for i, ds in enumerate(sources):
        if not ds.path:
            raise ConfigError(f"{where}.{i}.path: empty; give a Hub dataset id or a local file")
        if ds.is_local and not Path(ds.path).expanduser().exists():
            raise ConfigError(f"{where}.{i}.path: file not found: {ds.path}")


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
    if label.prompt_file:
        for name in ("fewshot_file", "discourage_length"):
            if getattr(label, name):
                raise ConfigError(
                    f"label.{name}: applies to the built-in prompt only; with label.prompt_file, write it into the file"
                )
        style = ("label.prompt_style", label.prompt_style)
        _check_prompt_file(label.prompt_file, "pair", "label.prompt_file", style, labeler, "label.labeler")
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
    if ev.judge_prompt_file:
        if ev.judge_discourage_length:
            raise ConfigError(
                "evaluate.judge_discourage_length: applies to the built-in prompt only; edit evaluate.judge_prompt_file"
            )
        style = ("evaluate.judge_style", ev.judge_style)
        _check_prompt_file(
            ev.judge_prompt_file, "pair", "evaluate.judge_prompt_file", style, ev.judge, "evaluate.judge"
        )
    if ev.judge_style == "cot" and ev.judge.max_rationale_tokens <= 0:
        raise ConfigError(
            f"evaluate.judge.max_rationale_tokens: must be positive for judge_style cot, got {ev.judge.max_rationale_tokens}"
        )


def _check_prompt_file(
    path: str, kind: str, where: str, style: tuple[str, str] | None, labeler, labeler_where: str
) -> None:
    """A judge prompt template file [L09]: it exists and parses; its style (an `answer` field means
    chain of thought) agrees with the config's; a chain-of-thought prompt has a rationale budget."""
    from rlaif.labelers.prompts import load_template  # labelers import config: import at use

    if not Path(path).expanduser().is_file():
        raise ConfigError(f"{where}: file not found: {path}")
    if not path.lower().endswith((".yaml", ".yml", ".json")):
        raise ConfigError(f"{where}: name the template file .yaml, .yml or .json (the run hashes such files): {path}")
    try:
        template = load_template(path, kind)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if style is not None and template.style != style[1]:
        raise ConfigError(
            f"{style[0]}: the prompt file {path} is a `{template.style}` prompt (an `answer` field means a "
            f"rationale first, `cot`); set {style[0]}={template.style}"
        )
    if template.style == "cot" and labeler.max_rationale_tokens <= 0:
        raise ConfigError(
            f"{labeler_where}.max_rationale_tokens: must be positive for the chain-of-thought prompt file {path}"
        )


def _check_model_name(name: str, where: str) -> None:
    if not name:
        raise ConfigError(f"{where}: empty; give smollm2-135m, tiny-random, a Hub id or a folder")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if name not in EMBEDDED_MODELS and looks_local and not Path(name).expanduser().is_dir():
        raise ConfigError(f"{where}: model folder not found: {name}")
