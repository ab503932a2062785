"""The sampling loop's shared prompt pass: k samples of one prompt read it once, and sample exactly what
k separate rows would [D56]."""

from __future__ import annotations

import pytest
import torch

from rlaif.models import embedded_folder, encode_left, load_causal_lm, load_tokenizer
from rlaif.rl.policy import backbone, last_hidden, response_hidden
from rlaif.rl.sampling import sample

PROMPTS = [
    "SUBREDDIT: r/cooking\n\nPOST: Every time I cook rice the bottom burns.\n\nTL;DR:",
    "POST: I keep forgetting to water my plants.\n\nTL;DR:",
]
K = 3


@pytest.fixture(scope="module")
def tiny():
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder, padding_side="left")
    return load_causal_lm(folder, tokenizer).eval(), tokenizer


def _grouped(tokenizer):
    batch = encode_left(tokenizer, PROMPTS)  # different lengths: the shorter prompt is left-padded
    return batch.input_ids.repeat_interleave(K, dim=0), batch.attention_mask.repeat_interleave(K, dim=0)


def _draw(model, tokenizer, queries, mask, group_size, **kw):
    return sample(model, queries, mask, 8, 1.0, tokenizer.eos_token_id, tokenizer.pad_token_id,
                  torch.Generator().manual_seed(0), group_size=group_size, **kw)  # fmt: skip


@torch.no_grad()
def test_a_group_reads_its_prompt_once_and_samples_what_separate_rows_would(tiny):
    model, tokenizer = tiny
    queries, mask = _grouped(tokenizer)
    head = torch.nn.Linear(model.config.hidden_size, 1)
    rows_fed = []
    hook = backbone(model).register_forward_pre_hook(
        lambda module, args, kwargs: rows_fed.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        shared = _draw(model, tokenizer, queries, mask, K, value_head=head, collect_layer=1)
    finally:
        hook.remove()
    separate = _draw(model, tokenizer, queries, mask, 1, value_head=head, collect_layer=1)
    assert rows_fed[0] == (len(PROMPTS), queries.size(1))  # the prompt pass: one row per prompt
    assert all(shape == (len(PROMPTS) * K, 1) for shape in rows_fed[1:])  # then one token for every row
    assert torch.equal(shared.responses, separate.responses)
    torch.testing.assert_close(shared.logprobs, separate.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.values, separate.values, atol=1e-5, rtol=1e-5)
    T = shared.responses.size(1)  # the last sampled token is never fed: Lq + T - 1 positions [D48]
    assert (
        shared.layer_inputs.shape
        == separate.layer_inputs.shape
        == (queries.size(0), queries.size(1) + T - 1, model.config.hidden_size)
    )
    torch.testing.assert_close(shared.layer_inputs, separate.layer_inputs, atol=1e-5, rtol=1e-5)
    # the k samples of a prompt differ: each row draws its own tokens
    assert len({tuple(r) for r in shared.responses[:K].tolist()}) > 1


def test_rows_that_are_not_runs_of_identical_prompts_are_refused(tiny):
    model, tokenizer = tiny
    queries, mask = _grouped(tokenizer)
    with pytest.raises(ValueError, match="not runs of 2 identical rows"):
        _draw(model, tokenizer, queries, mask, 2)  # 6 rows, but a run of 3 then 3: rows 2-3 differ
    with pytest.raises(ValueError, match="group_size=4"):
        _draw(model, tokenizer, queries, mask, 4)  # 6 rows are not groups of 4


@torch.no_grad()
def test_last_hidden_with_a_shared_prompt_equals_the_plain_forward(tiny):
    """The reference and reward passes of a rollout: each prompt's first columns once per run of k rows."""
    model, tokenizer = tiny
    queries, mask = _grouped(tokenizer)
    responses = torch.randint(5, 200, (queries.size(0), 7), generator=torch.Generator().manual_seed(1))
    ids = torch.cat([queries, responses], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(responses)], dim=1)
    ctx = queries.size(1)
    shared = last_hidden(model, ids, full_mask, ctx, K)
    torch.testing.assert_close(shared, last_hidden(model, ids, full_mask), atol=1e-5, rtol=1e-5)
    # response_hidden (the reference's log-probs read it) gives the same states at the response positions
    torch.testing.assert_close(
        response_hidden(model, ids, full_mask, ctx, group_size=K), last_hidden(model, ids, full_mask)[:, ctx - 1 : -1]
    )
    with pytest.raises(ValueError, match="not runs of 2"):
        last_hidden(model, ids, full_mask, ctx, 2)
