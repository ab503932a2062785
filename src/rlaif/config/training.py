"""The settings every Trainer-based stage (sft, reward, reward_rlhf) shares, in one dataclass that their
sections extend, so `rlaif.training.training_arguments` reads the same fields with the same meaning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainerSettings:
    """Optimisation, precision, logging and checkpoints of a transformers Trainer run."""

    # --- precision and memory ---
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype. float32 on CPU; bfloat16 on recent GPUs."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (slower)."""

    # --- optimisation ---
    learning_rate: float = 5e-5
    """Peak learning rate (AdamW)."""
    lr_scheduler_type: str = "cosine"
    """Any transformers scheduler name (cosine, linear, constant, ...)."""
    warmup_ratio: float = 0.0
    """Fraction of steps spent warming up the learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    num_train_epochs: float = 1.0
    """Passes over the training examples."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = use num_train_epochs)."""
    per_device_batch_size: int = 8
    """Examples per device per micro-step (sft: sequences; reward: pairs, two sequences each in one forward)."""
    gradient_accumulation_steps: int = 1
    """Micro-steps per optimizer step; global batch = per_device_batch_size * this * processes."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""

    # --- logging, checkpoints ---
    logging_steps: int = 5
    """Log the training loss every N optimizer steps."""
    eval_steps: int = 20
    """Compute the validation loss every N optimizer steps (when there is a validation split)."""
    save_steps: int = 20
    """Checkpoint (model, optimizer, scheduler, RNG) every N steps; a rerun resumes from the last."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints on disk."""
