"""Stage `pairs`: two summaries per post, sampled from the SFT policy, for the labeler to compare.

Reads sft/model and data.prompts; writes pairs/{pairs.jsonl, metrics.json}. The prompt pool is
data.prompts de-duplicated into posts (a summarize_from_feedback comparisons set becomes its
unique posts) in file order; this stage uses posts [0, pairs.num_posts) and leaves the rest for
RL (`prompt_pool_split`). Each batch is sampled with its own seed (cfg.seed + the pool index of
its first post), appended at once and skipped by a rerun, so a killed run resumes without loss
or duplicates. [L06]
"""

from __future__ import annotations

import os
import time

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from rlaif.artifacts import RunDir
from rlaif.config import ConfigError, PipelineConfig
from rlaif.data import format_prompt, load_posts, truncate_post
from rlaif.generation import generate
from rlaif.jsonl import AppendLog
from rlaif.models import load_causal_lm, load_tokenizer


def upstream(cfg: PipelineConfig, stage: str = "pairs") -> tuple[str, ...]:
    return ("sft",)


def data_sources(cfg: PipelineConfig, stage: str = "pairs"):
    return cfg.data.prompts


def single_process(stage: str) -> None:
    """Sampling and labeling are inference: one process does them. Several ranks would each
    append the same rows, so a multi-process launch is refused rather than deduplicated."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            f"stage {stage} runs in one process; start it with `rlaif {stage} CONFIG`, not accelerate launch"
        )


def prompt_pool_split(posts: Dataset, num_posts: int | None) -> tuple[Dataset, Dataset]:
    """(posts for pairs, posts left for RL): [0, num_posts) and [num_posts, end) of the pool.
    With num_posts None both are the whole pool."""
    if num_posts is None:
        return posts, posts
    n = min(num_posts, len(posts))
    return posts.select(range(n)), posts.select(range(n, len(posts)))


def run(cfg: PipelineConfig, rundir: RunDir, stage: str = "pairs") -> dict:
    section = cfg.pairs
    if not cfg.data.prompts:
        raise ConfigError("data.prompts: empty; the pairs stage samples summaries for these posts")
    single_process(stage)
    out = rundir.begin(stage, section, upstream=upstream(cfg), data=data_sources(cfg))
    t0 = time.time()
    model_dir = str(rundir.stage_dir("sft") / "model")
    tokenizer = load_tokenizer(model_dir)
    pool, load_report = load_posts(cfg.data.prompts)
    posts, rest = prompt_pool_split(pool, section.num_posts)

    with AppendLog(out.dir / "pairs.jsonl") as log:
        done = {r["id"] for r in log.rows}
        todo = [(i, post) for i, post in enumerate(posts) if post["id"] not in done]
        if todo:
            model = load_causal_lm(model_dir, tokenizer, section.dtype)
            if torch.cuda.is_available():
                model.to("cuda")
            batches = range(0, len(todo), section.batch_size)
            for start in tqdm(batches, desc="pairs", unit="batch"):
                log.extend(_sample_batch(model, tokenizer, todo[start : start + section.batch_size], cfg))
        rows = log.rows

    metrics = {
        "pairs": len(rows),
        "sampled_now": len(todo),
        "seconds": round(time.time() - t0, 2),
        "prompt_pool": len(pool),
        "pool_left_for_rl": len(rest) if section.num_posts is not None else len(pool),
        "eos_rate": _mean([r[k] for r in rows for k in ("a_ended_with_eos", "b_ended_with_eos")]),
        "identical_rate": _mean([r["summary_a"] == r["summary_b"] for r in rows]),
        "mean_summary_chars": _mean([len(r[k]) for r in rows for k in ("summary_a", "summary_b")]),
        "skipped_bad_rows": load_report.skipped_bad,
        "duplicate_rows": load_report.duplicates,
        "resumed": out.resumed,
    }
    print(
        f"[rlaif] pairs: {len(rows)} pairs ({len(todo)} new) in {metrics['seconds']:.0f}s -> {out.dir / 'pairs.jsonl'}",
        flush=True,
    )
    rundir.finish(out, metrics)
    return metrics


def _sample_batch(model, tokenizer, batch: list[tuple[int, dict]], cfg: PipelineConfig) -> list[dict]:
    section = cfg.pairs
    seed = cfg.seed + batch[0][0]  # a batch's seed depends on where it sits in the pool, not on resumes
    torch.manual_seed(seed)
    records, prompts = [], []
    for _, post in batch:
        text = truncate_post(tokenizer, post["post"], post["subreddit"], post["title"], cfg.data.max_prompt_tokens)
        prompts.append(format_prompt(text, post["subreddit"], post["title"]))
        records.append({"id": post["id"], "post": text})
    samples = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=section.max_new_tokens,
        temperature=section.temperature,
        batch_size=len(prompts),
        num_return_sequences=2,
    )
    settings = {
        "model": "sft/model",
        "temperature": section.temperature,
        "max_new_tokens": section.max_new_tokens,
        "seed": seed,
    }
    return [
        {
            "id": rec["id"],
            "prompt": prompt,
            "post": rec["post"],
            "summary_a": a.text,
            "summary_b": b.text,
            "a_ended_with_eos": a.ended_with_eos,
            "b_ended_with_eos": b.ended_with_eos,
            "generation": settings,
        }
        for rec, prompt, (a, b) in zip(records, prompts, samples)
    ]


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None
