"""Stage `evaluate`: win rates of the policies on held-out posts, and the checks that need no judge.

Reads data.eval, every policy of this run (rlaif.pipeline.policies: the model folders it decodes,
or a stage's own summaries.jsonl) and every reward model; writes eval/{posts.jsonl,
generations/<system>.jsonl, rm_scores.jsonl, judgements.jsonl, metrics.json}. Every system
summarises every post greedily with the same token cap (rlaif.evaluation.summaries); the human
reference is a system too, on posts that have one. Each `A:B` comparison is judged in both orders
(a tie when they disagree) and reported as a win rate with ties as half, a 95% bootstrap interval,
the judge's position bias and a length-controlled win rate; each system gets its mean reward-model
score, length and ROUGE-L against the references, and each policy its paired per-post difference to
SFT on those. All three caches are append-only, so a killed
run resumes where it stopped. They also outlive a stale rerun (Stage.keeps): every row records what it
was computed from (the system's stage run, the reward model's run, the judge, the texts), so adding a
method to a finished run decodes, scores and judges only what changed [E11].
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import time

from tqdm.auto import tqdm

from rlaif import pipeline
from rlaif.artifacts import atomic_write_text, is_main_process
from rlaif.data import DataError, eval_records
from rlaif.evaluation.metrics import comparison_metrics, judge_position_bias, system_metrics, versus_baseline
from rlaif.evaluation.summaries import generation_settings, greedy_summaries
from rlaif.jsonl import AppendLog, read_jsonl
from rlaif.labelers.eval_judge import eval_prompt, judge_pairs
from rlaif.models import compute_device, load_tokenizer
from rlaif.pipeline import REFERENCE
from rlaif.stages import StageContext
from rlaif.tracking import start_tracking

RM_BATCH = 16  # summaries per reward-model forward (the post itself is encoded once per call)
RM_POSTS = 8  # posts per reward-model call between appends: what a kill can lose at most
JUDGE_POSTS = 4  # posts (all their comparisons) per judge call between appends: what a kill can lose at most


def run(ctx: StageContext) -> dict:
    if not is_main_process():  # one process evaluates; the others wait for it (run_stage's barrier)
        return {}
    cfg, settings = ctx.cfg, ctx.section
    t0 = time.time()
    device = compute_device()
    tokenizer = load_tokenizer(str(ctx.artifact("sft", "model")), padding_side="left")
    records = eval_records(cfg, tokenizer, settings.max_posts)
    ids = [r["id"] for r in records]
    prompts = {r["id"]: r["prompt"] for r in records}
    references = {r["id"]: r["reference"] for r in records if r["reference"]}
    # The report shows posts beside their summaries without reloading data.eval.
    atomic_write_text(
        ctx.dir / "posts.jsonl",
        "".join(
            json.dumps({"id": i, "prompt": prompts[i], "reference": references.get(i)}, ensure_ascii=False) + "\n"
            for i in ids
        ),
    )

    # 1. summaries: each policy greedily, with one token cap; cached per system
    summaries: dict[str, dict[str, dict]] = {}
    cached = {"summaries": 0}
    for policy in pipeline.policies(cfg):
        summaries[policy.name], found = _summaries(ctx, policy, tokenizer, records)
        cached["summaries"] += found
    if references:
        summaries[REFERENCE] = {i: {"summary": s, "ended_with_eos": None} for i, s in references.items()}
    text = {system: {i: row["summary"] for i, row in rows.items()} for system, rows in summaries.items()}

    # 2. reward-model scores of every system, references included
    rm_scores, cached["rm_scores"] = _rm_scores(ctx, [rm.name for rm in pipeline.reward_models(cfg)], text, prompts,
                                                settings, device)  # fmt: skip

    # 3. the judge, both orders per pair
    comparisons = [c for c in settings.comparisons if all(s in text for s in c.split(":"))]
    judgements, cached["judgements"] = _judge(ctx.dir, comparisons, text, prompts, settings)

    metrics = {
        "posts": len(ids),
        "posts_with_reference": len(references),
        "max_new_tokens": settings.max_new_tokens,
        "judge": {
            "backend": settings.judge.backend,
            "model": settings.judge.model,
            "style": settings.judge_style,
            "prompt_id": eval_prompt(settings).prompt_id,
            "prompt": eval_prompt(settings).record(),  # the judge's prompt text, kept [L09]
            **judge_position_bias([row for rows in judgements.values() for row in rows]),
        },
        "comparisons": {
            c: comparison_metrics(judgements[c], settings.bootstrap_samples, cfg.seed) for c in comparisons
        },
        "skipped_comparisons": [c for c in settings.comparisons if c not in comparisons],
        "systems": {
            s: system_metrics(
                s, summaries[s], text.get(REFERENCE, {}), rm_scores, tokenizer, settings.bootstrap_samples, cfg.seed
            )
            for s in summaries
        },
        # Each policy against SFT on the same posts, per post: the report's verdicts read these [E10].
        "versus_sft": {
            s: versus_baseline(
                s, "sft", summaries, text.get(REFERENCE, {}), rm_scores, settings.bootstrap_samples, cfg.seed
            )
            for s in summaries
            if s not in ("sft", REFERENCE) and "sft" in summaries
        },
        # rows already in the caches when the stage started (a resume's, or an earlier evaluation's) [E11]
        "cached_rows": cached,
        "seconds": round(time.time() - t0, 2),
    }
    with start_tracking(cfg, ctx.stage.name) as tracker:
        tracker.log_summary(ctx.stage.name, metrics)
    for c, m in metrics["comparisons"].items():
        print(
            f"[rlaif] evaluate: {c} win rate {m['win_rate']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}] "
            f"ties {m['ties']}/{m['n']}, LC {m['lc_win_rate']:.3f}",
            flush=True,
        )
    return metrics


def _summaries(
    ctx: StageContext, policy: pipeline.Stage, tokenizer, records: list[dict]
) -> tuple[dict[str, dict], int]:
    """id -> summary row of one system, cached in generations/<system>.jsonl [E01], and how many rows the
    cache held. A policy that writes its own summaries (summaries.jsonl) is read; a model is decoded,
    except for posts whose greedy summary another stage already wrote with the same settings (its
    heldout.jsonl) [E09]. A cached row is kept while the system's stage run, the prompt and the
    generation settings are those it was made with [E11]."""
    ids = [r["id"] for r in records]
    prompts = {r["id"]: r["prompt"] for r in records}
    run = ctx.rundir.identity(policy.name)
    wanted = None if policy.writes_summaries else generation_settings(ctx.section.max_new_tokens, ctx.section.dtype)

    def valid(row: dict) -> bool:
        return row.get("system_run") == run and row.get("prompt") == prompts.get(row["id"]) and (
            row.get("generation") == wanted)  # fmt: skip

    with AppendLog(ctx.dir / "generations" / f"{policy.name}.jsonl", keep=valid) as log:
        done = {row["id"]: row for row in log.rows}
        found = len(done)
        if policy.writes_summaries:
            own = {row["id"]: row for row in read_jsonl(ctx.artifact(policy.name, "summaries.jsonl"))}
            missing = [i for i in ids if i not in own]
            if missing:
                raise DataError(
                    f"{policy.folder}/summaries.jsonl has no summary for {len(missing)} evaluation posts "
                    f"(first: {missing[0]}); rerun `rlaif {policy.cli} CONFIG --force`"
                )
            known = {i: {"id": i, "system": policy.name, "summary": own[i]["summary"],
                         "ended_with_eos": own[i].get("ended_with_eos"), "from": f"{policy.folder}/summaries.jsonl"}
                     for i in ids}  # fmt: skip
        else:
            known = _reused(ctx, policy.name, records)
        for i, row in known.items():
            if i not in done:
                row = {**row, "prompt": prompts[i], "generation": wanted, "system_run": run}
                log.append(row)
                done[i] = row
        todo = [r for r in records if r["id"] not in done]
        if todo:
            rows = greedy_summaries(
                str(ctx.artifact(policy.name, "model")),
                tokenizer,
                todo,
                ctx.section.max_new_tokens,
                ctx.section.dtype,
                ctx.section.batch_size,
                desc=f"eval generate {policy.name}",
            )
            for row in rows:
                row = {"system": policy.name, **row, "system_run": run}
                log.append(row)
                done[row["id"]] = row
    return {i: done[i] for i in ids}, found


def _reused(ctx: StageContext, system: str, records: list[dict]) -> dict[str, dict]:
    """Greedy summaries of `system` that an upstream stage already wrote on these posts with this
    stage's settings (the heldout.jsonl artifact of an RL stage: its policy's and SFT's summaries).
    The same model, prompt, dtype and token cap give the same summary, so it is not decoded twice [E09]."""
    wanted = generation_settings(ctx.section.max_new_tokens, ctx.section.dtype)
    prompts = {r["id"]: r["prompt"] for r in records}
    for source in pipeline.policies(ctx.cfg):
        if (
            "heldout.jsonl" not in source.artifacts
            or not (ctx.rundir.stage_dir(source.name) / "heldout.jsonl").exists()
        ):
            continue
        key = "policy" if source.name == system else system
        rows = read_jsonl(ctx.artifact(source.name, "heldout.jsonl"))
        known = {
            row["id"]: {"id": row["id"], "system": system, **row[key], "from": f"{source.folder}/heldout.jsonl"}
            for row in rows
            if key in row and row.get("generation") == wanted and prompts.get(row["id"]) == row["prompt"]
        }
        if known:
            for entry in known.values():
                entry.pop("score", None)  # the RL stage's own reward; evaluate scores every system itself
            return known
    return {}


def _rm_scores(ctx: StageContext, reward_models: list[str], text, prompts, settings, device):
    """rm -> system -> id -> score of every reward model (a stage name), cached in rm_scores.jsonl, and how
    many rows the cache held [E06]. A row is kept while the reward model's stage run, the dtype and the
    scored prompt and summary are those it was made with [E11]."""
    from rlaif.reward.model import load_reward_model, score

    runs = {rm: ctx.rundir.identity(rm) for rm in reward_models}

    def valid(row: dict) -> bool:
        summary = text.get(row["system"], {}).get(row["id"])
        return (runs.get(row["rm"]) == row.get("rm_run") and row.get("dtype") == settings.dtype
                and summary is not None and row.get("key") == _text_key(prompts[row["id"]], summary))  # fmt: skip

    out: dict[str, dict[str, dict[str, float]]] = {}
    with AppendLog(ctx.dir / "rm_scores.jsonl", keep=valid) as log:
        found = len(log.rows)
        for rm in reward_models:
            done: dict[str, dict[str, float]] = {system: {} for system in text}
            for row in log.rows:
                if row["rm"] == rm:
                    done[row["system"]][row["id"]] = row["score"]
            todo = [(system, i) for system, by_id in text.items() for i in by_id if i not in done[system]]
            posts = list(dict.fromkeys(i for _, i in todo))
            model = tokenizer = None
            # every system's summary of a few posts per call: each post's prompt is encoded once for all of them [D56]
            for start in range(0, len(posts), RM_POSTS):
                if model is None:
                    model, tokenizer = load_reward_model(str(ctx.artifact(rm, "model")), dtype=settings.dtype)
                    model.to(device)
                chunk = set(posts[start : start + RM_POSTS])
                part = [(system, i) for system, i in todo if i in chunk]
                scores = score(model, tokenizer, [prompts[i] for _, i in part], [text[s][i] for s, i in part], RM_BATCH)
                for (system, i), value in zip(part, scores.tolist()):
                    log.append({"rm": rm, "system": system, "id": i, "score": value, "rm_run": runs[rm],
                                "dtype": settings.dtype, "key": _text_key(prompts[i], text[system][i])})  # fmt: skip
                    done[system][i] = value
            del model
            gc.collect()
            out[rm] = done
    return out, found


def _text_key(*texts: str) -> str:
    """A short digest of the texts a cached row was computed from."""
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]


def _judge(out_dir, comparisons, text, prompts, settings) -> tuple[dict[str, list[dict]], int]:
    """comparison -> judgement rows, and how many rows judgements.jsonl held; only pairs missing from it
    are sent to the judge. A row is kept while the judge (backend, model, settings, prompt) and the
    post and both summaries are those it was made with [E11]."""
    from rlaif.labelers.base import make_labeler

    prompt = eval_prompt(settings)
    judge = json.dumps({"judge": dataclasses.asdict(settings.judge), "prompt": prompt.record()}, sort_keys=True)

    def key(comparison: str, i: str) -> str | None:
        a, b = comparison.split(":")
        if i not in text.get(a, {}) or i not in text.get(b, {}):
            return None
        return _text_key(judge, prompts[i], text[a][i], text[b][i])

    def valid(row: dict) -> bool:
        return row.get("key") is not None and row.get("key") == key(row["comparison"], row["id"])

    with AppendLog(out_dir / "judgements.jsonl", keep=valid) as log:
        found = len(log.rows)
        done = {(row["comparison"], row["id"]): row for row in log.rows}
        # Post-major order: every comparison of a post sits in one judge call, so a backend that
        # caches the post (hf_local [L02]) encodes it once for all of them. [E07]
        ids = list(prompts)
        pending = [
            (c, i) for i in ids for c in comparisons if all(i in text[s] for s in c.split(":")) and (c, i) not in done
        ]
        failed = 0
        if pending:
            labeler = make_labeler(settings.judge)
            chunk = JUDGE_POSTS * len(comparisons)
            for start in tqdm(range(0, len(pending), chunk), desc="judge", unit="chunk"):
                for row in judge_pairs(labeler, prompt, pending[start : start + chunk], text, prompts):
                    if row is None:  # a transport failure: retried by a rerun, never scored
                        failed += 1
                        continue
                    row["key"] = key(row["comparison"], row["id"])
                    log.append(row)
                    done[(row["comparison"], row["id"])] = row
    if failed:
        raise RuntimeError(
            f"{failed} judge requests failed after retries; rerun `rlaif evaluate` to retry just those pairs"
        )
    return {c: [done[(c, i)] for i in ids if (c, i) in done] for c in comparisons}, found
