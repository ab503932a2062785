"""vllm_offline with a stand-in engine (vLLM itself needs a GPU and is an optional extra)."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from rlaif.config import LabelerSettings
from rlaif.labelers import make_labeler
from rlaif.labelers.prompts import make_prompt
from rlaif.models import ModelLoadError, load_tokenizer
from tests.labelers import llama3_like


@dataclass
class SamplingParams:
    """The fields of vllm.SamplingParams the backend sets."""

    temperature: float = 1.0
    max_tokens: int = 16
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None


class FakeLLM:
    """Answers like vllm.LLM.generate: a rationale preferring the GOOD candidate, then top logprobs
    as {token_id: Logprob(logprob, rank, decoded_token)}. Like vLLM, it encodes a text prompt with
    the tokenizer's special tokens and takes a `{"prompt_token_ids": ...}` prompt as it is;
    `received` keeps the ids that reached it."""

    def __init__(self, tokenizer=None):
        self.tokenizer = tokenizer or load_tokenizer("tiny-random")
        self.calls: list[tuple[list, SamplingParams]] = []
        self.received: list[list[int]] = []

    def get_tokenizer(self):
        return self.tokenizer

    def encode(self, prompt) -> str:
        ids = prompt["prompt_token_ids"] if isinstance(prompt, dict) else self.tokenizer(prompt).input_ids
        self.received.append(list(ids))
        return self.tokenizer.decode(ids)

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((list(prompts), params))
        outs = []
        for prompt in map(self.encode, prompts):
            first_good = prompt[prompt.rfind("Summary 1 - ") :].startswith("Summary 1 - GOOD")
            if params.logprobs is None:
                completion = SimpleNamespace(
                    text=" The first is better." if first_good else " The second is better.", logprobs=None
                )
            else:
                p1, p2 = (0.6, 0.3) if first_good else (0.2, 0.7)
                ids = {t: self.tokenizer(t, add_special_tokens=False).input_ids[0] for t in ("1", "2", "The")}
                step = {
                    ids["1"]: SimpleNamespace(logprob=math.log(p1), rank=1, decoded_token="1"),
                    ids["2"]: SimpleNamespace(logprob=math.log(p2), rank=2, decoded_token="2"),
                    ids["The"]: SimpleNamespace(logprob=math.log(0.05), rank=3, decoded_token=None),
                }
                if "ONE-CHOICE" in prompt:  # only `1` among the top tokens: P(2) <= the smallest shown
                    del step[ids["2"]]
                completion = SimpleNamespace(text="1", logprobs=[step])
            outs.append(SimpleNamespace(outputs=[completion]))
        return outs


def test_two_stage_labels_through_the_engine():
    engine = FakeLLM()
    labeler = make_labeler(
        LabelerSettings(backend="vllm_offline", model="tiny-random", max_rationale_tokens=12),
        engine=engine,
        sampling_params=SamplingParams,
    )
    reqs = make_prompt("summarize", "cot", 12).pair_requests("POST: p", "GOOD one", "bad one")
    ab, ba = labeler.judge(reqs)
    assert ab.p_first == pytest.approx(0.6 / 0.9) and ab.raw_mass == pytest.approx(0.9)
    assert ba.p_first == pytest.approx(0.2 / 0.9) and ab.rationale == "The first is better."
    (stage1, p1), (stage2, p2) = engine.calls
    assert p1.max_tokens == 12 and p1.temperature == 0.0 and p1.stop == ["Preferred Summary="]
    assert p2.max_tokens == 1 and p2.logprobs == 20
    # chat template, assistant turn begun, then stage 2 = stage 1 prompt + rationale + cue, as token ids
    tokenizer = engine.tokenizer
    text1, text2 = (tokenizer.decode(call[0]["prompt_token_ids"]) for call in (stage1, stage2))
    # no system turn of ours: SmolLM2's template puts in its own default one
    assert text1.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert "<|im_start|>user\nYour job is" in text1 and text1.endswith("<|im_start|>assistant\nRationale:")
    assert text2 == text1 + " The first is better.\nPreferred Summary="
    assert stage2[0]["prompt_token_ids"] == tokenizer(text2, add_special_tokens=False).input_ids


def test_token_ids_reach_the_engine_with_one_bos(tmp_path):
    """Llama-3's chat template starts with <|begin_of_text|>; a text prompt would get a second one
    from the engine's tokenizer (issue #11, item 3). The prompt goes as token ids instead."""
    tokenizer = load_tokenizer(str(llama3_like.build(tmp_path / "llama3")))
    engine = FakeLLM(tokenizer)
    labeler = make_labeler(
        LabelerSettings(backend="vllm_offline", model="tiny-random", max_rationale_tokens=4),
        engine=engine,
        sampling_params=SamplingParams,
    )
    req = make_prompt("summarize", "cot", 4).request("POST: p", "GOOD one", "bad one")
    labeler.judge([req])
    bos = tokenizer.bos_token_id
    assert len(engine.received) == 2
    for ids in engine.received:
        assert ids[0] == bos and bos not in ids[1:]
    assert engine.received[0] == tokenizer(labeler.render(req), add_special_tokens=False).input_ids


def test_a_choice_outside_the_top_tokens_is_bounded_by_the_smallest_shown():
    """The seed's rule (issue #11, item 8): a choice not among the returned tokens gets the last
    (smallest) returned probability, an upper bound, and the result says so."""
    labeler = make_labeler(
        LabelerSettings(backend="vllm_offline", model="tiny-random"), engine=FakeLLM(), sampling_params=SamplingParams
    )
    (ab, ba) = labeler.judge(make_prompt("summarize", "base", 0).pair_requests("ONE-CHOICE post", "a", "b"))
    assert ab.p_first == pytest.approx(0.2 / 0.25) and ab.raw_mass == pytest.approx(0.25)
    assert ab.to_json("ab")["bounded"] == ["2"] and ba.to_json("ba")["bounded"] == ["2"]


def test_missing_logprobs_is_a_failure_not_a_guess():
    engine = FakeLLM()
    engine.generate = lambda prompts, params, use_tqdm=True: [
        SimpleNamespace(outputs=[SimpleNamespace(text="1", logprobs=[])]) for _ in prompts
    ]
    labeler = make_labeler(
        LabelerSettings(backend="vllm_offline", model="tiny-random"), engine=engine, sampling_params=SamplingParams
    )
    result = labeler.judge(make_prompt("summarize", "base", 0).pair_requests("t", "a", "b"))[0]
    assert result.failed and result.p_first is None and "no logprobs" in result.error


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vllm is installed; the message is for machines without it"
)
def test_without_vllm_the_error_says_how_to_get_it():
    with pytest.raises(ModelLoadError, match="pip install vllm"):
        make_labeler(LabelerSettings(backend="vllm_offline", model="tiny-random"))
