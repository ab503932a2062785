"""The judge interface every labeler backend implements, and the registry that builds them.

A judge question is a `JudgeRequest`: a chat (system + user text) whose assistant turn starts
with `assistant_prefix`. With a rationale budget the backend runs two stages (Lee et al. 2023,
0-shot chain of thought): stage 1 generates the rationale; stage 2 appends it and `cue`
(`\\nPreferred Summary=`) and reads the next-token probabilities of the two choice tokens.
Without one, the probabilities are read right after the assistant prefix.

The user text comes in three parts so a backend can reuse work across requests: `shared`
(preamble and exemplars, the same for every request of a task), `group` (the post, the same for
both orders of one pair) and `item` (the two candidates in this order, and the instruction).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from rlaif.config import ConfigError, LabelerSettings


class LabelingIncomplete(RuntimeError):
    """More pairs failed for good (after retries) than the config allows; a rerun retries them."""


@dataclass(frozen=True)
class JudgeRequest:
    system: str
    shared: str
    """Start of the user text shared by every request of a task (preamble, exemplars)."""
    group: str
    """Next part of the user text, shared by the requests of one pair (the post)."""
    item: str
    """The rest of the user text (the candidates in this order, the instruction)."""
    assistant_prefix: str
    """How the assistant turn starts: `Rationale:` (cot) or `Preferred Summary=` (base)."""
    cue: str
    """Appended after the rationale in stage 2; unused when max_rationale_tokens is 0."""
    answer_instruction: str
    """A user turn asking for the bare answer, for chat servers that cannot continue an assistant turn."""
    max_rationale_tokens: int
    """0: no stage 1, the answer is read right after assistant_prefix."""
    choices: tuple[str, str] = ("1", "2")

    @property
    def user(self) -> str:
        return self.shared + self.group + self.item


@dataclass
class JudgeResult:
    rationale: str | None
    """Stage 1 text (None without chain of thought or when the request failed)."""
    p_first: float | None
    """P(choices[0]) renormalised over the two choices; None when undecided or failed."""
    p_second: float | None
    raw_mass: float | None
    """P(choices[0]) + P(choices[1]) before renormalising: how much the labeler meant to answer."""
    error: str | None = None
    """Why there is no probability: undecided (no choice token among the top tokens) or a failure."""
    failed: bool = False
    """True for a transport failure after every retry (the pair is retried by a rerun); False for
    an answer that was simply not `1`/`2` (undecided, a property of the labeler)."""

    def to_json(self, order: str) -> dict:
        return {
            "order": order,
            "rationale": self.rationale,
            "p_first": self.p_first,
            "p_second": self.p_second,
            "raw_mass": self.raw_mass,
            "error": self.error,
        }


class Labeler(Protocol):
    backend: str
    model: str
    pairs_per_call: int
    """How many pairs (2 requests each) a caller should pass per `judge` call to keep it busy."""

    def judge(self, requests: list[JudgeRequest]) -> list[JudgeResult]:
        """One result per request, in order; a request that cannot be answered gets a result with
        `error` set, never an exception (a stage must always know what became of every pair)."""
        ...


def decide(
    choice_probs: tuple[float, float], in_top_k: bool, top_k: int, rationale: str | None, top_tokens: list[str] = ()
) -> JudgeResult:
    """A result from P(choice 1), P(choice 2): renormalised over the two, with their raw mass.
    `in_top_k` says whether either choice is among the top-k next tokens; when not, the order is
    undecided (the labeler answered something else), which is never turned into a coin flip.
    [L03] renormalise over the two choices, keep the raw mass; [L04] undecided."""
    p1, p2 = choice_probs
    mass = p1 + p2
    if not in_top_k or mass <= 0.0 or not math.isfinite(mass):
        shown = ", ".join(repr(t) for t in list(top_tokens)[:5])
        return JudgeResult(
            rationale,
            None,
            None,
            mass if math.isfinite(mass) else None,
            f"undecided: neither choice token among the top {top_k} tokens (top: {shown})",
        )
    return JudgeResult(rationale, p1 / mass, p2 / mass, mass)


def choice_mass(
    top_logprobs: Mapping[str, float] | Iterable[tuple[str, float]], choices: tuple[str, str]
) -> tuple[float, float]:
    """Probability of each choice in a top-k list ({token: logprob} or (token, logprob) pairs).
    Tokens are matched after stripping spaces, so `1` and ` 1` both count, as tokenizers spell a
    digit either way."""
    items = top_logprobs.items() if isinstance(top_logprobs, Mapping) else top_logprobs
    masses = [0.0, 0.0]
    for token, logprob in items:
        text = token.strip() if isinstance(token, str) else None
        for i, choice in enumerate(choices):
            if text == choice and isinstance(logprob, (int, float)):
                masses[i] += math.exp(logprob)
    return masses[0], masses[1]


# ----------------------------------------------------------------------------------------------
# Registry: backend name -> module:class. Imports are lazy so an optional engine (vllm) is only
# needed when chosen.

BACKENDS: dict[str, str] = {
    "hf_local": "rlaif.labelers.hf_local:HFLocalLabeler",
    "openai_api": "rlaif.labelers.openai_api:OpenAIApiLabeler",
    "vllm_offline": "rlaif.labelers.vllm_offline:VLLMOfflineLabeler",
}


def register(name: str, target: str) -> None:
    """Add a backend (`module:Class`, constructed with the LabelerSettings)."""
    BACKENDS[name] = target


def make_labeler(settings: LabelerSettings, **kwargs) -> Labeler:
    """The backend object named by `settings.backend`; kwargs go to its constructor (test engines)."""
    target = BACKENDS.get(settings.backend)
    if target is None:
        raise ConfigError(f"label.labeler.backend: unknown backend {settings.backend!r} (known: {', '.join(BACKENDS)})")
    module, _, cls = target.partition(":")
    factory: Callable[..., Labeler] = getattr(importlib.import_module(module), cls)
    return factory(settings, **kwargs)
