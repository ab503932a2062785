"""hf_local: the cached path computes what the plain `generate` baseline computes, on tiny-random."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rlaif.config import LabelerSettings
from rlaif.labelers import make_labeler
from rlaif.labelers.prompts import make_prompt
from tests.labelers import llama3_like

# tiny-random never ranks `1`/`2` highly; these two tokens are among its top answers after the
# cue, so the comparison covers decided probabilities, not only undecided flags.
TINY_CHOICES = ("=", "Lim")


@pytest.fixture(scope="module")
def labeler():
    # batch of 5 sequences: pairs straddle batches, so a post's two orders are sometimes apart
    return make_labeler(LabelerSettings(model="tiny-random", batch_size=5, max_rationale_tokens=6))


def requests(style: str, n: int = 4, choices=TINY_CHOICES):
    prompt = make_prompt("summarize", style, 6)
    reqs = []
    for i in range(n):  # posts and summaries of different lengths: padding in every segment
        post = f"POST: my cat number {i} " + "likes fish and chips " * (3 * i + 1)
        reqs += prompt.pair_requests(post, f"cat {i} likes fish", "a dog" + " barks" * i)
    return [dataclasses.replace(r, choices=choices) for r in reqs]


@pytest.mark.parametrize("style", ["cot", "base"])
def test_cached_path_matches_plain_generate(labeler, style):
    reqs = requests(style)
    fast, naive = labeler.judge(reqs), labeler.judge_naive(reqs)
    assert len(fast) == len(naive) == len(reqs)
    for f, n in zip(fast, naive):
        assert f.error is None and n.error is None
        assert f.rationale == n.rationale and (f.rationale is not None) == (style == "cot")
        assert f.p_first == pytest.approx(n.p_first, abs=1e-4)
        assert f.raw_mass == pytest.approx(n.raw_mass, rel=1e-3)


def test_rationale_budget_and_prefix_cache_reuse(labeler):
    labeler._prefix_caches.clear()
    reqs = requests("cot", n=2)
    first = labeler.judge(reqs)
    assert len(labeler._prefix_caches) == 1  # the preamble was encoded once for all pairs
    again = labeler.judge(reqs)
    assert len(labeler._prefix_caches) == 1
    assert [r.p_first for r in first] == pytest.approx([r.p_first for r in again], abs=1e-6)
    assert all(0 < len(labeler.tokenizer(r.rationale).input_ids) <= 7 for r in first)


def test_real_digits_are_undecided_for_a_model_that_does_not_answer(labeler):
    results = labeler.judge(requests("base", n=1, choices=("1", "2")))
    for r in results:
        assert r.p_first is None and not r.failed and r.raw_mass > 0
        assert r.error.startswith("undecided: neither choice token among the top 20 tokens")


def full_encode_probs(labeler, text: str, choices: tuple[str, ...]) -> list[float]:
    """P(each single-token choice, its spellings `x` and ` x` summed) after `text` encoded in one
    piece, by one plain forward, renormalised."""
    ids = labeler.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(labeler.lm.device)
    with torch.no_grad():
        probs = torch.softmax(labeler.lm(ids).logits[0, -1].float(), -1)
    masses = [0.0] * len(choices)
    for choice, (token,) in labeler.choice_paths(choices):
        masses[choice] += float(probs[token])
    return [m / sum(masses) for m in masses]


def test_cached_path_equals_a_full_encode_of_the_prompt(labeler):
    """The cache splits a prompt into preamble, post and candidates; the ids must still be those of
    the whole text (a plain encoding joins the preamble's closing "\n\n" differently from an
    encoding of the preamble alone)."""
    reqs = [dataclasses.replace(r, undecided_outside_top_k=False) for r in requests("base", n=2)]
    for req, result in zip(reqs, labeler.judge(reqs)):
        assert result.probs == pytest.approx(full_encode_probs(labeler, labeler.render(req), req.choices), abs=1e-5)


@pytest.fixture(scope="module")
def llama3_labeler(tmp_path_factory):
    folder = llama3_like.build(tmp_path_factory.mktemp("llama3") / "model")
    return make_labeler(LabelerSettings(model=str(folder), batch_size=4, max_rationale_tokens=8))


def test_the_answer_cue_is_encoded_together_with_the_rationale(llama3_labeler, monkeypatch):
    """Issue #11, item 8: with Llama-3's tokenizer a rationale ending in "." merges with the
    newline of "\nPreferred Summary=" into one token. Stage 2 must read the ids of the whole text,
    as a full re-encode does, not the rationale's ids with the cue's appended."""
    labeler, tokenizer = llama3_labeler, llama3_labeler.tokenizer
    script = iter(tokenizer(" Good.", add_special_tokens=False).input_ids + [tokenizer.eos_token_id])
    monkeypatch.setattr(labeler, "_pick", lambda logits: torch.full((logits.shape[0],), next(script)))
    req = dataclasses.replace(
        make_prompt("summarize", "cot", 8).request("POST: a cat", "x", "y"), undecided_outside_top_k=False
    )
    (result,) = labeler.judge([req])
    text = labeler.render(req) + " Good.\nPreferred Summary="
    assert ".\u010a" in tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False).input_ids)
    assert result.rationale == "Good."
    assert result.probs == pytest.approx(full_encode_probs(labeler, text, req.choices), abs=1e-5)
