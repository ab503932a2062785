"""Stages `best_of_n` (RLAIF arm: reward/model picks) and `best_of_n_rlhf` (RLHF arm: reward_rlhf/model
picks): n samples from the SFT policy per evaluation post, the arm's reward model keeps the best.

Reads sft/model, the arm's reward model and the evaluation posts (data.eval, the first
evaluate.max_posts, as evaluate reads them). Writes <stage>/{candidates.jsonl (per post: every
sample with its score by the arm's reward model, appended as posts finish, so a killed run resumes
where it stopped), summaries.jsonl (the pick at n: evaluate reads it as this system's summaries),
metrics.json (the mean score of the pick and the KL bound at n = 1, 2, 4, ..., n)}. [P11][P12]

Posts are sampled in fixed chunks of consecutive evaluation posts (sample_batch_size // n posts per
sampling call, at least one), each chunk from a generator seeded by its first post's place, so the
samples do not depend on which posts a killed run had finished nor on how many processes ran: a
half-written chunk is sampled again whole and only its missing posts are appended [P14]. Both arms
draw the same samples from the same SFT model; the second arm reuses the first's when their
`generation` settings match and only scores them with its own reward model [P15].

Under `accelerate launch` the chunks still to do are dealt out in turn (process r takes the r-th of every
round); after each round rank 0 gathers the rows and appends them in post order. [P13]
"""

from __future__ import annotations

import contextlib
import gc
import time

import torch
from tqdm.auto import tqdm

from rlaif import pipeline
from rlaif.artifacts import gather_objects, process_rank
from rlaif.best_of_n.selection import kl_bound, n_ladder, pick
from rlaif.data import eval_records
from rlaif.jsonl import AppendLog, read_complete, write_jsonl
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
    generation = generation_settings(settings, cfg.seed, ctx.rundir.entry("sft")["run_id"])
    sampled_now = reused_now = 0
    # one writer: rank 0 holds the log and tells the others which posts are done
    with AppendLog(ctx.dir / "candidates.jsonl") if rank == 0 else contextlib.nullcontext() as log:
        done = {row["id"]: row for row in log.rows} if log is not None else {}
        finished = set(gather_objects(sorted(done)))
        todo = [c for c in post_chunks(len(records), settings) if any(records[i]["id"] not in finished for i in c)]
        if todo:
            drawn = samples_of_other_arms(ctx, generation, records)
            mine = todo[rank::world]
            policy = None
            if any(records[i]["id"] not in drawn for chunk in mine for i in chunk if records[i]["id"] not in finished):
                policy = load_causal_lm(sft_path, tokenizer, settings.dtype).to(device).eval()
            rm, rm_tokenizer = load_reward_model(rm_path, settings.score_dtype)
            rm.to(device)
            bar = tqdm(total=sum(r["id"] not in finished for r in records), desc=f"{ctx.stage.name} sample + score", unit="post",
                       disable=rank != 0)  # fmt: skip
            for turn in range(-(-len(todo) // world)):
                rows = []
                if turn < len(mine):
                    chunk = mine[turn]
                    missing = [i for i in chunk if records[i]["id"] not in finished]
                    samples = {i: drawn[records[i]["id"]] for i in missing if records[i]["id"] in drawn}
                    source = {i: drawn[records[i]["id"]]["from"] for i in samples}
                    if len(samples) < len(missing):  # the whole chunk, so its draws are those of every run
                        fresh = sample_posts(policy, tokenizer, [records[i]["prompt"] for i in chunk], settings,
                                             chunk_seed(cfg.seed, chunk[0]), device)  # fmt: skip
                        samples = {i: {"candidates": fresh[j]} for j, i in enumerate(chunk) if i in missing}
                        source = {}
                    texts = [(i, c["summary"]) for i in missing for c in samples[i]["candidates"]]
                    values = score(rm, rm_tokenizer, [records[i]["prompt"] for i, _ in texts], [t for _, t in texts],
                                   settings.score_batch_size).tolist()  # fmt: skip
                    scores = iter(values)
                    for i in missing:
                        candidates = [{**c, "score": next(scores)} for c in samples[i]["candidates"]]
                        rows.append({"id": records[i]["id"], "prompt": records[i]["prompt"], "rm": ctx.stage.reward,
                                     "generation": generation, "candidates": candidates,
                                     **({"samples_from": source[i]} if i in source else {})})  # fmt: skip
                arrived = gather_objects(rows)  # rank order = chunk order = post order
                if log is not None:
                    log.extend(arrived)
                    done.update((r["id"], r) for r in arrived)
                reused_now += sum("samples_from" in r for r in arrived)
                sampled_now += sum("samples_from" not in r for r in arrived)
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
        "posts_reused_samples": reused_now,
        "resumed_posts": len(rows) - sampled_now - reused_now,
        "seconds": round(seconds, 2),
        "samples_per_second": round(sampled_now * settings.n / seconds, 3) if sampled_now else None,
    }
    print(
        f"[rlaif] {ctx.stage.name}: best of {settings.n} on {len(rows)} posts, mean {ctx.stage.reward} score "
        f"{metrics['mean_score_at_1']:.3f} (n=1) -> {metrics['mean_score_at_n']:.3f} (n={settings.n}), "
        f"KL <= {metrics['kl_bound']:.2f} nats"
        + (f"; samples of {reused_now} posts reused from the other arm" if reused_now else ""),
        flush=True,
    )
    return metrics


def generation_settings(settings, seed: int, sft_run: str) -> dict:
    """What makes two stages' samples of a post identical: the SFT model's run, the sampling settings,
    the chunking of the posts (sample_batch_size) and the seed. [P15]"""
    return {"n": settings.n, "temperature": settings.temperature, "max_new_tokens": settings.max_new_tokens,
            "dtype": settings.dtype, "sample_batch_size": settings.sample_batch_size, "seed": seed,
            "sft_run": sft_run}  # fmt: skip


def post_chunks(num_posts: int, settings) -> list[list[int]]:
    """The evaluation posts (by place) in the chunks sampled together: sample_batch_size // n posts each."""
    per_call = max(1, settings.sample_batch_size // settings.n)
    return [list(range(s, min(s + per_call, num_posts))) for s in range(0, num_posts, per_call)]


def chunk_seed(seed: int, first: int) -> int:
    """A chunk's samples come from a generator seeded by (seed, the place of its first post in the
    evaluation list), so they do not depend on which chunks a killed run had finished."""
    return seed * 1_000_003 + first


def samples_of_other_arms(ctx: StageContext, generation: dict, records: list[dict]) -> dict[str, dict]:
    """id -> {candidates (without scores), from} for posts another best-of-n stage of this run folder
    already sampled with the same generation settings and prompt: the samples this stage would draw. [P15]"""
    prompts = {r["id"]: r["prompt"] for r in records}
    out: dict[str, dict] = {}
    for other in pipeline.best_of_n_stages(ctx.cfg):
        path = ctx.rundir.stage_dir(other.name) / "candidates.jsonl"
        if other.name == ctx.stage.name or not path.exists():
            continue
        for row in read_complete(path):
            if row["id"] not in out and row.get("generation") == generation and prompts.get(row["id"]) == row["prompt"]:
                candidates = [{k: v for k, v in c.items() if k != "score"} for c in row["candidates"]]
                out[row["id"]] = {"candidates": candidates, "from": f"{other.folder}/candidates.jsonl"}
    return out


@torch.no_grad()
def sample_posts(policy, tokenizer, prompts: list[str], settings, seed: int, device: str) -> list[list[dict]]:
    """settings.n samples of each prompt from one generator on `device`, {summary, ended_with_eos,
    num_tokens} each: every prompt's n rows in one sampling call when n <= sample_batch_size (the prompt
    read once for its n rows [D56]), else one prompt's n in calls of sample_batch_size rows."""
    generator = torch.Generator(device=device).manual_seed(seed)
    n = settings.n
    enc = encode_left(tokenizer, prompts, device)
    queries, mask = enc.input_ids.repeat_interleave(n, 0), enc.attention_mask.repeat_interleave(n, 0)
    rows_per_call = len(prompts) * n if n <= settings.sample_batch_size else settings.sample_batch_size
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    out = []
    for start in range(0, queries.size(0), rows_per_call):
        rows = slice(start, start + rows_per_call)
        k = queries[rows].size(0)
        s = sample(policy, queries[rows], mask[rows], settings.max_new_tokens, settings.temperature, eos, pad,
                   generator, group_size=min(n, k))  # fmt: skip
        responses = truncate_response(s.responses, eos, pad)
        ends = sequence_lengths(responses, eos).tolist()
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        for row, end, text in zip(responses.tolist(), ends, texts):
            ids = row[: end + 1]
            out.append({"summary": text.strip(), "ended_with_eos": ids[-1] == eos, "num_tokens": len(ids)})
    return [out[i * n : (i + 1) * n] for i in range(len(prompts))]


def rows_pick(row: dict, n: int) -> dict:
    """The summaries.jsonl row of a post: its best-scored of the first n candidates."""
    candidates = row["candidates"]
    i = pick([c["score"] for c in candidates], n)
    return {"id": row["id"], "summary": candidates[i]["summary"], "ended_with_eos": candidates[i]["ended_with_eos"],
            "score": candidates[i]["score"], "candidate": i, "n": n}  # fmt: skip
