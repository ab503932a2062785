"""Config sections of the stages `evaluate` (judged win rates) and `report`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints (from_dict, describe)
# resolves the field annotations in this module's namespace.
from rlaif.config.label import LabelerSettings


@dataclass
class EvaluateConfig:
    """Stage `evaluate`: win rates of the policies against each other and the human references on
    held-out posts (data.eval), judged by an LLM in both orders, plus judge-free checks."""

    # --- generation (the same for every system) ---
    max_new_tokens: int = 53
    """Token cap of every system's greedy summary; 53 is the RL response length of Huang et al. 2024."""
    batch_size: int = 8
    """Posts per generation batch."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the policies while generating and of the reward models while scoring."""
    max_posts: int | None = None
    """Evaluate on at most the first N posts of data.eval (None = all)."""

    # --- comparisons ---
    comparisons: list[str] = field(
        default_factory=lambda: [
            "rl:sft",
            "rl:reference",
            "sft:reference",
            "rl_rlhf:sft",
            "rl_rlhf:reference",
            "rl:rl_rlhf",
        ]
    )
    """`A:B` pairs to judge, win rate reported for A. Systems: sft, rl (RLAIF arm), rl_rlhf (RLHF
    arm), reference (the human summary, on posts that have one). Pairs naming a system this run
    lacks (no RLHF arm, no references) are skipped. Lee et al. 2023 report RLAIF vs SFT, RLHF vs
    SFT and RLAIF vs RLHF."""

    # --- judge ---
    judge: LabelerSettings = field(default_factory=LabelerSettings)
    """The judge model and backend (any labeler backend); its prompt is the evaluation's own."""
    judge_style: Literal["cot", "base"] = "cot"
    """`cot`: the judge writes a rationale (judge.max_rationale_tokens) before answering; `base`:
    the answer is read at once (fast, what a small CPU judge can afford)."""

    # --- statistics ---
    bootstrap_samples: int = 1000
    """Bootstrap resamples of the posts for the 95% confidence intervals."""


@dataclass
class FrontierConfig:
    """Stage `frontier`: the KL-reward frontier of every method (Gao et al. 2022, arXiv 2210.10760). Each
    policy stage that saved snapshots during training (its trajectory/) is sampled at each of them on
    held-out posts; the KL to SFT is plotted against the mean score of its own arm's reward model and
    of the other arm's, with best-of-n's curve over n beside them. [F01]-[F03]"""

    posts: int = 32
    """The first N posts of data.eval (the same for every point)."""
    temperature: float = 1.0
    """Sampling temperature of the frontier samples; 1.0 measures the KL between the models themselves
    (what best-of-n's bound is about), whatever temperature a method trained at."""
    max_new_tokens: int = 53
    """Token cap of each sample (the RL response length of Huang et al. 2024)."""
    batch_size: int = 16
    """Posts per sampling batch."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the policies and reward models while sampling and scoring."""
    best_of_n: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    """n of the best-of-n curve's points (each at most the best_of_n stage's n)."""
    bootstrap_samples: int = 1000
    """Bootstrap resamples of the posts for the 95% intervals of each point."""


@dataclass
class ReportConfig:
    """Stage `report`: report/report.html (self-contained) and report/report.md from every stage's outputs."""

    num_samples: int = 4
    """Held-out posts shown with their reference, SFT and RL summaries side by side."""
    max_post_chars: int = 1200
    """Posts longer than this are cut (with an ellipsis) in the sample table."""
