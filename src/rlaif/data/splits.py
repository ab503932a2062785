"""Which posts each stage uses, computed in one place so that two stages never split them two ways.

The prompt pool is data.prompts de-duplicated into posts, in file order (a summarize_from_feedback
comparisons set becomes its unique posts). Posts [0, pairs.num_posts) get sampled pairs (and so
train the reward model); posts from pairs.num_posts on are left for the policy-optimisation stages,
so the reward model never scores a post it was trained on. The evaluation posts are data.eval, with
their prompts built one way for every stage that summarises them.

Human comparisons (human.comparisons) are split by post: the training part trains the RLHF reward
model, the held-out part measures every judge, the same rows for all (see human_split) [H02].
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from datasets import Dataset

from rlaif.config import ConfigError, DatasetConfig, PipelineConfig
from rlaif.data.comparisons import load_comparisons
from rlaif.data.prompts import build_prompt
from rlaif.data.readers import DataError
from rlaif.data.tldr import LoadReport, load_posts


def prompt_pool(cfg: PipelineConfig) -> tuple[Dataset, LoadReport]:
    if not cfg.data.prompts:
        raise ConfigError("data.prompts: empty; the pairs stage samples summaries for these posts")
    return load_posts(cfg.data.prompts)


def pool_split(pool: Dataset, num_posts: int | None) -> tuple[Dataset, Dataset]:
    """(posts for pairs, posts left for RL): [0, num_posts) and [num_posts, end) of the pool.
    With num_posts None both are the whole pool (RL then reuses the pairs' posts)."""
    if num_posts is None:
        return pool, pool
    n = min(num_posts, len(pool))
    return pool.select(range(n)), pool.select(range(n, len(pool)))


def policy_posts(cfg: PipelineConfig, own_prompts: list[DatasetConfig], where: str) -> Dataset:
    """Posts a policy-optimisation stage trains on: its own `prompts` sources when given, else the
    prompt pool's posts that the pairs stage left (see the module docstring)."""
    if own_prompts:
        return load_posts(own_prompts)[0]
    if not cfg.data.prompts:
        raise ConfigError(f"{where}.prompts: empty and so is data.prompts; the stage needs posts to optimise on")
    pool, _ = load_posts(cfg.data.prompts)
    skip = cfg.pairs.num_posts or 0
    if skip >= len(pool):
        raise DataError(
            f"pairs.num_posts={skip} uses all {len(pool)} posts of data.prompts; none is left for RL "
            f"(lower it, add posts, or set {where}.prompts)"
        )
    return pool_split(pool, cfg.pairs.num_posts)[1]


def prompt_records(posts, tokenizer, max_prompt_tokens: int) -> list[dict]:
    """{id, prompt, reference} per post: the formatted prompt, cut to the token budget, and the human
    reference summary ("" where the post has none)."""
    return [
        {"id": p["id"], "prompt": build_prompt(tokenizer, p, max_prompt_tokens), "reference": p["summary"]}
        for p in posts
    ]


def eval_records(cfg: PipelineConfig, tokenizer, max_posts: int | None = None) -> list[dict]:
    """The first `max_posts` posts of data.eval as prompt records (see prompt_records)."""
    if not cfg.data.eval:
        raise ConfigError("data.eval: no held-out posts configured; add at least one source to evaluate on")
    posts, _ = load_posts(cfg.data.eval)
    if max_posts is not None:
        posts = posts.select(range(min(max_posts, len(posts))))
    return prompt_records(posts, tokenizer, cfg.data.max_prompt_tokens)


@dataclass
class HumanSplit:
    """human.comparisons split by post [H02]."""

    train: list[dict]
    """Comparisons of the training posts, in file order."""
    heldout: list[dict]
    """The held-out comparisons every judge is measured on (at most human.max_heldout), in split order."""
    heldout_posts: set[str] = field(default_factory=set)
    """Every held-out post id, measured or not: nothing trains on these."""
    report: dict = field(default_factory=dict)
    labeler_heldout: list[dict] = field(default_factory=list)
    """The rows the AI labeler is measured on (at most human.labeler_max_heldout): `heldout` first,
    then further held-out rows in the same order."""


def post_rank(seed: int, post_id: str) -> str:
    """A post's place in the split order: a hash of (seed, post id), independent of file order."""
    return hashlib.sha256(f"{seed}:{post_id}".encode()).hexdigest()


def split_by_post(rows: list[dict], heldout_fraction: float, seed: int) -> tuple[list[dict], list[dict], set[str]]:
    """(train rows, held-out rows, held-out post ids): the round(fraction * posts) posts first in
    post_rank order are held out with all their rows (at least one post, and one left for training
    when the fraction is below 1). Held-out rows come in post_rank order, rows of a post in file order."""
    posts = sorted({r["post_id"] for r in rows}, key=lambda p: post_rank(seed, p))
    n = len(posts) if heldout_fraction >= 1 else min(max(1, round(heldout_fraction * len(posts))), len(posts) - 1)
    held = set(posts[:n])
    order = {p: i for i, p in enumerate(posts)}
    heldout = sorted((r for r in rows if r["post_id"] in held), key=lambda r: order[r["post_id"]])
    return [r for r in rows if r["post_id"] not in held], heldout, held


def human_split(cfg: PipelineConfig) -> HumanSplit:
    """human.comparisons loaded and split by post; empty when none are configured [H02]."""
    human = cfg.human
    if not human.comparisons:
        return HumanSplit([], [])
    report = LoadReport()
    rows = list(load_comparisons(human.comparisons, report))
    train, heldout, held = split_by_post(rows, human.heldout_fraction, cfg.seed)
    measured = heldout[: human.max_heldout] if human.max_heldout is not None else heldout
    wider = human.labeler_max_heldout
    labeler_rows = heldout[:wider] if wider is not None else measured
    return HumanSplit(
        train,
        measured,
        held,
        {
            "comparisons": len(rows),
            "posts": len({r["post_id"] for r in rows}),
            "train_comparisons": len(train),
            "heldout_posts": len(held),
            "heldout_comparisons": len(heldout),
            "measured_comparisons": len(measured),
            "labeler_comparisons": len(labeler_rows),
            "skipped_bad_rows": report.skipped_bad,
            "duplicate_rows": report.duplicates,
        },
        labeler_rows,
    )
