"""Config sections of the stages `sft` and `pairs` (the SFT policy and its sampled pairs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints (from_dict, describe)
# resolves the field annotations in this module's namespace.
from rlaif.config.data import LoraSettings
from rlaif.config.training import TrainerSettings


@dataclass
class SFTConfig(TrainerSettings):
    """Stage `sft`: supervised fine-tuning of the policy on posts and reference summaries."""

    # --- model ---
    model: str = "smollm2-135m"
    """Model to fine-tune: `smollm2-135m` (embedded), `tiny-random` (tests), a Hub id or a folder."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA settings; the saved sft/model/ is always the merged full model."""

    # Optimisation, precision, logging and checkpoints: TrainerSettings (paper.yaml follows Huang
    # et al. 2024: lr 5e-5, 1 epoch, batch 64).

    # --- data ---
    validation_fraction: float = 0.1
    """Share of the SFT rows held out for validation loss (at least 1 row)."""
    max_examples: int | None = None
    """Use at most this many training rows (None = all)."""

    # --- samples ---
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
