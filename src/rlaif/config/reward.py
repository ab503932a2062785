"""Config section of the stages `reward` and `reward_rlhf` (reward-model training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints (from_dict, describe)
# resolves the field annotations in this module's namespace.
from rlaif.config.data import DatasetConfig, LoraSettings
from rlaif.config.training import TrainerSettings


@dataclass
class RewardConfig(TrainerSettings):
    """Stages `reward` (RLAIF arm) and `reward_rlhf` (RLHF arm): a scalar reward model trained on
    pairwise preferences. Details [D15]-[D19] in docs/implementation_details.md."""

    # --- model ---
    model: str = "sft"
    """Initial weights: `sft` = this run's sft/model (Stiennon et al. 2020 and Huang et al. 2024
    start the reward model from the SFT policy), or `smollm2-135m`, `tiny-random`, a Hub id or a folder."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA settings (the score head is always trained fully); the saved model/ is merged."""
    freeze_layers: int = 0
    """Full fine-tuning only: keep the embeddings and the first N transformer layers frozen (no
    gradients, no optimizer state); on a CPU this saves most of the backward pass. 0 = train all."""

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

    # --- optimisation (the rest is TrainerSettings; Huang et al. 2024 train the RM for 1 epoch) ---
    learning_rate: float = 1e-5
    """Peak learning rate (AdamW)."""

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
