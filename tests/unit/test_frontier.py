"""The frontier's math: the best-of-n curve, and the sampled KL estimate against a plain loop."""

from __future__ import annotations

import pytest
import torch

from rlaif.best_of_n.selection import kl_bound
from rlaif.evaluation.frontier import best_of_n_points, sample_with_kl
from rlaif.models import embedded_folder, load_causal_lm, load_tokenizer

PROMPTS = [
    {"id": "a", "prompt": "SUBREDDIT: r/cooking\n\nPOST: Every time I cook rice the bottom burns.\n\nTL;DR:"},
    {"id": "b", "prompt": "POST: My landlord wants to raise the rent by 30% with two weeks notice.\n\nTL;DR:"},
    {"id": "c", "prompt": "POST: I keep forgetting to water my plants.\n\nTL;DR:"},
]


def test_best_of_n_points_pick_by_own_score_among_the_first_n():
    candidates = {  # post -> samples in sampling order, scored by both reward models
        "p1": [{"scores": {"own": 0.0, "other": 1.0}}, {"scores": {"own": 2.0, "other": -1.0}}],
        "p2": [{"scores": {"own": 1.0, "other": 0.5}}, {"scores": {"own": 0.5, "other": 3.0}}],
    }
    n1, n2 = best_of_n_points(candidates, "own", [1, 2], n_boot=50, seed=0)
    assert n1["n"] == 1 and n1["kl"]["mean"] == 0.0 and n1["kl"]["bound"]
    assert n1["scores"]["own"]["mean"] == pytest.approx(0.5) and n1["scores"]["other"]["mean"] == pytest.approx(0.75)
    # n = 2: p1 picks its second sample (own 2.0), p2 keeps its first (own 1.0 > 0.5)
    assert n2["scores"]["own"]["mean"] == pytest.approx(1.5) and n2["scores"]["other"]["mean"] == pytest.approx(-0.25)
    assert n2["kl"]["mean"] == pytest.approx(kl_bound(2))


def _sequence_logprob(model, tokenizer, prompt: str, response_ids: list[int], temperature: float) -> float:
    """log p(response | prompt) at `temperature`, one token at a time with a full forward each: the plain loop."""
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    total = 0.0
    for token in response_ids:
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float() / temperature
        total += torch.log_softmax(logits, -1)[token].item()
        ids = ids + [token]
    return total


@torch.no_grad()
def test_sampled_kl_is_the_log_ratio_of_the_sequence_under_both_models():
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder, padding_side="left")
    reference = load_causal_lm(folder, tokenizer).eval()
    policy = load_causal_lm(folder, tokenizer).eval()
    torch.manual_seed(0)
    for p in policy.parameters():
        p.add_(0.05 * torch.randn_like(p))  # a different policy
    rows = sample_with_kl(policy, tokenizer, PROMPTS, 6, 1.0, 2, torch.Generator().manual_seed(0), reference)
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    # the first batch again, with the same generator seed: the same samples, now with their token ids
    from rlaif.models import encode_left
    from rlaif.rl.masking import truncate_response
    from rlaif.rl.sampling import sample

    batch = encode_left(tokenizer, [r["prompt"] for r in PROMPTS[:2]])
    samples = sample(policy, batch.input_ids, batch.attention_mask, 6, 1.0, tokenizer.eos_token_id,
                     tokenizer.pad_token_id, torch.Generator().manual_seed(0))  # fmt: skip
    responses = truncate_response(samples.responses, tokenizer.eos_token_id, tokenizer.pad_token_id)
    for i, record in enumerate(PROMPTS[:2]):
        ids = [t for t in responses[i].tolist() if t != tokenizer.pad_token_id]
        loop = _sequence_logprob(policy, tokenizer, record["prompt"], ids, 1.0) - _sequence_logprob(
            reference, tokenizer, record["prompt"], ids, 1.0
        )
        assert rows[i]["kl"] == pytest.approx(loop, abs=1e-4)
        assert rows[i]["num_tokens"] == len(ids)


@torch.no_grad()
def test_a_policy_against_itself_has_zero_kl():
    folder = str(embedded_folder("tiny-random"))
    tokenizer = load_tokenizer(folder, padding_side="left")
    model = load_causal_lm(folder, tokenizer).eval()
    rows = sample_with_kl(model, tokenizer, PROMPTS, 8, 0.7, 3, torch.Generator().manual_seed(1), model)
    assert all(abs(r["kl"]) < 1e-4 for r in rows)
