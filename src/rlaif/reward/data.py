"""Preference pairs for the reward stage, one schema whatever the source.

A pair is {"id", "prompt", "summary_a", "summary_b", "p_a", "strength"}: `p_a` is P(a > b) as
given (a soft AI label, or 1.0 when a is the human-chosen or reference summary); `strength` is a
human comparison's |confidence - 5| (None elsewhere) [H01]; clamping and margins are the trainer's
business. Sources (RewardConfig.source):
  - ai_labels: labels/labels.jsonl of the label stage; undecided rows are dropped;
  - human: human comparisons (rlaif.data.comparisons), a = chosen; comparisons of a post held out
    by the human split are never trained on [H02];
  - reference_preferred: a = a post's human reference summary, b = an SFT sample for the post.
    A proxy for human comparisons: humans wrote one side, nobody compared the two.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rlaif.config import DatasetConfig, PipelineConfig, RewardConfig
from rlaif.data import DataError, build_prompt, load_posts
from rlaif.data.comparisons import at_least_strength, load_comparisons
from rlaif.data.prompts import fit_prompt
from rlaif.data.tldr import LoadReport
from rlaif.generation import generate
from rlaif.jsonl import AppendLog


def label_pairs(path: Path) -> tuple[list[dict], int]:
    """Pairs of a labels.jsonl with a label, and how many rows had none (undecided, dropped)."""
    pairs, undecided = [], 0
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{i}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            for key in ("id", "prompt", "summary_a", "summary_b"):
                if not isinstance(row.get(key), str):
                    raise DataError(f"{where}: field '{key}' must be a string, got {row.get(key)!r:.60}")
            p_a = row.get("p_a")
            if p_a is None:  # undecided with `undecided: drop`; with `half` the row carries p_a = 0.5 and is kept
                undecided += 1
                continue
            if isinstance(p_a, bool) or not isinstance(p_a, (int, float)) or not 0.0 <= p_a <= 1.0:
                raise DataError(f"{where}: field 'p_a' must be a probability in [0, 1], got {p_a!r}")
            pairs.append(
                {
                    "id": row["id"],
                    "prompt": row["prompt"],
                    "summary_a": row["summary_a"],
                    "summary_b": row["summary_b"],
                    "p_a": float(p_a),
                    "strength": None,
                }
            )
    if not pairs:
        raise DataError(f"{path}: no decided labels (rows {undecided} undecided)")
    return pairs, undecided


def comparison_pairs(
    tokenizer, rows: list[dict], min_strength: int | None, max_prompt_tokens: int, heldout_posts=frozenset()
) -> tuple[list[dict], dict]:
    """Comparison records as pairs with a = chosen, keeping those whose strength is at least
    min_strength (or unknown) [H01] and leaving out every post in `heldout_posts` [H02]."""
    pairs, weak, held = [], 0, 0
    for row in rows:
        if row["post_id"] in heldout_posts:
            held += 1
            continue
        if not at_least_strength(row, min_strength, keep_unknown=True):
            weak += 1
            continue
        pairs.append(
            {
                "id": row["id"],
                "post_id": row["post_id"],
                "prompt": fit_prompt(tokenizer, row["prompt"], max_prompt_tokens),
                "summary_a": row["chosen"],
                "summary_b": row["rejected"],
                "p_a": 1.0,
                "strength": row["strength"],
            }
        )
    return pairs, {"below_min_strength": weak, "heldout_posts_left_out": held}


def human_pairs(
    tokenizer,
    sources: list[DatasetConfig],
    min_strength: int | None,
    max_prompt_tokens: int,
    heldout_posts=frozenset(),
) -> tuple[list[dict], dict]:
    """The comparisons of `sources` as pairs (see comparison_pairs), with what the load dropped."""
    report = LoadReport()
    comparisons = load_comparisons(sources, report)
    pairs, dropped = comparison_pairs(tokenizer, list(comparisons), min_strength, max_prompt_tokens, heldout_posts)
    if not pairs:
        raise DataError(
            f"no comparisons left in {', '.join(s.path for s in sources)} after min strength {min_strength} "
            f"and the held-out posts ({dropped})"
        )
    return pairs, {"skipped_bad_rows": report.skipped_bad, "duplicate_rows": report.duplicates, **dropped}


def rlhf_human_pairs(
    cfg: PipelineConfig, tokenizer, sources: list[DatasetConfig], min_strength: int | None
) -> tuple[list[dict], dict]:
    """The RLHF arm's human comparisons as pairs (a = chosen, p_a = 1): those of `sources`, or, when
    it is empty, the training part of human.comparisons; posts of human's held-out part are left
    out either way, so nothing the RLHF arm learns from is among the rows every judge is measured
    on [H02]. The reward_rlhf and dpo_rlhf stages read their pairs here."""
    from rlaif.data.splits import human_split

    split = human_split(cfg)
    max_tokens = cfg.data.max_prompt_tokens
    if sources:
        return human_pairs(tokenizer, sources, min_strength, max_tokens, split.heldout_posts)
    pairs, dropped = comparison_pairs(tokenizer, split.train, min_strength, max_tokens, split.heldout_posts)
    if not pairs:
        raise DataError(f"no training comparisons left in human.comparisons after min strength {min_strength}")
    return pairs, {"human_split": split.report, **dropped}


def reference_records(cfg: PipelineConfig, tokenizer) -> list[dict]:
    """{"id", "prompt", "reference"} for data.reference_posts; the reference is cut to
    data.max_summary_tokens, the horizon the SFT samples have, so length alone does not tell them apart."""
    posts, _ = load_posts(cfg.data.reference_posts, require_summary=True)
    records = []
    for post in posts:
        ids = tokenizer(" " + post["summary"], add_special_tokens=False).input_ids[: cfg.data.max_summary_tokens]
        records.append(
            {
                "id": post["id"],
                "prompt": build_prompt(tokenizer, post, cfg.data.max_prompt_tokens),
                "reference": tokenizer.decode(ids, skip_special_tokens=True).strip(),
            }
        )
    return records


def sample_for_references(
    model, tokenizer, records: list[dict], path: Path, settings: RewardConfig, max_new_tokens: int, seed: int
) -> dict[str, dict]:
    """One SFT sample per reference post, appended to `path` batch by batch; posts already there are
    skipped, so an interrupted run resumes without loss or duplicates."""
    with AppendLog(path) as log:
        done = {row["id"]: row for row in log.rows}
        todo = [r for r in records if r["id"] not in done]
        for start in tqdm(
            range(0, len(todo), settings.sample_batch_size), desc="sft samples for references", unit="batch"
        ):
            batch = todo[start : start + settings.sample_batch_size]
            torch.manual_seed(seed + len(done))  # depends on progress only, so a resumed run continues the same stream
            completions = generate(
                model,
                tokenizer,
                [r["prompt"] for r in batch],
                max_new_tokens=max_new_tokens,
                temperature=settings.sample_temperature,
                batch_size=settings.sample_batch_size,
            )
            for record, (c,) in zip(batch, completions):
                row = {
                    **record,
                    "sample": c.text,
                    "ended_with_eos": c.ended_with_eos,
                    "generation": {
                        "temperature": settings.sample_temperature,
                        "max_new_tokens": max_new_tokens,
                        "seed": seed,
                    },
                }
                log.append(row)
                done[row["id"]] = row
    return done


def reference_pairs(samples: dict[str, dict]) -> list[dict]:
    """a = the human reference, b = the SFT sample; posts whose sample equals the reference are dropped."""
    return [
        {
            "id": s["id"],
            "prompt": s["prompt"],
            "summary_a": s["reference"],
            "summary_b": s["sample"],
            "p_a": 1.0,
            "strength": None,
        }
        for s in samples.values()
        if s["sample"].strip() != s["reference"].strip()
    ]


def split_pairs(
    pairs: list[dict], validation_fraction: float, seed: int, max_examples: int | None
) -> tuple[list[dict], list[dict]]:
    """(train, held out): a seeded shuffle, then the first share held out."""
    pairs = sorted(pairs, key=lambda p: p["id"])  # file order must not matter
    random.Random(seed).shuffle(pairs)
    n_val = round(len(pairs) * validation_fraction) if validation_fraction > 0 else 0
    n_val = max(1, n_val) if validation_fraction > 0 and len(pairs) > 1 else n_val
    held_out, train = pairs[:n_val], pairs[n_val:]
    if not train:
        raise DataError(f"{len(pairs)} pairs leave nothing to train on after holding out {n_val}")
    if max_examples is not None:
        train = train[:max_examples]
    return train, held_out
