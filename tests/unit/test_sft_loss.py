"""SFT targets and loss: prompt masked, EOS learned, last-columns logits equal the full loss."""

from __future__ import annotations

import pytest

from rlaif.models import load_causal_lm, load_tokenizer
from rlaif.stages.sft import IGNORE_INDEX, _Collator, summary_loss, tokenize_example

RECORDS = [
    {
        "post": "My cat knocks every glass off the table at night. " * 6,
        "summary": "cat breaks glasses",
        "subreddit": "cats",
        "title": "Help",
    },
    {
        "post": "Short post.",
        "summary": "a much longer reference summary that goes on for a while",
        "subreddit": "",
        "title": "",
    },
    {"post": "Medium post about work and a boss who never replies to email.", "summary": "boss ignores me"},
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-random", padding_side="left")


def test_targets_mask_the_prompt_and_end_with_eos(tokenizer):
    ex = tokenize_example(tokenizer, RECORDS[0], max_prompt_tokens=64, max_summary_tokens=3)
    n_prompt = len(tokenizer(ex["prompt"], add_special_tokens=False).input_ids)
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["labels"][-1] == tokenizer.eos_token_id and len(ex["labels"]) - n_prompt == 4  # 3 summary tokens + EOS
    assert ex["prompt"].endswith("TL;DR:") and n_prompt <= 64


def test_last_columns_loss_equals_full_causal_lm_loss(tokenizer):
    model = load_causal_lm("tiny-random", tokenizer)
    batch = _Collator(tokenizer)([tokenize_example(tokenizer, r, 64, 16) for r in RECORDS])
    assert batch["logits_to_keep"] < batch["input_ids"].shape[1]  # the saving is real
    assert (batch["input_ids"][:, -1] != tokenizer.pad_token_id).all()  # left padded: rows end together
    labels = batch.pop("labels")
    ours = summary_loss(model(**batch), labels)
    reference = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        labels=labels,
    ).loss
    assert abs(ours.item() - reference.item()) < 1e-4
