"""The d-RLAIF rating judge: the AI labeler scores each summary 1-10, no reward model (Lee et al.
2023, §2.3) [D45].

The labeler (any backend) reads the post and one summary (`RatingPrompt`); the assistant turn
starts with `Rating: ` and the backend returns P("1") .. P("10"), "10" included where it is two
tokens (SmolLM2 spells it `1` `0`; the backends step one more token for it, [L08]). The score is
the probability-weighted mean over the ten, renormalised, rescaled from [1, 10] to [-1, 1]:

    score = (sum_s s * p(s) / sum_s p(s) - 5.5) / 4.5

The RL reward-source adapter around it is rlaif.rl.rewards.DirectReward.
"""

from __future__ import annotations

import torch

from rlaif.config import LabelerSettings
from rlaif.labelers.base import Labeler, make_labeler
from rlaif.labelers.prompts import RATING_SCORES, RatingPrompt, judge_text_from_prompt

SCORES = torch.tensor([float(s) for s in RATING_SCORES])  # 1..10


class RatingFailed(RuntimeError):
    """A rating request failed for good (after the backend's retries); the RL stage stops and a
    rerun resumes from its last checkpoint."""


def rescale(probs: torch.Tensor) -> torch.Tensor:
    """(B, 10) probabilities of the scores 1..10 -> expected score mapped from [1, 10] to [-1, 1], (B,)."""
    expected = (probs * SCORES.to(probs.device)).sum(-1) / probs.sum(-1)
    return (expected - 5.5) / 4.5


class RatingJudge:
    """Rates summaries 1-10 with any labeler backend."""

    def __init__(self, settings: LabelerSettings, prompt: RatingPrompt | None = None, labeler: Labeler | None = None):
        self.labeler = labeler if labeler is not None else make_labeler(settings)
        self.prompt = prompt if prompt is not None else RatingPrompt()
        self.unrated = 0
        """Summaries so far with no score among the labeler's top tokens (HTTP, vLLM); scored 0."""

    def score_probs(self, prompts: list[str], summaries: list[str]) -> torch.Tensor:
        """(N, 10) probabilities of the scores 1..10, renormalised over the ten. A summary the labeler
        gave no score at all (none of 1-10 among a server's top tokens) gets the uniform distribution,
        i.e. the midpoint score 0, and is counted in `unrated`."""
        requests = [self.prompt.request(judge_text_from_prompt(p), s) for p, s in zip(prompts, summaries, strict=True)]
        results = self.labeler.judge(requests)
        rows, unrated = [], 0
        for result in results:
            if result.failed:
                raise RatingFailed(f"d-RLAIF rating by {self.labeler.backend} {self.labeler.model}: {result.error}")
            if result.probs is None:
                unrated += 1
                rows.append([1.0 / len(RATING_SCORES)] * len(RATING_SCORES))
            else:
                rows.append(list(result.probs))
        if unrated:
            self.unrated += unrated
            print(
                f"[rlaif] d-RLAIF: {unrated} of {len(results)} summaries got no score 1-10 among the labeler's "
                f"top tokens; they score 0 (the midpoint)",
                flush=True,
            )
        return torch.tensor(rows, dtype=torch.float32)

    def scores(self, prompts: list[str], summaries: list[str]) -> torch.Tensor:
        """(N,) d-RLAIF scores in [-1, 1] [D45]."""
        return rescale(self.score_probs(prompts, summaries))
