"""Config section of the stages `reward` and `reward_rlhf` (reward-model training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints (from_dict, describe)
# resolves the field annotations in this module's namespace.
from rlaif.config.data import DatasetConfig, LoraSettings
from rlaif.config.training import TrainerSettings


@dataclass
class RewardConfig(TrainerSettings):
    """Stages `reward` (RLAIF arm) and `reward_rlhf` (RLHF arm): a scalar reward model trained on
    pairwise preferences. Details [D15]-[D19] in docs/implementation_details.md."""

    RENAMED: ClassVar[dict[str, str]] = {
        "min_confidence": "min_strength",
        "eval_min_confidence": "eval_min_strength",
    }
    """Old keys and their replacements; an old key is an error that says what changed ([H01])."""

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
    """`ai_labels`: labels/labels.jsonl of the label stage (the RLAIF arm). `human`: human
    comparisons, those in `comparisons` or, when it is empty, the training part of
    human.comparisons (the RLHF arm). `reference_preferred`: each post of data.reference_posts with
    its human reference summary preferred over an SFT sample -- a PROXY for human comparisons, not
    human comparisons."""
    comparisons: list[DatasetConfig] = field(default_factory=list)
    """Human comparisons to train on when source is `human`: openai/summarize_from_feedback rows,
    or chosen/rejected files such as ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz. Empty =
    the training part of human.comparisons. Comparisons of a post in human's held-out part are
    always left out. [H02]"""
    min_strength: int | None = None
    """Train only on human comparisons whose strength |confidence - 5| is at least this (1-4, the
    same for either summary winning: 3 keeps confidence <= 2 or >= 8); comparisons without one
    are kept. None = no filter. [H01]"""
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
    """[low, high]: the soft loss clamps P(a > b) into this range. [0.4, 0.6] is the seed's choice
    (preprocess_preference_dataset_for_rm_training.py, after Constitutional AI, Bai et al. 2022,
    §4.1, for over-confident chain-of-thought labels); Lee et al. 2023 train on the distribution
    itself, [0, 1]. The clamp bounds the score gap the soft loss asks for (logit 0.6 = 0.41), so
    the RM's score scale (metrics `score_std`) is smaller than a hard-label RM's. [D17]"""
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
    """Further human comparisons for accuracy_human (e.g. the held-out half of HH-RLHF); also what
    --eval-only scores. The held-out part of human.comparisons is measured in any case."""
    eval_min_strength: int | None = None
    """accuracy_human counts comparisons whose strength |confidence - 5| is at least this (1-4,
    symmetric; comparisons without one are kept). None = all. [H01]"""
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
