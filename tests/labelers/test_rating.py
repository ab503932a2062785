"""The d-RLAIF rating judge [D45] on every backend: P("1")..P("10") with "10" read as `1` then `0`
[L08], the score, and the same numbers from the cached and the plain local paths."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from rlaif.config import LabelerSettings, OpenAIApiSettings
from rlaif.labelers import make_labeler
from rlaif.labelers.prompts import RatingPrompt
from rlaif.labelers.rating import RatingJudge, rescale
from tests.labelers.fake_openai_server import AFTER_ONE, RATING_GOOD, RATING_OTHER, FakeOpenAIServer
from tests.labelers.test_vllm_offline import FakeLLM, SamplingParams

PROMPT = "SUBREDDIT: r/cooking\n\nTITLE: Burnt rice\n\nPOST: Every time I cook rice the bottom burns.\n\nTL;DR:"


def expected_probs(first: list[tuple[str, float]], after_one: list[tuple[str, float]] | None) -> list[float]:
    """P(1..10) by hand from a digit-by-digit model's top tokens: P(10) = P(1)·P(0|1) and
    P(1) = P(1)·(1 − P(0|1)); without the second step (None) `1` counts as 1 and 10 gets nothing."""
    p = dict(first)
    probs = [p.get(str(s), 0.0) for s in range(1, 11)]
    if after_one is not None:
        p_zero = dict(after_one)["0"]
        probs[9], probs[0] = probs[0] * p_zero, probs[0] * (1 - p_zero)
    return [x / sum(probs) for x in probs]


def test_expected_probs_by_hand():
    # GOOD: 9: .4, 8: .2, 10: .3 * .6 = .18, 1: .3 * .4 = .12; mean 7.12 / .9
    assert expected_probs(RATING_GOOD, AFTER_ONE)[9] == pytest.approx(0.18 / 0.9)
    score = rescale(torch.tensor([expected_probs(RATING_GOOD, AFTER_ONE)]))
    assert score.item() == pytest.approx((7.12 / 0.9 - 5.5) / 4.5)
    assert rescale(torch.tensor([expected_probs(RATING_OTHER, AFTER_ONE)])).item() == pytest.approx(-0.6)


@pytest.mark.parametrize(
    "endpoint,continue_final,steps",
    [("completions", False, True), ("chat", True, True), ("chat", False, False)],
)
def test_rating_over_http_reads_ten_as_two_tokens(endpoint, continue_final, steps):
    """A server that can continue a given text is asked once more after `1`; an OpenAI-style chat
    endpoint cannot be, so there `1` counts as 1 (OpenAI's tokenizers spell 10 as one token)."""
    with FakeOpenAIServer() as server:
        api = OpenAIApiSettings(
            base_url=server.base_url, endpoint=endpoint, continue_final_message=continue_final, concurrency=2
        )
        judge = RatingJudge(LabelerSettings(backend="openai_api", model="judge-model", api=api))
        probs = judge.score_probs([PROMPT, PROMPT], ["GOOD the rice burns", "rice"])
    after = AFTER_ONE if steps else None
    expected = torch.tensor([expected_probs(RATING_GOOD, after), expected_probs(RATING_OTHER, after)])
    torch.testing.assert_close(probs, expected)
    sent = [
        q["body"]["prompt"] if "prompt" in q["body"] else q["body"]["messages"][-1]["content"] for q in server.requests
    ]
    assert len(sent) == (4 if steps else 2)
    assert sum(text.endswith("Rating: 1") for text in sent) == (2 if steps else 0)
    assert judge.unrated == 0


class DigitLLM(FakeLLM):
    """A stand-in vLLM engine for ratings, with the fake server's digit-by-digit answers."""

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((list(prompts), params))
        outs = []
        for prompt in prompts:
            top = (
                AFTER_ONE
                if prompt.endswith("Rating: 1")
                else RATING_GOOD
                if "Summary - GOOD" in prompt
                else RATING_OTHER
            )
            step = {
                i: SimpleNamespace(logprob=math.log(p), rank=i + 1, decoded_token=token)
                for i, (token, p) in enumerate(top)
            }
            outs.append(SimpleNamespace(outputs=[SimpleNamespace(text=top[0][0], logprobs=[step])]))
        return outs


def test_rating_on_vllm_reads_ten_in_a_second_round():
    engine = DigitLLM()
    labeler = make_labeler(
        LabelerSettings(backend="vllm_offline", model="tiny-random"), engine=engine, sampling_params=SamplingParams
    )
    probs = RatingJudge(LabelerSettings(), labeler=labeler).score_probs([PROMPT] * 2, ["GOOD the rice burns", "rice"])
    expected = torch.tensor([expected_probs(RATING_GOOD, AFTER_ONE), expected_probs(RATING_OTHER, AFTER_ONE)])
    torch.testing.assert_close(probs, expected)
    (first, _), (second, _) = engine.calls  # both answer positions in one call, then both `1`s in one
    assert len(first) == 2 and second == [p + "1" for p in first]


def test_rating_cached_path_matches_plain_forward_passes():
    labeler = make_labeler(LabelerSettings(model="tiny-random", batch_size=3))
    reqs = [RatingPrompt().request("POST: rice " + "burns " * i, "the rice" + " burns" * (2 * i)) for i in range(4)]
    fast, naive = labeler.judge(reqs), labeler.judge_naive(reqs)
    for f, n in zip(fast, naive):
        assert f.error is None and len(f.probs) == 10
        assert f.probs == pytest.approx(n.probs, abs=1e-5) and f.raw_mass == pytest.approx(n.raw_mass, rel=1e-4)
