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
    Our fields: id, subreddit, title, post, summary (posts) or chosen, rejected (pairs)."""
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
