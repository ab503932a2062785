"""Stage `pairs`: two summaries per post, sampled from the SFT policy, for the labeler to compare.

Reads sft/model and the prompt pool (data.prompts); writes pairs/{pairs.jsonl, metrics.json}. It
uses posts [0, pairs.num_posts) of the pool and leaves the rest for RL (rlaif.data.splits). Each
batch is sampled with its own seed (cfg.seed + the pool index of its first post), appended at once
and skipped by a rerun, so a killed run resumes without loss or duplicates. [L06]
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from rlaif.config import PipelineConfig
from rlaif.data import format_prompt, pool_split, prompt_pool, truncate_post
from rlaif.evaluation.stats import mean_or_none
from rlaif.generation import generate
from rlaif.jsonl import AppendLog
from rlaif.models import compute_device, load_causal_lm, load_tokenizer
from rlaif.stages import StageContext


def run(ctx: StageContext) -> dict:
    cfg, settings = ctx.cfg, ctx.section
    t0 = time.time()
    model_dir = str(ctx.artifact("sft", "model"))
    tokenizer = load_tokenizer(model_dir)
    pool, load_report = prompt_pool(cfg)
    posts, rest = pool_split(pool, settings.num_posts)

    with AppendLog(ctx.dir / "pairs.jsonl") as log:
        done = {r["id"] for r in log.rows}
        todo = [(i, post) for i, post in enumerate(posts) if post["id"] not in done]
        if todo:
            model = load_causal_lm(model_dir, tokenizer, settings.dtype).to(compute_device())
            batches = range(0, len(todo), settings.batch_size)
            for start in tqdm(batches, desc="pairs", unit="batch"):
                log.extend(_sample_batch(model, tokenizer, todo[start : start + settings.batch_size], cfg))
        rows = log.rows

    metrics = {
        "pairs": len(rows),
        "sampled_now": len(todo),
        "seconds": round(time.time() - t0, 2),
        "prompt_pool": len(pool),
        "pool_left_for_rl": len(rest),
        "eos_rate": mean_or_none([r[k] for r in rows for k in ("a_ended_with_eos", "b_ended_with_eos")]),
        "identical_rate": mean_or_none([r["summary_a"] == r["summary_b"] for r in rows]),
        "mean_summary_chars": mean_or_none([len(r[k]) for r in rows for k in ("summary_a", "summary_b")]),
        "skipped_bad_rows": load_report.skipped_bad,
        "duplicate_rows": load_report.duplicates,
        "resumed": ctx.resumed,
    }
    print(
        f"[rlaif] pairs: {len(rows)} pairs ({len(todo)} new) in {metrics['seconds']:.0f}s -> {ctx.dir / 'pairs.jsonl'}",
        flush=True,
    )
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
