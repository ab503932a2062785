"""Shared-prompt reward scoring equals rlaif.reward_model.score on the tiny model."""

import torch

from rlaif.eval_scoring import score_shared_prompt
from rlaif.models import embedded_folder, load_tokenizer
from rlaif.reward_model import build_reward_model, score

PROMPT = "SUBREDDIT: r/test\n\nTITLE: A title\n\nPOST: My cat keeps knocking glasses off the table at night.\n\nTL;DR:"
SUMMARIES = ["cat knocks glasses off the table", "", "my cat is a menace at night and I cannot sleep because of it", "cat"]


def test_shared_prompt_scores_equal_plain_scores():
    tokenizer = load_tokenizer("tiny-random")
    model = build_reward_model(str(embedded_folder("tiny-random")), tokenizer, seed=3)
    model.config.reward_bias = 0.5
    expected = score(model, tokenizer, [PROMPT] * len(SUMMARIES), SUMMARIES)
    got = score_shared_prompt(model, tokenizer, PROMPT, SUMMARIES)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, got[0].expand_as(got))  # the summaries do matter


def test_capped_models_take_the_plain_path():
    tokenizer = load_tokenizer("tiny-random")
    model = build_reward_model(str(embedded_folder("tiny-random")), tokenizer, seed=3)
    model.config.reward_max_length = 16  # cuts from the start of the prompt: no shared prefix
    expected = score(model, tokenizer, [PROMPT] * 2, SUMMARIES[:2])
    torch.testing.assert_close(score_shared_prompt(model, tokenizer, PROMPT, SUMMARIES[:2]), expected)
