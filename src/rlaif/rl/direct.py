"""d-RLAIF: the AI labeler scores each summary directly, no reward model (Lee et al. 2023, §2.3).

The labeler (a local transformers chat model, as the hf_local backend) reads the post and one
summary and is asked for a 1-10 rating; the assistant turn starts with `Rating: ` and the reward
is the probability-weighted mean over the ten scores, rescaled to [-1, 1] [D45]:

    reward = (sum_s s * p(s) / sum_s p(s) - 5.5) / 4.5

"10" may be two tokens: SmolLM2 splits every number into digits, so "10" is `1` then `0`. Then
p(10) = P(`1`) * P(`0` | `1`) and p(1) = P(`1`) * (1 - P(`0` | `1`)): a second forward step, one
token long on the KV cache of the first, reads P(`0` | `1`). Where "10" is one token, p(10) is its
probability and no second step is run. A tokenizer that spells a score 1-9 with more than one
token, or "10" otherwise, is refused at start.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from rlaif.config import LabelerSettings
from rlaif.labelers.prompts import SUMMARIZE_PREAMBLE, SYSTEM, judge_text_from_prompt
from rlaif.models import load_causal_lm, load_tokenizer

INSTRUCTION = (
    "Rate the summary below on a scale of 1 to 10, where 1 is useless or wrong and 10 is an excellent "
    "summary. Answer with the number only."
)
ASSISTANT_PREFIX = "Rating: "
SCORES = torch.arange(1, 11, dtype=torch.float32)


def rescale(probs: torch.Tensor) -> torch.Tensor:
    """(B, 10) probabilities of the scores 1..10 -> expected score mapped from [1, 10] to [-1, 1], (B,)."""
    expected = (probs * SCORES).sum(-1) / probs.sum(-1)
    return (expected - 5.5) / 4.5


class DirectReward:
    """A reward source (see rlaif.rl.rewards) backed by a local labeler model."""

    def __init__(self, settings: LabelerSettings):
        if settings.backend != "hf_local":
            raise ValueError(f"direct reward needs the hf_local labeler backend, got {settings.backend!r}")
        self.batch_size = settings.batch_size
        self.tokenizer = load_tokenizer(settings.model, padding_side="left")
        self.lm = load_causal_lm(settings.model, self.tokenizer, settings.dtype).eval().requires_grad_(False)
        self.digit_ids, self.ten = self._score_tokens()

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _score_tokens(self) -> tuple[list[int], list[int]]:
        """Ids of `1`..`9` after the prefix, and the one or two ids of `10`."""
        base = self._ids(ASSISTANT_PREFIX)
        spelled = {}
        for s in range(1, 11):
            ids = self._ids(ASSISTANT_PREFIX + str(s))
            if ids[: len(base)] != base:
                raise ValueError(f"the labeler tokenizer merges {ASSISTANT_PREFIX!r} with the score {s}")
            spelled[s] = ids[len(base) :]
        digits = [spelled[s] for s in range(1, 10)]
        if any(len(d) != 1 for d in digits):
            raise ValueError(f"the labeler tokenizer spells some of 1-9 with several tokens: {digits}")
        ten = spelled[10]
        if not (len(ten) == 1 or (len(ten) == 2 and ten[0] == digits[0][0])):
            raise ValueError(f"the labeler tokenizer spells 10 as {ten}; expected one token or `1` + `0`")
        return [d[0] for d in digits], ten

    def prompt(self, prompt: str, summary: str) -> str:
        user = (
            f"{SUMMARIZE_PREAMBLE}\n\n{INSTRUCTION}\n\nText - {judge_text_from_prompt(prompt)}\n\nSummary - {summary}"
        )
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{SYSTEM}\n\n{user}\n\n"
        return text + ASSISTANT_PREFIX

    @torch.no_grad()
    def score_probs(self, prompts: list[str], summaries: list[str]) -> torch.Tensor:
        """(N, 10) probabilities of the scores 1..10, renormalised over the ten."""
        out = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [
                self.prompt(p, s)
                for p, s in zip(prompts[start : start + self.batch_size], summaries[start : start + self.batch_size])
            ]
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.lm.device
            )
            mask = batch.attention_mask
            cache = DynamicCache(config=self.lm.config)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = (
                self.lm(
                    input_ids=batch.input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                .logits[:, -1]
                .float()
            )
            first = torch.softmax(logits, -1)  # (b, V)
            probs = first[:, self.digit_ids]  # (b, 9): P(1..9) as first token
            if len(self.ten) == 1:
                ten = first[:, self.ten[0]]
            else:  # "10" = `1` `0`: one more step reads P(`0` | `1`)
                step = torch.full((len(texts), 1), self.ten[0], device=mask.device)
                logits = (
                    self.lm(
                        input_ids=step,
                        attention_mask=torch.cat([mask, torch.ones_like(step)], 1),
                        position_ids=positions[:, -1:] + 1,
                        past_key_values=cache,
                        use_cache=True,
                    )
                    .logits[:, -1]
                    .float()
                )
                p_zero = torch.softmax(logits, -1)[:, self.ten[1]]
                ten = probs[:, 0] * p_zero
                probs = torch.cat([probs[:, :1] * (1 - p_zero).unsqueeze(1), probs[:, 1:]], dim=1)
            probs = torch.cat([probs, ten.unsqueeze(1)], dim=1)  # (b, 10)
            out.append(probs / probs.sum(-1, keepdim=True))
        return torch.cat(out).cpu()

    def __call__(
        self, query_responses, attention_mask, last_index, prompts: list[str], responses: list[str]
    ) -> torch.Tensor:
        return rescale(self.score_probs(prompts, responses)).to(query_responses.device)
