"""The judge protocol every labeler backend implements, and the registry that builds them.

A judge question is a `JudgeRequest`: a chat (system + user text) whose assistant turn starts
with `assistant_prefix`, and the answers it may give, `choices` (any number of them: `1`/`2` for
a pair, `1`..`10` for a d-RLAIF rating). The backend returns, per request, the probability of
each choice *string* (`JudgeResult.probs`); a choice spelled with several tokens ("10" as `1` `0`)
is read token by token [L08]. With a rationale budget the backend runs two stages (Lee et al.
2023, 0-shot chain of thought): stage 1 generates the rationale; stage 2 appends it and `cue`
(`\\nPreferred Summary=`) and reads the choices there. Without one, the choices are read right
after the assistant prefix.

The user text comes in three parts so a backend can reuse work across requests: `shared`
(preamble and exemplars, the same for every request of a task), `group` (the post, the same for
both orders of one pair) and `item` (the two candidates in this order, and the instruction).
Every judge (labels, the evaluation judge, the d-RLAIF rating) is a prompt that builds these
requests (rlaif.labelers.prompts); none needs plumbing of its own.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Generator, Iterable, Mapping
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
    """How the assistant turn starts: `Rationale:` (cot), `Preferred Summary=` (base), `Rating: `."""
    cue: str
    """Appended after the rationale in stage 2; unused when max_rationale_tokens is 0."""
    answer_instruction: str
    """A user turn asking for the bare answer, for chat servers that cannot continue an assistant turn."""
    max_rationale_tokens: int
    """0: no stage 1, the answer is read right after assistant_prefix."""
    choices: tuple[str, ...] = ("1", "2")
    """The answers whose probabilities are read, in this order; any number, each one or more tokens."""
    undecided_outside_top_k: bool = True
    """True (labels, the evaluation judge): an answer with no choice among the top `top_logprobs`
    next tokens is undecided [L04]. False (the d-RLAIF rating [D45]): the probabilities are used
    whenever the backend knows them (hf_local knows them for every token)."""

    @property
    def user(self) -> str:
        return self.shared + self.group + self.item


@dataclass
class JudgeResult:
    rationale: str | None
    """Stage 1 text (None without chain of thought or when the request failed)."""
    probs: tuple[float, ...] | None
    """P(each choice), renormalised over the choices; None when undecided or failed."""
    raw_mass: float | None
    """Sum of the choices' probabilities before renormalising: how much the judge meant to answer."""
    error: str | None = None
    """Why there is no probability: undecided (no choice among the top tokens) or a failure."""
    failed: bool = False
    """True for a transport failure after every retry (the pair is retried by a rerun); False for
    an answer that was simply not one of the choices (undecided, a property of the judge)."""

    @property
    def p_first(self) -> float | None:
        """P(choices[0]): for a pair, the candidate shown first."""
        return self.probs[0] if self.probs is not None else None

    @property
    def p_second(self) -> float | None:
        return self.probs[1] if self.probs is not None else None

    def to_json(self, order: str) -> dict:
        """The record of one order of a pair (labels, judgements)."""
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
    choice_probs: Iterable[float], in_top_k: bool, top_k: int, rationale: str | None, top_tokens: Iterable[str] = ()
) -> JudgeResult:
    """A result from P(each choice): renormalised over the choices, with their raw mass.
    `in_top_k` says whether any choice starts among the top-k next tokens; when not, the answer is
    undecided (the judge answered something else), which is never turned into a coin flip.
    [L03] renormalise over the choices, keep the raw mass; [L04] undecided."""
    choice_probs = tuple(choice_probs)
    mass = sum(choice_probs)
    if not in_top_k or mass <= 0.0 or not math.isfinite(mass):
        shown = ", ".join(repr(t) for t in list(top_tokens)[:5])
        return JudgeResult(
            rationale,
            None,
            mass if math.isfinite(mass) else None,
            f"undecided: neither choice token among the top {top_k} tokens (top: {shown})",
        )
    return JudgeResult(rationale, tuple(p / mass for p in choice_probs), mass)


# ----------------------------------------------------------------------------------------------
# Reading choice strings from top-k token lists (the HTTP and vLLM backends) [L08]

TopTokens = list[tuple[str, float]]
"""(token text, logprob) of the most likely next tokens, as a server returns them."""


@dataclass
class ChoiceReading:
    masses: tuple[float, ...]
    """P(each choice string), summed over its spellings among the top tokens."""
    found: bool
    """Whether any choice (or the first token of one) is among the first position's top tokens."""
    top: TopTokens
    """The first position's top tokens (shown in an undecided result)."""


def read_choices(choices: tuple[str, ...]) -> Generator[str, TopTokens | None, ChoiceReading]:
    """The probability of each choice string from top-token lists, as a generator: it yields the
    text to append to the answer position (first "", then the tokens of a choice read so far) and
    is sent the top tokens after it, or None where the backend cannot continue a given text.

    A token matches a choice after stripping spaces (`1` and ` 1` both count, as tokenizers spell
    a digit either way). A token that spells the start of a longer choice (`1` of "10") is
    followed one more step: P("10") = P(`1`)·P(`0` | `1`), and the shorter choice keeps the rest,
    P("1") = P(`1`)·(1 − P(`0` | `1`)) [D45]. Where the backend cannot continue, the token counts
    as the shorter choice."""
    masses = [0.0] * len(choices)
    top = yield ""
    top = list(top or [])
    found = yield from _read_node(choices, "", "", 1.0, top, masses)
    return ChoiceReading(tuple(masses), found, top)


def _read_node(choices, spelled: str, continuation: str, p_node: float, top: TopTokens, masses: list[float]):
    """Add the choices reached from the node `spelled` (probability p_node) to `masses`; returns
    whether any top token leads to a choice."""
    found, leading_on = False, 0.0
    for token, logprob in top:
        if not isinstance(token, str) or not isinstance(logprob, (int, float)):
            continue
        extended = spelled + token if spelled else token.strip()
        if not extended or not any(c.startswith(extended) for c in choices):
            continue
        found = True
        p_token = math.exp(logprob)
        leading_on += p_token
        p = p_node * p_token
        if any(c != extended and c.startswith(extended) for c in choices):
            after = yield continuation + token
            if after is not None:
                yield from _read_node(choices, extended, continuation + token, p, list(after), masses)
                continue
        if extended in choices:
            masses[choices.index(extended)] += p
    if spelled in choices:  # what does not go on to a longer choice ends here [D45]
        masses[choices.index(spelled)] += p_node * max(0.0, 1.0 - leading_on)
    return found


def read_choices_with(
    choices: tuple[str, ...], top_after: Callable[[str], TopTokens | Mapping[str, float] | None]
) -> ChoiceReading:
    """`read_choices` driven by one callable (one request at a time): top_after(continuation)."""
    reader = read_choices(choices)
    try:
        continuation = next(reader)
        while True:
            top = top_after(continuation)
            continuation = reader.send(list(top.items()) if isinstance(top, Mapping) else top)
    except StopIteration as done:
        return done.value


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
