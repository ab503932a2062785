"""Stages `best_of_n` (RLAIF arm: reward/model picks) and `best_of_n_rlhf` (RLHF arm: reward_rlhf/model
picks): n samples from the SFT policy per evaluation post, the arm's reward model keeps the best.

Reads sft/model, the arm's reward model and the evaluation posts (data.eval, the first
evaluate.max_posts, as evaluate reads them). Writes <stage>/{candidates.jsonl (per post: every
sample with its score by the arm's reward model, appended post by post, so a killed run resumes
where it stopped), summaries.jsonl (the pick at n: evaluate reads it as this system's summaries),
metrics.json (the mean score of the pick and the KL bound at n = 1, 2, 4, ..., n)}. [P11][P12]

Under `accelerate launch` the posts still to do are dealt out in turn (process r takes the r-th of every
round); after each round rank 0 gathers the rows and appends them in post order. Each post's samples
come from its own seed, so the files are those of a single process.
"""

from __future__ import annotations

import contextlib
import gc
import time

import torch
from tqdm.auto import tqdm

from rlaif.artifacts import gather_objects, process_rank
from rlaif.best_of_n.selection import kl_bound, n_ladder, pick
from rlaif.data import eval_records
from rlaif.jsonl import AppendLog, write_jsonl
from rlaif.models import compute_device, encode_left, load_causal_lm, load_tokenizer
from rlaif.rl.masking import sequence_lengths, truncate_response
from rlaif.rl.sampling import sample
from rlaif.stages import StageContext


def run(ctx: StageContext) -> dict:
    from rlaif.reward.model import load_reward_model, score

    cfg, settings = ctx.cfg, ctx.section
    t0 = time.time()
    device = compute_device()
    rank, world = process_rank()
    sft_path = str(ctx.artifact("sft", "model"))
    tokenizer = load_tokenizer(sft_path, padding_side="left")
    records = eval_records(cfg, tokenizer, cfg.evaluate.max_posts)
    rm_path = str(ctx.artifact(ctx.stage.reward, "model"))
    generation = {"n": settings.n, "temperature": settings.temperature, "max_new_tokens": settings.max_new_tokens,
                  "dtype": settings.dtype, "seed": cfg.seed}  # fmt: skip
    sampled_now = 0
    # one writer: rank 0 holds the log and tells the others which posts are done
    with AppendLog(ctx.dir / "candidates.jsonl") if rank == 0 else contextlib.nullcontext() as log:
        done = {row["id"]: row for row in log.rows} if log is not None else {}
        finished = set(gather_objects(sorted(done)))
        todo = [(i, r) for i, r in enumerate(records) if r["id"] not in finished]
        if todo:
            policy = load_causal_lm(sft_path, tokenizer, settings.dtype).to(device).eval()
            rm, rm_tokenizer = load_reward_model(rm_path, settings.dtype)
            rm.to(device)
            mine = todo[rank::world]
            bar = tqdm(total=len(todo), desc=f"{ctx.stage.name} sample + score", unit="post", disable=rank != 0)
            for turn in range(-(-len(todo) // world)):
                row = None
                if turn < len(mine):
                    index, record = mine[turn]
                    samples = sample_post(
                        policy, tokenizer, record["prompt"], settings, _post_seed(cfg.seed, index), device
                    )
                    scores = score(rm, rm_tokenizer, [record["prompt"]] * len(samples),
                                   [s["summary"] for s in samples], settings.score_batch_size).tolist()  # fmt: skip
                    row = {"id": record["id"], "prompt": record["prompt"], "rm": ctx.stage.reward,
                           "generation": generation,
                           "candidates": [{**s, "score": v} for s, v in zip(samples, scores)]}  # fmt: skip
                arrived = [r for r in gather_objects([row]) if r is not None]  # rank order = post order
                if log is not None:
                    log.extend(arrived)
                    done.update((r["id"], r) for r in arrived)
                sampled_now += len(arrived)
                bar.update(len(arrived))
            bar.close()
            del policy, rm
            gc.collect()
    if rank != 0:
        return {}  # rank 0 writes the picks and the metrics
    rows = [done[r["id"]] for r in records]
    picks = [rows_pick(row, settings.n) for row in rows]
    write_jsonl(ctx.dir / "summaries.jsonl", picks)
    seconds = time.time() - t0
    ladder = {}
    for k in n_ladder(settings.n):
        chosen = [row["candidates"][pick([c["score"] for c in row["candidates"]], k)] for row in rows]
        ladder[str(k)] = {"mean_score": sum(c["score"] for c in chosen) / len(chosen), "kl_bound": kl_bound(k),
                          "mean_tokens": sum(c["num_tokens"] for c in chosen) / len(chosen)}  # fmt: skip
    metrics = {
        "arm": ctx.stage.arm,
        "reward_model": ctx.stage.reward,
        "n": settings.n,
        "posts": len(rows),
        "kl_bound": kl_bound(settings.n),
        "mean_score_at_n": ladder[str(settings.n)]["mean_score"],
        "mean_score_at_1": ladder["1"]["mean_score"],
        "by_n": ladder,
        "posts_sampled_now": sampled_now,
        "resumed_posts": len(rows) - sampled_now,
        "seconds": round(seconds, 2),
        "samples_per_second": round(sampled_now * settings.n / seconds, 3) if sampled_now else None,
    }
    print(
        f"[rlaif] {ctx.stage.name}: best of {settings.n} on {len(rows)} posts, mean {ctx.stage.reward} score "
        f"{metrics['mean_score_at_1']:.3f} (n=1) -> {metrics['mean_score_at_n']:.3f} (n={settings.n}), "
        f"KL <= {metrics['kl_bound']:.2f} nats",
        flush=True,
    )
    return metrics


def _post_seed(seed: int, index: int) -> int:
    """Each post's samples come from a generator seeded by (seed, its place in the evaluation list), so
    they do not depend on which posts a killed run had finished."""
    return seed * 1_000_003 + index


@torch.no_grad()
def sample_post(policy, tokenizer, prompt: str, settings, seed: int, device: str) -> list[dict]:
    """settings.n samples of one prompt, in chunks of sample_batch_size, from one generator on `device`:
    {summary, ended_with_eos, num_tokens} each."""
    generator = torch.Generator(device=device).manual_seed(seed)
    enc = encode_left(tokenizer, [prompt], device)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    out = []
    for start in range(0, settings.n, settings.sample_batch_size):
        k = min(settings.sample_batch_size, settings.n - start)
        s = sample(policy, enc.input_ids.expand(k, -1), enc.attention_mask.expand(k, -1), settings.max_new_tokens,
                   settings.temperature, eos, pad, generator, group_size=k)  # fmt: skip
        responses = truncate_response(s.responses, eos, pad)
        ends = sequence_lengths(responses, eos).tolist()
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        for row, end, text in zip(responses.tolist(), ends, texts):
            ids = row[: end + 1]
            out.append({"summary": text.strip(), "ended_with_eos": ids[-1] == eos, "num_tokens": len(ids)})
    return out


def rows_pick(row: dict, n: int) -> dict:
    """The summaries.jsonl row of a post: its best-scored of the first n candidates."""
    candidates = row["candidates"]
    i = pick([c["score"] for c in candidates], n)
    return {"id": row["id"], "summary": candidates[i]["summary"], "ended_with_eos": candidates[i]["ended_with_eos"],
            "score": candidates[i]["score"], "candidate": i, "n": n}  # fmt: skip
