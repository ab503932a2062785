"""Shared config pieces: data sources, LoRA settings, and the `data` section every stage reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# .yaml/.yml: judge prompt template files, listed among a stage's inputs so that their content is
# hashed into its fingerprint (they are not a data format: as data they are refused by name).
LOCAL_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".gz", ".yaml", ".yml")


@dataclass
class DatasetConfig:
    """One data source: a Hub dataset id or a local file."""

    path: str = ""
    """Hub dataset id (`trl-lib/tldr`, `CarperAI/openai_summarize_tldr`,
    `openai/summarize_from_feedback`) or a local .jsonl/.json/.parquet/.csv file (relative paths
    are relative to the directory you run `rlaif` from)."""
    hub_config: str | None = None
    """Hub dataset config name, e.g. `comparisons` or `axis` for openai/summarize_from_feedback."""
    split: str | None = None
    """Hub split to load (default `train`). For a local file with a `split` column, keep only rows
    with this value; None keeps every row."""
    fields: dict[str, str] = field(default_factory=dict)
    """Our field name -> the source's column name, for sources that name columns differently.
    Our fields: id, subreddit, title, post, summary (posts) or prompt, chosen, rejected,
    confidence, strength (comparisons)."""
    limit: int | None = None
    """Keep only the first N rows after filtering (None = all)."""
    skip: int = 0
    """Drop the first N rows after filtering, before `limit` (carves disjoint slices of one file)."""
    on_bad_row: Literal["error", "skip"] = "error"
    """`error`: a malformed row stops the run with file, line and field named. `skip`: such rows
    are dropped and counted in the stage metrics."""

    @property
    def is_local(self) -> bool:
        p = self.path
        return p.startswith((".", "/", "~")) or p.lower().endswith(LOCAL_DATA_SUFFIXES)


@dataclass
class LoraSettings:
    """LoRA through peft. Off means full fine-tuning."""

    enabled: bool = False
    """Train LoRA adapters instead of all weights."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator (effective scale alpha / r)."""
    dropout: float = 0.0
    """Adapter dropout; 0 keeps training deterministic, as RLHF implementations prefer."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Modules that get adapters; `all-linear` is peft's shorthand for every linear layer but the head."""
    frozen_layers: float = 0.0
    """Fraction of the decoder layers, from the bottom, that get no adapter (peft's
    layers_to_transform): 0.5 adapts the top half only, and the backward pass stops there. RL's lean
    mode takes this from rl.shared_layers instead."""


@dataclass
class DataConfig:
    """Where the posts come from and how prompts are built. Shared by every stage."""

    sft: list[DatasetConfig] = field(default_factory=list)
    """Posts with human reference summaries, for supervised fine-tuning."""
    prompts: list[DatasetConfig] = field(default_factory=list)
    """Posts (summaries not needed) for the pairs, labels, reward and RL stages. A comparisons set
    in the summarize_from_feedback schema is de-duplicated into unique posts."""
    eval: list[DatasetConfig] = field(default_factory=list)
    """Held-out posts, with reference summaries where available, for evaluation."""
    reference_posts: list[DatasetConfig] = field(default_factory=list)
    """Posts with human reference summaries NOT used for SFT: the reward stage's
    `reference_preferred` source pairs each reference with an SFT sample, and their references set
    the reward normalisation. Keep them disjoint from data.sft (use skip/limit on one file)."""
    max_prompt_tokens: int = 512
    """Token budget of a formatted prompt. Longer posts are cut at the last newline (else sentence
    end, else word boundary) that fits, as OpenAI's TL;DR preprocessing does (Stiennon et al. 2020)."""
    max_summary_tokens: int = 53
    """Token budget of a reference summary, EOS excluded; 53 matches the RL response cap of
    Huang et al. 2024 so SFT targets and sampled responses have the same horizon."""


@dataclass
class HumanComparisonsConfig:
    """Human comparisons of summaries (openai/summarize_from_feedback schema), split by post into a
    training part and a held-out part [H02]. The RLHF reward model trains on the training part (when
    its `source` is `human` and it names no `comparisons` of its own); every judge of the run, both
    reward models and the AI labeler, is measured on the held-out part, the same rows for all: the
    report's "Agreement with people" [H03]."""

    comparisons: list[DatasetConfig] = field(default_factory=list)
    """The comparison sources, e.g. ../shared/data/tldr/sff_comparisons_batch13.jsonl, or
    openai/summarize_from_feedback (hub_config comparisons). Empty: no agreement with people is measured."""
    heldout_fraction: float = 0.3
    """Share of the posts held out; every comparison of a post falls on the same side. Posts are
    ordered by a hash of (seed, post id), so the split does not depend on file order. 1.0 holds
    out everything (nothing of these sources is trained on)."""
    max_heldout: int | None = None
    """Measure on at most this many held-out comparisons, the first in the split's (random) post
    order; the rest of the held-out posts are still never trained on. None = all."""
    labeler_max_heldout: int | None = None
    """The AI labeler (stage label_alignment) is measured on at most this many held-out comparisons,
    in the same order: the first max_heldout of them are the rows every judge shares, the rest give
    its alignment a narrower interval (the labeler is cheaper per row than scoring with two reward
    models). None = max_heldout (the shared rows only); at least max_heldout when both are set."""
    high_confidence_strength: int = 3
    """The high-confidence subset, reported beside every figure: strength |confidence - 5| >= this
    (3: confidence <= 2 or >= 8, 549 of batch 13's 1,097 rows). [H01]"""
    one_sided_min_confidence: int | None = None
    """Also report every judge on the seed's one-sided filter, raw confidence >= this (the seed's
    8). It keeps only pairs that summaries[1] won, so a judge that always prefers the second summary
    scores 100% there; it is there to compare with the seed's 61.0% / 69.3%. None = not reported."""
    length_match_chars: int = 10
    """Pairs whose summaries differ in length by at most this many characters (~2 words) are the
    length-matched pairs: a judge's accuracy there is what it knows beyond length."""
    bootstrap_samples: int = 1000
    """Replicates of the post-level bootstrap behind each 95% interval of the agreement figures."""
