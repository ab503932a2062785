"""Typed configuration: one dataclass per stage, one YAML file for the whole pipeline.

`load_config(path, overrides)` reads the YAML, applies `--set a.b=c` overrides, and builds the
dataclasses below, checking every key and type. Errors name the field by its dotted path
(`sft.learning_rate: expected float, got 'fast'`). The docstring under each field is what
`rlaif <stage> --help` prints, so it is the single place a setting is documented.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import math
import textwrap
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the field."""


# Model names that `rlaif.models` resolves without the Hub.
EMBEDDED_MODELS = ("smollm2-135m", "tiny-random")
LOCAL_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".gz")


# ----------------------------------------------------------------------------------------------
# Shared pieces


@dataclass
class DatasetConfig:
    """One data source: a Hub dataset id or a local file."""

    path: str = ""
    """Hub dataset id (`trl-lib/tldr`, `CarperAI/openai_summarize_tldr`,
    `openai/summarize_from_feedback`) or a local .jsonl/.json/.parquet/.csv file (relative paths
    are relative to the directory you run `rlaif` from)."""
    hub_config: str | None = None
    """Hub dataset config name, e.g. `comparisons` or `axis` for openai/summarize_from_feedback."""
    split: str | None = None
    """Hub split to load (default `train`). For a local file with a `split` column, keep only rows
    with this value; None keeps every row."""
    fields: dict[str, str] = field(default_factory=dict)
    """Our field name -> the source's column name, for sources that name columns differently.
    Our fields: id, subreddit, title, post, summary (posts) or chosen, rejected (pairs)."""
    limit: int | None = None
    """Keep only the first N rows after filtering (None = all)."""
    skip: int = 0
    """Drop the first N rows after filtering, before `limit` (carves disjoint slices of one file)."""
    on_bad_row: Literal["error", "skip"] = "error"
    """`error`: a malformed row stops the run with file, line and field named. `skip`: such rows
    are dropped and counted in the stage metrics."""

    @property
    def is_local(self) -> bool:
        p = self.path
        return p.startswith((".", "/", "~")) or p.lower().endswith(LOCAL_DATA_SUFFIXES)


@dataclass
class LoraSettings:
    """LoRA through peft. Off means full fine-tuning."""

    enabled: bool = False
    """Train LoRA adapters instead of all weights."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator (effective scale alpha / r)."""
    dropout: float = 0.0
    """Adapter dropout; 0 keeps training deterministic, as RLHF implementations prefer."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Modules that get adapters; `all-linear` is peft's shorthand for every linear layer but the head."""


@dataclass
class DataConfig:
    """Where the posts come from and how prompts are built. Shared by every stage."""

    sft: list[DatasetConfig] = field(default_factory=list)
    """Posts with human reference summaries, for supervised fine-tuning."""
    prompts: list[DatasetConfig] = field(default_factory=list)
    """Posts (summaries not needed) for the pairs, labels, reward and RL stages. A comparisons set
    in the summarize_from_feedback schema is de-duplicated into unique posts."""
    eval: list[DatasetConfig] = field(default_factory=list)
    """Held-out posts, with reference summaries where available, for evaluation."""
    reference_posts: list[DatasetConfig] = field(default_factory=list)
    """Posts with human reference summaries NOT used for SFT: the reward stage's
    `reference_preferred` source pairs each reference with an SFT sample, and their references set
    the reward normalisation. Keep them disjoint from data.sft (use skip/limit on one file)."""
    max_prompt_tokens: int = 512
    """Token budget of a formatted prompt. Longer posts are cut at the last newline (else sentence
    end, else word boundary) that fits, as OpenAI's TL;DR preprocessing does (Stiennon et al. 2020)."""
    max_summary_tokens: int = 53
    """Token budget of a reference summary, EOS excluded; 53 matches the RL response cap of
    Huang et al. 2024 so SFT targets and sampled responses have the same horizon."""


# ----------------------------------------------------------------------------------------------
# Stages


@dataclass
class SFTConfig:
    """Stage `sft`: supervised fine-tuning of the policy on posts and reference summaries."""

    # --- model ---
    model: str = "smollm2-135m"
    """Model to fine-tune: `smollm2-135m` (embedded), `tiny-random` (tests), a Hub id or a folder."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype. float32 on CPU; bfloat16 on recent GPUs."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA settings; the saved sft/model/ is always the merged full model."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (slower)."""

    # --- optimisation (paper.yaml follows Huang et al. 2024: lr 5e-5, 1 epoch, batch 64) ---
    learning_rate: float = 5e-5
    """Peak learning rate (AdamW)."""
    lr_scheduler_type: str = "cosine"
    """Any transformers scheduler name (cosine, linear, constant, ...)."""
    warmup_ratio: float = 0.0
    """Fraction of steps spent warming up the learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    num_train_epochs: float = 1.0
    """Passes over the training split."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = use num_train_epochs)."""
    per_device_batch_size: int = 8
    """Sequences per device per micro-step."""
    gradient_accumulation_steps: int = 1
    """Micro-steps per optimizer step; global batch = per_device_batch_size * this * processes."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""

    # --- data ---
    validation_fraction: float = 0.1
    """Share of the SFT rows held out for validation loss (at least 1 row)."""
    max_examples: int | None = None
    """Use at most this many training rows (None = all)."""

    # --- logging, checkpoints, samples ---
    logging_steps: int = 5
    """Log the training loss every N optimizer steps."""
    eval_steps: int = 20
    """Compute the validation loss every N optimizer steps."""
    save_steps: int = 20
    """Checkpoint (model, optimizer, scheduler, RNG) every N steps; a rerun resumes from the last."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints on disk."""
    num_samples: int = 4
    """Validation posts to summarise greedily into sft/samples.jsonl after training."""
    sample_max_new_tokens: int = 53
    """Token cap for those sample summaries."""


@dataclass
class PairsConfig:
    """Stage `pairs`: two sampled summaries per prompt-pool post from the SFT policy (sft/model)."""

    num_posts: int | None = None
    """Posts [0, num_posts) of the prompt pool (data.prompts, de-duplicated, in file order) get pairs;
    the rest, [num_posts, end), is left for RL so the reward model never trains on RL prompts.
    None uses the whole pool (RL then reuses the pairs' posts)."""
    temperature: float = 1.0
    """Sampling temperature; 1.0 samples the SFT policy's own distribution, so the labeled pairs
    look like what the policy produces. Must be > 0: greedy decoding gives two identical summaries."""
    max_new_tokens: int = 53
    """Token cap per summary; 53 matches the RL response cap of Huang et al. 2024."""
    batch_size: int = 8
    """Posts per generation batch (each yields two samples)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the SFT model while sampling."""


@dataclass
class OpenAIApiSettings:
    """An OpenAI-compatible HTTP server as labeler: vLLM `serve`, llama.cpp server, or OpenAI."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """Server root including `/v1`; requests go to `{base_url}/chat/completions` or `/completions`."""
    endpoint: Literal["chat", "completions"] = "chat"
    """`chat`: the server applies the model's chat template; `completions`: the prompt is sent as
    plain text (system, user and assistant parts joined by blank lines)."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the API key (sent as a Bearer token, never
    logged or written). None sends no key (local servers)."""
    continue_final_message: bool = False
    """Chat only. On: the assistant turn is sent half-written (`Rationale:`, later `... Preferred
    Summary=`) and the server continues it (vLLM's `continue_final_message`). Off (OpenAI): the
    rationale is the assistant's reply and the answer is asked for in a second user turn."""
    concurrency: int = 4
    """Requests in flight at once (one thread each)."""
    timeout_s: float = 60.0
    """Seconds before a request counts as timed out (and is retried)."""
    max_retries: int = 4
    """Retries after a 429, a 5xx, a timeout, a dropped connection or an unreadable body. A pair
    still failing after them is written to labels/failures.jsonl, never dropped silently."""
    backoff_s: float = 1.0
    """First retry delay in seconds, doubled on each retry; a longer Retry-After header wins."""


@dataclass
class LabelerSettings:
    """An LLM judge behind one interface (rlaif.labelers.make_labeler). The `label` stage, the judge
    of `evaluate` and a direct-RLAIF reward all use it, each with its own prompts."""

    backend: Literal["hf_local", "openai_api", "vllm_offline"] = "hf_local"
    """`hf_local`: transformers in this process; `openai_api`: an HTTP server; `vllm_offline`:
    vLLM's offline engine (needs `pip install vllm`)."""
    model: str = "smollm2-135m"
    """hf_local/vllm_offline: `smollm2-135m` (embedded), `tiny-random`, a Hub id or a folder;
    openai_api: the model name the server expects."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype (hf_local, vllm_offline)."""
    batch_size: int = 16
    """Sequences per forward batch (hf_local); a pair is two sequences, one per order."""
    max_rationale_tokens: int = 64
    """Token cap of the chain-of-thought rationale (stage 1 of a `cot` prompt)."""
    rationale_temperature: float = 0.0
    """0 decodes the rationale greedily, so labels are deterministic; > 0 samples it."""
    top_logprobs: int = 20
    """An order is undecided when neither `1` nor `2` is among this many most likely next tokens
    (the most OpenAI's API returns is 20)."""
    api: OpenAIApiSettings = field(default_factory=OpenAIApiSettings)
    """Settings of the `openai_api` backend."""


@dataclass
class LabelConfig:
    """Stage `label`: an LLM says which summary of each pair is better, in both orders, and the
    two answers average into a soft label P(a > b) (Lee et al. 2023, RLAIF, §2.1)."""

    labeler: LabelerSettings = field(default_factory=LabelerSettings)
    """The judge model and backend."""

    # --- prompt ---
    prompt_style: Literal["cot", "base"] = "cot"
    """`cot`: the labeler first writes a rationale, then `Preferred Summary=` is appended and the
    next-token probabilities of `1`/`2` are read (0-shot chain of thought aligned best with humans
    on TL;DR in Lee et al. 2023); `base`: the probabilities are read right after the pair."""
    fewshot_file: str | None = None
    """JSONL of exemplars shown before each pair (fields text, summary_1, summary_2, preferred
    1 or 2, and rationale for `cot`); None = 0-shot."""

    # --- output ---
    undecided: Literal["drop", "half"] = "drop"
    """A pair is undecided when an order has neither `1` nor `2` among the top tokens. `drop`:
    p_a is null and reward training skips it; `half`: p_a is 0.5. Both are counted in metrics."""
    max_pairs: int | None = None
    """Label at most the first N pairs of pairs/pairs.jsonl (None = all)."""
    max_failed_fraction: float = 0.0
    """Share of pairs that may still fail after retries (HTTP backend) for the stage to finish;
    above it the stage stops as failed and a rerun retries just those pairs."""

    # --- alignment with human labels: `rlaif label CONFIG --eval-alignment` ---
    alignment_summarize: list[DatasetConfig] = field(default_factory=list)
    """Human TL;DR comparisons (openai/summarize_from_feedback schema), judged with this prompt."""
    alignment_dialogue: list[DatasetConfig] = field(default_factory=list)
    """Human dialogue comparisons (HH-RLHF chosen/rejected transcripts), judged with the
    harmlessness preamble of the dialogue task."""
    alignment_min_confidence: int | None = None
    """For alignment_summarize: keep only comparisons whose annotator confidence (extra.confidence,
    1-9) is at least this; when set, comparisons without one are left out. HH-RLHF has none."""
    alignment_max_pairs: int = 200
    """Comparisons judged per set (the first N after the confidence filter)."""


@dataclass
class RewardConfig:
    """Stages `reward` (RLAIF arm) and `reward_rlhf` (RLHF arm): a scalar reward model trained on
    pairwise preferences. Details [D15]-[D19] in docs/implementation_details.md."""

    # --- model ---
    model: str = "sft"
    """Initial weights: `sft` = this run's sft/model (Stiennon et al. 2020 and Huang et al. 2024
    start the reward model from the SFT policy), or `smollm2-135m`, `tiny-random`, a Hub id or a folder."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype. float32 on CPU; bfloat16 on recent GPUs."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA settings (the score head is always trained fully); the saved model/ is merged."""
    freeze_layers: int = 0
    """Full fine-tuning only: keep the embeddings and the first N transformer layers frozen (no
    gradients, no optimizer state); on a CPU this saves most of the backward pass. 0 = train all."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (slower)."""

    # --- training data ---
    source: Literal["ai_labels", "human", "reference_preferred"] = "ai_labels"
    """`ai_labels`: labels/labels.jsonl of the label stage (the RLAIF arm). `human`: the human
    comparisons in `comparisons`. `reference_preferred`: each post of data.reference_posts with its
    human reference summary preferred over an SFT sample -- a PROXY for human comparisons, not
    human comparisons (the offline stand-in for TL;DR human preferences)."""
    comparisons: list[DatasetConfig] = field(default_factory=list)
    """Human comparisons to train on when source is `human`: openai/summarize_from_feedback rows,
    or chosen/rejected files such as ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz."""
    min_confidence: int | None = None
    """Train only on human comparisons with confidence >= this (summarize_from_feedback's 1-9
    scale); comparisons without a confidence are kept. None = no filter."""
    validation_fraction: float = 0.1
    """Share of the training pairs held out for accuracy_ai_heldout (accuracy_heldout for the other
    sources), the calibration table and the validation loss; 0 = hold out nothing."""
    max_examples: int | None = None
    """Train on at most this many pairs (None = all)."""
    max_length: int | None = None
    """Token cap on prompt + summary + EOS. Longer inputs lose tokens from the START of the prompt
    (the end, where two dialogue responses differ, is kept). Saved as config.reward_max_length, so
    scoring cuts the same way. None = no cap (TL;DR prompts are already cut to data.max_prompt_tokens)."""

    # --- loss ---
    loss: Literal["soft", "hard"] = "soft"
    """`soft`: cross-entropy between sigmoid(r_a - r_b) and the label P(a > b) (Lee et al. 2023,
    §2.2.1); `hard`: Bradley-Terry -log sigmoid(r_chosen - r_rejected). [D16]"""
    label_clamp: list[float] = field(default_factory=lambda: [0.4, 0.6])
    """[low, high]: the soft loss clamps P(a > b) into this range, as Constitutional AI (Bai et al.
    2022, §4.1) does for chain-of-thought labels; [0, 1] turns clamping off. [D17]"""
    margin_coef: float = 0.0
    """Per-pair margin = margin_coef * preference strength |2p - 1| (p before clamping; 1 for a
    human choice), asking the preferred side to win by it (Llama 2, Touvron et al. 2023, eq. 2). 0 = off."""
    center_coef: float = 0.0
    """Weight of mean((r_a + r_b)^2), which keeps scores centred at 0 (Eisenstein et al. 2023). [D18]"""

    # --- reference_preferred samples ---
    sample_temperature: float = 0.7
    """Temperature of the SFT samples that the references are preferred over."""
    sample_batch_size: int = 8
    """Prompts per generation batch for those samples."""

    # --- optimisation (Huang et al. 2024 train the reward model for 1 epoch) ---
    learning_rate: float = 1e-5
    """Peak learning rate (AdamW)."""
    lr_scheduler_type: str = "cosine"
    """Any transformers scheduler name (cosine, linear, constant, ...)."""
    warmup_ratio: float = 0.0
    """Fraction of steps spent warming up the learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    num_train_epochs: float = 1.0
    """Passes over the training pairs."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = use num_train_epochs)."""
    per_device_batch_size: int = 8
    """Pairs per device per micro-step (each pair is two sequences in one forward pass)."""
    gradient_accumulation_steps: int = 1
    """Micro-steps per optimizer step; global batch = per_device_batch_size * this * processes."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""

    # --- evaluation and normalisation ---
    eval_comparisons: list[DatasetConfig] = field(default_factory=list)
    """Human comparisons for accuracy_human (e.g. summarize_from_feedback validation rows, or the
    held-out half of HH-RLHF); also what --eval-only scores."""
    eval_min_confidence: int | None = 8
    """accuracy_human counts comparisons with confidence >= this (comparisons without one are
    kept); 8 as in the seed. None = all."""
    eval_model: str = ""
    """The reward model --eval-only scores: a saved folder; empty = this stage's own model/."""
    eval_batch_size: int = 16
    """Sequences per forward pass when scoring."""
    calibration_bins: int = 10
    """Bins of the calibration table (predicted P(a > b) against the observed frequency)."""
    normalize: bool = True
    """Store a bias (config.reward_bias) so that the reference summaries of data.reference_posts
    (else the summaries of the training pairs) score 0 on average (Huang et al. 2024, §6). [D19]"""
    normalization_examples: int = 256
    """Summaries used for that mean."""

    # --- logging, checkpoints ---
    logging_steps: int = 5
    """Log the training loss every N optimizer steps."""
    eval_steps: int = 20
    """Compute the validation loss every N optimizer steps (when validation_fraction > 0)."""
    save_steps: int = 20
    """Checkpoint (model, optimizer, scheduler, RNG) every N steps; a rerun resumes from the last."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints on disk."""


@dataclass
class EvaluateConfig:
    """Stage `evaluate`: win rates of the policies against each other and the human references on
    held-out posts (data.eval), judged by an LLM in both orders, plus judge-free checks."""

    # --- generation (the same for every system) ---
    max_new_tokens: int = 53
    """Token cap of every system's greedy summary; 53 is the RL response length of Huang et al. 2024."""
    batch_size: int = 8
    """Posts per generation batch."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the policies while generating and of the reward models while scoring."""
    max_posts: int | None = None
    """Evaluate on at most the first N posts of data.eval (None = all)."""

    # --- comparisons ---
    comparisons: list[str] = field(default_factory=lambda: [
        "rl:sft", "rl:reference", "sft:reference", "rl_rlhf:sft", "rl_rlhf:reference", "rl:rl_rlhf"])
    """`A:B` pairs to judge, win rate reported for A. Systems: sft, rl (RLAIF arm), rl_rlhf (RLHF
    arm), reference (the human summary, on posts that have one). Pairs naming a system this run
    lacks (no RLHF arm, no references) are skipped. Lee et al. 2023 report RLAIF vs SFT, RLHF vs
    SFT and RLAIF vs RLHF."""

    # --- judge ---
    judge: LabelerSettings = field(default_factory=LabelerSettings)
    """The judge model and backend (any labeler backend); its prompt is the evaluation's own."""
    judge_style: Literal["cot", "base"] = "cot"
    """`cot`: the judge writes a rationale (judge.max_rationale_tokens) before answering; `base`:
    the answer is read at once (fast, what a small CPU judge can afford)."""

    # --- statistics ---
    bootstrap_samples: int = 1000
    """Bootstrap resamples of the posts for the 95% confidence intervals."""


@dataclass
class ReportConfig:
    """Stage `report`: report/report.html (self-contained) and report/report.md from every stage's outputs."""

    num_samples: int = 4
    """Held-out posts shown with their reference, SFT and RL summaries side by side."""
    max_post_chars: int = 1200
    """Posts longer than this are cut (with an ellipsis) in the sample table."""


@dataclass
class LoggingConfig:
    """Optional experiment tracking of stage metrics. Never required; the files in runs/ are the record."""

    backend: Literal["none", "tensorboard", "wandb", "trackio"] = "none"
    """`none`, `tensorboard` (needs `pip install tensorboard`; logs under runs/<name>/tensorboard),
    `wandb` (needs `pip install wandb`; the key comes from WANDB_API_KEY) or `trackio`."""
    project: str = "rlaif"
    """Project name for wandb and trackio; each stage logs as a run named `<run name>-<stage>`."""


@dataclass
class PPOSettings:
    """PPO optimisation (Huang et al. 2024, arXiv 2403.17031, §7; reference ppo.py `PpoHParams`)."""

    # --- schedule ---
    ppo_epochs: int = 4
    """Passes over each rollout batch (reference `noptepochs`). [D10]"""
    num_minibatches: int = 1
    """Optimizer steps per PPO epoch: the rollout batch is shuffled and cut into this many. [D10]"""
    micro_batch_size: int = 8
    """Sequences per forward/backward inside a minibatch (gradient accumulation). A memory knob:
    results change only by float rounding."""

    # --- losses ---
    cliprange: float = 0.2
    """Policy ratio clip epsilon. [D10]"""
    cliprange_value: float = 0.2
    """Value clip around the rollout-time value. [D11]"""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss (reference `vf_coef`). [D11]"""
    gamma: float = 1.0
    """GAE discount; 1 because the only real reward is terminal and episodes are short. [D07]"""
    lam: float = 0.95
    """GAE lambda. [D07]"""
    whiten_advantages: bool = True
    """Normalise advantages over the rollout batch's real tokens. [D08]"""

    # --- optimiser ---
    learning_rate: float = 3e-6
    """AdamW learning rate; 3e-6 is Huang et al.'s for full fine-tuning; LoRA (lean) wants ~100x more. [D13]"""
    lr_scheduler_type: str = "cosine"
    """Any transformers scheduler name, stepped once per optimizer step (cosine decays to 0). [D13]"""
    adam_eps: float = 1e-5
    """AdamW epsilon (reference 1e-5; PyTorch default 1e-8). [D13]"""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float | None = None
    """Clip the gradient norm to this; None = no clipping (as the reference and TRL 0.13's PPO)."""


@dataclass
class RLConfig:
    """Stages `rl` (RLAIF arm) and `rl_rlhf` (RLHF arm): PPO of the SFT policy against a reward
    source. Details [D01]-[D14], [D40]-[D45] in docs/implementation_details.md."""

    # --- models ---
    mode: Literal["standard", "lean"] = "standard"
    """`standard`: separate policy, value, reference and reward models, full fine-tuning (what
    TRL 0.13's PPOTrainer does). `lean`: one frozen base (sft/model) with a LoRA policy adapter and
    a value head on its hidden states; the reference is the base with the adapter off; the reward
    model stays separate, frozen. Far less memory and compute per episode. [D40]"""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of every model. float32 on CPU."""
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(enabled=True))
    """Adapter of `lean` mode (`enabled` must stay true there); `standard` does not read it."""

    # --- reward ---
    reward_source: Literal["reward_model", "direct"] = "reward_model"
    """Reward of the RLAIF arm (`rl`). `reward_model`: the trained RM (reward/model) with its
    reward_bias. `direct`: d-RLAIF (Lee et al. 2023, §2.3): the AI labeler rates each summary 1-10
    and the reward is the probability-weighted mean score rescaled to [-1, 1]; no RM. [D45]
    The RLHF arm (`rl_rlhf`) always uses reward_rlhf/model."""
    direct_labeler: LabelerSettings | None = None
    """Judge of reward_source `direct`; None = label.labeler. Backend hf_local only (it reads the
    full next-token distribution over the ten scores)."""

    # --- prompts ---
    prompts: list[DatasetConfig] = field(default_factory=list)
    """Posts to optimise on; empty = the prompt pool's posts the RM never saw: data.prompts from
    index pairs.num_posts on (all of data.prompts when num_posts is None)."""

    # --- rollout ---
    total_episodes: int = 64
    """Responses sampled over the whole run; PPO steps = total_episodes // (rollout_batch_size x processes)."""
    rollout_batch_size: int = 8
    """Prompts per process per PPO step (one response each)."""
    response_length: int = 53
    """Tokens sampled per response, then cut after the first EOS (Huang et al. 2024: 53). [D02]"""
    temperature: float = 0.7
    """Sampling temperature; logits are divided by it for every log-prob too (Huang et al. 2024: 0.7). [D14]"""
    forward_batch_size: int = 8
    """Sequences per no-grad forward pass (reference, reward, value) while scoring a rollout."""

    # --- reward shaping ---
    kl_coef: float = 0.05
    """beta in r_t = -beta * KL_t against the SFT policy, on every token (Huang et al. 2024: 0.05). [D05]"""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """k1 = logp - ref_logp (reference); k3 = (r - 1) - log r, never negative (Schulman 2020). [D05]"""
    missing_eos_penalty: float = 1.0
    """Subtracted from the score of a response that never emits EOS. [D04]"""
    whiten_rewards: bool = False
    """Normalise the per-token rewards (mean kept) before GAE. [D09]"""

    # --- optimisation ---
    ppo: PPOSettings = field(default_factory=PPOSettings)
    """PPO epochs, minibatches, clipping, loss weights and the optimiser."""

    # --- logging, checkpoints, evaluation ---
    sample_steps: int = 10
    """Append a few prompts with their sampled responses and scores to rl/samples.jsonl every N steps."""
    num_samples: int = 2
    """Responses written per sampling step."""
    save_steps: int = 10
    """Checkpoint (trainable weights, optimizer, scheduler, RNG) every N PPO steps; a rerun resumes from the last."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints on disk."""
    heldout_posts: int = 64
    """After training, greedy summaries of the first N data.eval posts by the SFT model and by the
    policy, scored by the reward, with the policy's KL to SFT on them, go into rl/metrics.json
    (0 or no data.eval = off)."""


# ----------------------------------------------------------------------------------------------
# The whole pipeline


@dataclass
class PipelineConfig:
    """One run of the pipeline: shared settings plus one section per stage."""

    name: str = "run"
    """Run name; the default output_dir is runs/<name>."""
    output_dir: str = ""
    """Where every stage writes (default runs/<name>)."""
    seed: int = 0
    """Seed for data splits, sampling and initialisation."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data sources and prompt construction."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Stage sft."""
    pairs: PairsConfig = field(default_factory=PairsConfig)
    """Stage pairs."""
    label: LabelConfig = field(default_factory=LabelConfig)
    """Stage label."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Stage reward: the RLAIF arm's reward model (source ai_labels)."""
    reward_rlhf: RewardConfig | None = None
    """Stage reward_rlhf: the RLHF arm's reward model (source human or reference_preferred); None = no RLHF arm."""
    rl: RLConfig | None = field(default_factory=RLConfig)
    """Stages rl and rl_rlhf: PPO against each arm's reward; None = no RL."""
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    """Stage evaluate: judged win rates, reward-model scores, lengths and ROUGE-L on data.eval."""
    report: ReportConfig = field(default_factory=ReportConfig)
    """Stage report: report.html and report.md from every stage's outputs."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Optional metric tracking (TensorBoard, Weights & Biases, Trackio); off by default."""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


# ----------------------------------------------------------------------------------------------
# Loading, validation, overrides


def load_config(path: str | Path, overrides: list[str] = ()) -> PipelineConfig:
    """Read a YAML config, apply `key.sub=value` overrides, validate, and return it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    for item in overrides:
        apply_override(raw, item)
    cfg = from_dict(PipelineConfig, raw, where="")
    validate(cfg)
    return cfg


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is parsed as YAML (`1e-4`, `true`, `[a, b]`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    node: Any = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(node, part, key)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
    parsed = yaml.safe_load(value) if value != "" else ""
    if isinstance(node, list):
        node[_list_index(node, parts[-1], key)] = parsed
    else:
        node[parts[-1]] = parsed


def _list_index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from plain YAML data, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known keys here: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in raw.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {_show(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        return [_coerce(args[0], v, f"{where}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        return {_coerce(args[0], k, where): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        # YAML 1.1 reads `5e-5` (no dot) as a string; accept any numeric spelling.
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")  # a bug in this file, not in the YAML


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


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
    if rm.source == "human" and not rm.comparisons:
        raise ConfigError(f"{name}.comparisons: source `human` needs at least one comparison source")
    if rm.source == "reference_preferred" and not cfg.data.reference_posts:
        raise ConfigError(f"data.reference_posts: {name}.source `reference_preferred` needs posts with reference summaries")
    clamp = rm.label_clamp
    if len(clamp) != 2 or not 0.0 <= clamp[0] <= 0.5 <= clamp[1] <= 1.0:
        raise ConfigError(f"{name}.label_clamp: expected [low, high] with 0 <= low <= 0.5 <= high <= 1, got {clamp}")
    if not 0.0 <= rm.validation_fraction < 1.0:
        raise ConfigError(f"{name}.validation_fraction: must be in [0, 1), got {rm.validation_fraction}")
    if rm.max_length is not None and rm.max_length < 16:
        raise ConfigError(f"{name}.max_length: {rm.max_length} tokens is too short for a prompt and a summary")
    if rm.freeze_layers < 0 or (rm.freeze_layers and rm.lora.enabled):
        raise ConfigError(f"{name}.freeze_layers: must be >= 0 and is for full fine-tuning only (lora.enabled is {rm.lora.enabled})")
    if rm.calibration_bins < 1:
        raise ConfigError(f"{name}.calibration_bins: must be at least 1, got {rm.calibration_bins}")


def _validate_rl(cfg: PipelineConfig) -> None:
    rl, ppo = cfg.rl, cfg.rl.ppo
    if rl.mode == "lean" and not rl.lora.enabled:
        raise ConfigError("rl.lora.enabled: lean mode trains a LoRA adapter; use rl.mode=standard for full fine-tuning")
    for where, value in (("rl.total_episodes", rl.total_episodes), ("rl.rollout_batch_size", rl.rollout_batch_size),
                         ("rl.response_length", rl.response_length), ("rl.forward_batch_size", rl.forward_batch_size),
                         ("rl.sample_steps", rl.sample_steps), ("rl.save_steps", rl.save_steps),
                         ("rl.save_total_limit", rl.save_total_limit), ("rl.ppo.ppo_epochs", ppo.ppo_epochs),
                         ("rl.ppo.num_minibatches", ppo.num_minibatches), ("rl.ppo.micro_batch_size", ppo.micro_batch_size)):
        if value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value}")
    if rl.rollout_batch_size % ppo.num_minibatches:
        raise ConfigError(f"rl.ppo.num_minibatches: {ppo.num_minibatches} does not divide rl.rollout_batch_size={rl.rollout_batch_size}")
    if rl.total_episodes < rl.rollout_batch_size:
        raise ConfigError(f"rl.total_episodes: {rl.total_episodes} is less than one rollout batch ({rl.rollout_batch_size})")
    for where, value in (("rl.temperature", rl.temperature), ("rl.ppo.learning_rate", ppo.learning_rate),
                         ("rl.ppo.cliprange", ppo.cliprange), ("rl.ppo.cliprange_value", ppo.cliprange_value),
                         ("rl.ppo.adam_eps", ppo.adam_eps)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{where}: must be a positive number, got {value}")
    for where, value in (("rl.kl_coef", rl.kl_coef), ("rl.missing_eos_penalty", rl.missing_eos_penalty),
                         ("rl.ppo.vf_coef", ppo.vf_coef), ("rl.ppo.weight_decay", ppo.weight_decay)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}: must be a number >= 0, got {value}")
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
            raise ConfigError(f"{where}.backend: reward_source `direct` needs the hf_local backend, got {labeler.backend!r}")
        _check_model_name(labeler.model, f"{where}.model")


def _validate_pairs_label(cfg: PipelineConfig) -> None:
    pairs, label = cfg.pairs, cfg.label
    if pairs.num_posts is not None and pairs.num_posts <= 0:
        raise ConfigError(f"pairs.num_posts: must be positive, got {pairs.num_posts}")
    if pairs.temperature <= 0:
        raise ConfigError(f"pairs.temperature: must be > 0 (greedy decoding gives two identical summaries), got {pairs.temperature}")
    for where, value in (("pairs.max_new_tokens", pairs.max_new_tokens), ("pairs.batch_size", pairs.batch_size),
                         ("label.labeler.batch_size", label.labeler.batch_size), ("label.labeler.api.concurrency", label.labeler.api.concurrency),
                         ("label.alignment_max_pairs", label.alignment_max_pairs)):
        if value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value}")
    labeler = label.labeler
    if labeler.backend != "openai_api":
        _check_model_name(labeler.model, "label.labeler.model")
    if label.prompt_style == "cot" and labeler.max_rationale_tokens <= 0:
        raise ConfigError(f"label.labeler.max_rationale_tokens: must be positive for prompt_style cot, got {labeler.max_rationale_tokens}")
    if not 1 <= labeler.top_logprobs <= 20:
        raise ConfigError(f"label.labeler.top_logprobs: must be in [1, 20] (the OpenAI API's range), got {labeler.top_logprobs}")
    if label.fewshot_file and not Path(label.fewshot_file).expanduser().is_file():
        raise ConfigError(f"label.fewshot_file: file not found: {label.fewshot_file}")
    if not 0.0 <= label.max_failed_fraction <= 1.0:
        raise ConfigError(f"label.max_failed_fraction: must be in [0, 1], got {label.max_failed_fraction}")
    if labeler.api.timeout_s <= 0 or labeler.api.max_retries < 0 or labeler.api.backoff_s < 0:
        raise ConfigError("label.labeler.api: timeout_s must be > 0, max_retries and backoff_s >= 0")
    for section in ("alignment_summarize", "alignment_dialogue"):
        for i, ds in enumerate(getattr(label, section)):
            if not ds.path:
                raise ConfigError(f"label.{section}.{i}.path: empty; give a Hub dataset id or a local file")
            if ds.is_local and not Path(ds.path).expanduser().exists():
                raise ConfigError(f"label.{section}.{i}.path: file not found: {ds.path}")


EVAL_SYSTEMS = ("sft", "rl", "rl_rlhf", "reference")


def _validate_evaluate(cfg: PipelineConfig) -> None:
    ev = cfg.evaluate
    for i, item in enumerate(ev.comparisons):
        a, sep, b = item.partition(":")
        if not sep or a not in EVAL_SYSTEMS or b not in EVAL_SYSTEMS or a == b:
            raise ConfigError(f"evaluate.comparisons.{i}: {item!r} is not `A:B` with two different systems of {', '.join(EVAL_SYSTEMS)}")
    for where, value in (("evaluate.max_new_tokens", ev.max_new_tokens), ("evaluate.batch_size", ev.batch_size),
                         ("evaluate.bootstrap_samples", ev.bootstrap_samples),
                         ("evaluate.judge.batch_size", ev.judge.batch_size), ("report.num_samples", cfg.report.num_samples + 1)):
        if value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value}")
    if ev.max_posts is not None and ev.max_posts <= 0:
        raise ConfigError(f"evaluate.max_posts: must be positive, got {ev.max_posts}")
    if ev.judge.backend != "openai_api":
        _check_model_name(ev.judge.model, "evaluate.judge.model")
    if ev.judge_style == "cot" and ev.judge.max_rationale_tokens <= 0:
        raise ConfigError(f"evaluate.judge.max_rationale_tokens: must be positive for judge_style cot, got {ev.judge.max_rationale_tokens}")


def _check_model_name(name: str, where: str) -> None:
    if not name:
        raise ConfigError(f"{where}: empty; give smollm2-135m, tiny-random, a Hub id or a folder")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if name not in EMBEDDED_MODELS and looks_local and not Path(name).expanduser().is_dir():
        raise ConfigError(f"{where}: model folder not found: {name}")


# ----------------------------------------------------------------------------------------------
# Serialisation, hashing and help


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def to_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def section_hash(section: Any) -> str:
    """Stable hash of one config section, for the manifest's freshness checks."""
    blob = json.dumps(to_dict(section), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (the convention tyro and TRL use), parsed with ast."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def describe(cls: type, prefix: str = "", instance: Any = None) -> list[str]:
    """Help lines `key (type, default): doc` for every field of a section, nested sections flattened."""
    instance = instance if instance is not None else cls()
    hints, docs, lines = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        key, value = f"{prefix}{f.name}", getattr(instance, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"  {key}: {docs.get(f.name, '')}")
            lines += describe(hints[f.name], f"{key}.", value)
        else:
            type_name = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            lines.append(f"  {key} ({type_name} = {value!r}): {docs.get(f.name, '')}")
    return lines
