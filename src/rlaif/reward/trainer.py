"""Training and evaluating the reward model on pairs: a transformers Trainer with a pairwise loss.

Each batch holds B pairs; both summaries of every pair go through the model in one forward pass
(2B sequences), scores come back as r_a = scores[:B], r_b = scores[B:].
"""

from __future__ import annotations

import torch
from datasets import Dataset
from transformers import Trainer

from rlaif.config import RewardConfig
from rlaif.reward.losses import (
    calibration_table,
    clamp_labels,
    expected_calibration_error,
    pair_loss,
    preference_accuracy,
)
from rlaif.reward.model import encode, pad_batch, raw_scores


def training_features(pair: dict, settings: RewardConfig) -> tuple[float, float]:
    """(label, margin) of one pair: the soft loss sees p_a clamped [D17]; the margin scales with the
    strength of the unclamped preference, |2 p_a - 1|."""
    p_a = pair["p_a"]
    label = clamp_labels(torch.tensor(p_a), *settings.label_clamp).item() if settings.loss == "soft" else p_a
    return label, settings.margin_coef * abs(2.0 * p_a - 1.0)


def tokenize_pairs(pairs: list[dict], tokenizer, settings: RewardConfig) -> Dataset:
    """Token ids of both sides plus label and margin; hard-loss ties (p_a = 0.5) are dropped."""
    rows = []
    for pair in pairs:
        if settings.loss == "hard" and pair["p_a"] == 0.5:
            continue
        label, margin = training_features(pair, settings)
        rows.append(
            {
                "a_ids": encode(tokenizer, pair["prompt"], pair["summary_a"], settings.max_length),
                "b_ids": encode(tokenizer, pair["prompt"], pair["summary_b"], settings.max_length),
                "p_a": label,
                "margin": margin,
            }
        )
    return Dataset.from_list(rows)


class PairCollator:
    """Features {a_ids, b_ids, p_a, margin} -> {input_ids (2B, T), attention_mask (2B, T), p_a (B,), margin (B,)}."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = pad_batch([f["a_ids"] for f in features] + [f["b_ids"] for f in features], self.pad_token_id)
        batch["p_a"] = torch.tensor([f["p_a"] for f in features], dtype=torch.float32)
        batch["margin"] = torch.tensor([f["margin"] for f in features], dtype=torch.float32)
        return batch


class PairwiseRewardTrainer(Trainer):
    """Trainer whose loss is the pairwise preference loss of `settings` ([D16]-[D18])."""

    def __init__(self, *args, settings: RewardConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.model_accepts_loss_kwargs = False  # the loss is a mean over pairs; Trainer divides it for accumulation

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        scores = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits[:, 0]  # (2B,)
        r_a, r_b = scores.float().chunk(2)  # (B,), (B,)
        margin = inputs["margin"] if self.settings.margin_coef else None
        loss = pair_loss(r_a, r_b, inputs["p_a"], self.settings.loss, margin, self.settings.center_coef)
        return (loss, {"r_a": r_a, "r_b": r_b}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Only the validation loss is needed here; accuracy and calibration come from evaluate_pairs.
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None


def evaluate_pairs(model, tokenizer, pairs: list[dict], batch_size: int, max_length: int | None, bins: int) -> dict:
    """Accuracy against the labels' preferred side, mean score gap, and the calibration table."""
    if not pairs:
        return {"pairs": 0}
    n = len(pairs)
    scores = raw_scores(
        model,
        tokenizer,
        [p["prompt"] for p in pairs] * 2,
        [p["summary_a"] for p in pairs] + [p["summary_b"] for p in pairs],
        batch_size,
        max_length,
    )
    r_a, r_b = scores[:n], scores[n:]  # (N,), (N,)
    p_a = torch.tensor([p["p_a"] for p in pairs], dtype=torch.float32)
    table = calibration_table(r_a, r_b, p_a, bins)
    a_wins = p_a >= 0.5
    return {
        "pairs": n,
        "accuracy": preference_accuracy(r_a, r_b, p_a),
        "mean_score_gap": torch.where(a_wins, r_a - r_b, r_b - r_a).mean().item(),
        "score_std": scores.std().item() if len(scores) > 1 else 0.0,
        "expected_calibration_error": expected_calibration_error(table),
        "calibration": table,
    }
