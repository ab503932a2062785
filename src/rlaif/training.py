"""What the Trainer-based stages (sft, reward) share: arguments, LoRA, checkpoints, saving."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainingArguments

from rlaif.artifacts import is_main_process
from rlaif.config import LoraSettings
from rlaif.models import compute_device


def training_arguments(section, checkpoint_dir: Path, seed: int, **overrides) -> TrainingArguments:
    """TrainingArguments from a stage section (sft or reward); the same fields mean the same thing."""
    kwargs = dict(
        output_dir=str(checkpoint_dir),
        learning_rate=section.learning_rate,
        lr_scheduler_type=section.lr_scheduler_type,
        warmup_steps=section.warmup_ratio,  # a float in [0, 1) is a fraction of the total steps
        weight_decay=section.weight_decay,
        num_train_epochs=section.num_train_epochs,
        max_steps=section.max_steps,
        per_device_train_batch_size=section.per_device_batch_size,
        per_device_eval_batch_size=section.per_device_batch_size,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        max_grad_norm=section.max_grad_norm,
        activation_checkpointing=section.gradient_checkpointing,
        bf16=section.dtype == "bfloat16",
        fp16=section.dtype == "float16",
        logging_steps=section.logging_steps,
        eval_strategy="steps",
        eval_steps=section.eval_steps,
        save_strategy="steps",
        save_steps=section.save_steps,
        save_total_limit=section.save_total_limit,
        seed=seed,
        data_seed=seed,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=compute_device().type == "cpu",
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def apply_lora(model, lora: LoraSettings, task_type: str):
    """Wrap `model` with peft LoRA adapters when enabled; otherwise return it unchanged."""
    if not lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    targets = lora.target_modules[0] if lora.target_modules == ["all-linear"] else lora.target_modules
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type=task_type
    )
    return get_peft_model(model, config)


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest COMPLETE checkpoint. The Trainer writes a checkpoint folder in place and
    trainer_state.json last, so a folder without it was cut short by a kill and is passed over
    (get_last_checkpoint alone would pick it and the resume would fail)."""
    if not checkpoint_dir.is_dir():
        return None
    complete = [
        p
        for p in checkpoint_dir.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1]))) if complete else None


def train_resuming(trainer, checkpoint_dir: Path, stage: str):
    """trainer.train(), resumed from the newest complete checkpoint when a killed run left one.
    Returns (TrainOutput, seconds spent training, the checkpoint resumed from or None)."""
    resume_from = last_checkpoint(checkpoint_dir)
    if resume_from and is_main_process():
        print(f"[rlaif] {stage}: resuming from {resume_from}", flush=True)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    return result, time.time() - t0, resume_from
