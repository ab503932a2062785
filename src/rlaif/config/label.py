"""Config of the LLM labeler (shared by `label`, the `evaluate` judge and direct-RLAIF rewards)
and of the stage `label`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints (from_dict, describe)
# resolves the field annotations in this module's namespace.
from rlaif.config.data import DatasetConfig


@dataclass
class OpenAIApiSettings:
    """An OpenAI-compatible HTTP server as labeler: vLLM `serve`, llama.cpp server, or OpenAI."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """Server root including `/v1`; requests go to `{base_url}/chat/completions` or `/completions`."""
    endpoint: Literal["chat", "completions"] = "chat"
    """`chat`: the server applies the model's chat template; `completions`: the prompt is sent as
    plain text (system, user and assistant parts joined by blank lines)."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the API key (sent as a Bearer token, never
    logged or written). None sends no key (local servers)."""
    continue_final_message: bool = False
    """Chat only. On: the assistant turn is sent half-written (`Rationale:`, later `... Preferred
    Summary=`) and the server continues it (vLLM's `continue_final_message`). Off (OpenAI): the
    rationale is the assistant's reply and the answer is asked for in a second user turn."""
    concurrency: int = 4
    """Requests in flight at once (one thread each)."""
    timeout_s: float = 60.0
    """Seconds before a request counts as timed out (and is retried)."""
    max_retries: int = 4
    """Retries after a 429, a 5xx, a timeout, a dropped connection or an unreadable body. A pair
    still failing after them is written to labels/failures.jsonl, never dropped silently."""
    backoff_s: float = 1.0
    """First retry delay in seconds, doubled on each retry; a longer Retry-After header wins."""


@dataclass
class LabelerSettings:
    """An LLM judge behind one interface (rlaif.labelers.make_labeler). The `label` stage, the judge
    of `evaluate` and a direct-RLAIF reward all use it, each with its own prompts."""

    backend: Literal["hf_local", "openai_api", "vllm_offline"] = "hf_local"
    """`hf_local`: transformers in this process; `openai_api`: an HTTP server; `vllm_offline`:
    vLLM's offline engine (needs `pip install vllm`)."""
    model: str = "smollm2-135m"
    """hf_local/vllm_offline: `smollm2-135m` (embedded), `tiny-random`, a Hub id or a folder;
    openai_api: the model name the server expects."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype (hf_local, vllm_offline)."""
    tensor_parallel_size: int = 1
    """vllm_offline: GPUs one model is split over (4 for a 70B labeler in bf16 on 80 GB GPUs)."""
    batch_size: int = 16
    """Sequences per forward batch (hf_local); a pair is two sequences, one per order."""
    max_rationale_tokens: int = 64
    """Token cap of the chain-of-thought rationale (stage 1 of a `cot` prompt)."""
    rationale_temperature: float = 0.0
    """0 decodes the rationale greedily, so labels are deterministic; > 0 samples it."""
    top_logprobs: int = 20
    """An order is undecided when neither `1` nor `2` is among this many most likely next tokens
    (the most OpenAI's API returns is 20)."""
    api: OpenAIApiSettings = field(default_factory=OpenAIApiSettings)
    """Settings of the `openai_api` backend."""


@dataclass
class LabelConfig:
    """Stage `label`: an LLM says which summary of each pair is better, in both orders, and the
    two answers average into a soft label P(a > b) (Lee et al. 2023, RLAIF, §2.1)."""

    RENAMED: ClassVar[dict[str, str]] = {"alignment_min_confidence": "alignment_min_strength"}
    """Old keys and their replacements; an old key is an error that says what changed ([H01])."""

    labeler: LabelerSettings = field(default_factory=LabelerSettings)
    """The judge model and backend."""

    # --- prompt ---
    prompt_style: Literal["cot", "base"] = "cot"
    """`cot`: the labeler first writes a rationale, then `Preferred Summary=` is appended and the
    next-token probabilities of `1`/`2` are read (0-shot chain of thought aligned best with humans
    on TL;DR in Lee et al. 2023); `base`: the probabilities are read right after the pair."""
    fewshot_file: str | None = None
    """JSONL of exemplars shown before each pair (fields text, summary_1, summary_2, preferred
    1 or 2, and rationale for `cot`); None = 0-shot."""
    discourage_length: bool = False
    """Add to the built-in preamble a sentence telling the labeler not to prefer a summary for being
    longer. Off by default: Lee et al.'s preamble has none, and the length preference of AI labels is
    one of the results the paper compares. [L09]"""
    prompt_file: str | None = None
    """A prompt template file (YAML: system, user, assistant, answer, answer_request, choices,
    separator; placeholders {text}, {summary_1}, {summary_2}, {rationale}) used instead of the
    built-in TL;DR prompt, e.g. your copy of Lee et al.'s, the seed's or TRL's. Its `answer` field
    (chain of thought) must agree with prompt_style; fewshot_file and discourage_length do not apply.
    Format: README, "Judge prompts from a file". [L09]"""

    # --- output ---
    undecided: Literal["drop", "half"] = "drop"
    """A pair is undecided when an order has neither `1` nor `2` among the top tokens. `drop`:
    p_a is null and reward training skips it; `half`: p_a is 0.5. Both are counted in metrics."""
    max_pairs: int | None = None
    """Label at most the first N pairs of pairs/pairs.jsonl (None = all)."""
    max_failed_fraction: float = 0.0
    """Share of pairs that may still fail after retries (HTTP backend) for the stage to finish;
    above it the stage stops as failed and a rerun retries just those pairs."""

    # --- alignment with human labels: `rlaif label CONFIG --eval-alignment` ---
    alignment_summarize: list[DatasetConfig] = field(default_factory=list)
    """Further human TL;DR comparisons (openai/summarize_from_feedback schema), judged with this
    prompt. The held-out part of human.comparisons is judged in any case (`rlaif run` and
    --eval-alignment), so the labeler is measured on the same rows as the reward models."""
    alignment_dialogue: list[DatasetConfig] = field(default_factory=list)
    """Human dialogue comparisons (HH-RLHF chosen/rejected transcripts), judged with the
    harmlessness preamble of the dialogue task."""
    alignment_min_strength: int | None = None
    """For alignment_summarize: keep only comparisons whose strength |confidence - 5| is at least
    this (1-4, symmetric in the two summaries: 3 keeps confidence <= 2 or >= 8); when set,
    comparisons without one are left out. HH-RLHF has none. [H01]"""
    alignment_max_pairs: int = 200
    """Comparisons judged per set (the first N after the confidence filter)."""
