"""Stage `evaluate`: win rates of the policies on held-out posts, and the checks that need no judge.

Reads data.eval and sft/model, rl/model, rl_rlhf/model (the arms this run has), reward/model and
reward_rlhf/model; writes eval/{posts.jsonl, generations/<system>.jsonl, rm_scores.jsonl,
judgements.jsonl, metrics.json}. Every system summarises every post greedily with the same token cap; the human
reference is a system too, on posts that have one. Each `A:B` comparison is judged in both orders
(a tie when they disagree) and reported as a win rate with ties as half, a 95% bootstrap interval,
the judge's position bias and a length-controlled win rate; each system gets its mean reward-model
score, length and ROUGE-L against the references. All three caches are append-only, so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import gc
import json
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from rlaif.artifacts import RunDir, atomic_write_text, barrier, is_main_process
from rlaif.config import DatasetConfig, PipelineConfig
from rlaif.data import build_prompt, load_posts
from rlaif.evaluation import stats
from rlaif.generation import generate
from rlaif.jsonl import AppendLog, read_jsonl
from rlaif.labelers.eval_judge import eval_prompt, judge_pairs
from rlaif.models import load_causal_lm, load_tokenizer
from rlaif.tracking import start_tracking

REFERENCE = "reference"
RM_BATCH = 8  # summaries per reward-model forward
JUDGE_POSTS = 4  # posts (all their comparisons) per judge call between appends: what a kill can lose at most


def policy_stages(cfg: PipelineConfig) -> dict[str, str]:
    """System name -> the stage whose model/ it is, for the policies this run trains."""
    systems = {"sft": "sft"}
    if getattr(cfg, "rl", None) is not None:
        systems["rl"] = "rl"
        if getattr(cfg, "reward_rlhf", None) is not None:
            systems["rl_rlhf"] = "rl_rlhf"
    return systems


def reward_stages(cfg: PipelineConfig) -> list[str]:
    return [name for name in ("reward", "reward_rlhf") if getattr(cfg, name, None) is not None]


def upstream(cfg: PipelineConfig, stage: str = "evaluate") -> tuple[str, ...]:
    return tuple(policy_stages(cfg).values()) + tuple(reward_stages(cfg))


def data_sources(cfg: PipelineConfig, stage: str = "evaluate"):
    # the judge's prompt template file is an input: editing it must make the judgements stale
    prompt_file = cfg.evaluate.judge_prompt_file
    return list(cfg.data.eval) + ([DatasetConfig(path=prompt_file)] if prompt_file else [])


def run(cfg: PipelineConfig, rundir: RunDir, stage: str = "evaluate") -> dict:
    ev = cfg.evaluate
    if not cfg.data.eval:
        raise ValueError("data.eval: no held-out posts configured; add at least one source to evaluate on")
    out = rundir.begin(stage, ev, upstream=upstream(cfg), data=data_sources(cfg))
    if not is_main_process():  # one process evaluates; the others wait for it
        barrier()
        return {}
    t0 = time.time()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(str(rundir.stage_dir("sft") / "model"), padding_side="left")
    posts, _ = load_posts(cfg.data.eval)
    if ev.max_posts is not None:
        posts = posts.select(range(min(ev.max_posts, len(posts))))
    ids = list(posts["id"])
    prompts = {r["id"]: build_prompt(tokenizer, r, cfg.data.max_prompt_tokens) for r in posts}
    references = {r["id"]: r["summary"] for r in posts if r["summary"]}
    # The report shows posts beside their summaries without reloading data.eval.
    atomic_write_text(
        out.dir / "posts.jsonl",
        "".join(
            json.dumps({"id": i, "prompt": prompts[i], "reference": references.get(i)}, ensure_ascii=False) + "\n"
            for i in ids
        ),
    )

    # 1. summaries: each policy greedily, with one token cap; cached per system
    summaries: dict[str, dict[str, dict]] = {}
    for system, source in policy_stages(cfg).items():
        known = _heldout_summaries(cfg, rundir, system, prompts)
        summaries[system] = _generations(rundir, out.dir, system, source, tokenizer, ids, prompts, ev, device, known)
    if references:
        summaries[REFERENCE] = {i: {"summary": s, "ended_with_eos": None} for i, s in references.items()}
    text = {system: {i: row["summary"] for i, row in rows.items()} for system, rows in summaries.items()}

    # 2. reward-model scores of every system, references included
    rm_scores = {rm: _rm_scores(rundir, out.dir, rm, text, prompts, ev, device) for rm in reward_stages(cfg)}

    # 3. the judge, both orders per pair
    comparisons = [c for c in ev.comparisons if all(s in text for s in c.split(":"))]
    judgements = _judge(out.dir, comparisons, text, prompts, ev) if comparisons else {}

    metrics = {
        "posts": len(ids),
        "posts_with_reference": len(references),
        "max_new_tokens": ev.max_new_tokens,
        "judge": {
            "backend": ev.judge.backend,
            "model": ev.judge.model,
            "style": ev.judge_style,
            "prompt_id": eval_prompt(ev).prompt_id,
            "prompt": eval_prompt(ev).record(),
            **_position_bias([row for rows in judgements.values() for row in rows]),
        },
        "comparisons": {c: _comparison_metrics(judgements[c], ev.bootstrap_samples, cfg.seed) for c in comparisons},
        "skipped_comparisons": [c for c in ev.comparisons if c not in comparisons],
        "systems": {
            s: _system_metrics(
                s, summaries[s], text.get(REFERENCE, {}), rm_scores, tokenizer, ev.bootstrap_samples, cfg.seed
            )
            for s in summaries
        },
        "seconds": round(time.time() - t0, 2),
    }
    with start_tracking(cfg, stage) as tracker:
        tracker.log_summary(stage, metrics)
    for c, m in metrics["comparisons"].items():
        print(
            f"[rlaif] evaluate: {c} win rate {m['win_rate']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}] "
            f"ties {m['ties']}/{m['n']}, LC {m['lc_win_rate']:.3f}",
            flush=True,
        )
    rundir.finish(out, metrics)
    barrier()
    return metrics


# system -> (RL stage whose heldout.jsonl may hold its greedy summaries, key in that file's rows)
HELDOUT_SOURCES = {"rl": ("rl", "policy"), "sft": ("rl", "sft"), "rl_rlhf": ("rl_rlhf", "policy")}


def _heldout_summaries(cfg: PipelineConfig, rundir: RunDir, system: str, prompts: dict[str, str]) -> dict[str, dict]:
    """Greedy summaries the RL stage already wrote on these posts (its heldout.jsonl), by id: the
    same model, prompt, dtype and token cap give the same summary, so they are not generated twice.
    Rows whose prompt differs are ignored. [E09]"""
    stage, key = HELDOUT_SOURCES[system]  # every system policy_stages() names
    path = rundir.stage_dir(stage) / "heldout.jsonl"
    rl = cfg.rl  # None: an SFT-only run, nothing to reuse; otherwise rl is a finished upstream stage
    if (
        rl is None
        or not path.exists()
        or rl.response_length != cfg.evaluate.max_new_tokens
        or rl.dtype != cfg.evaluate.dtype
    ):
        return {}
    known = {}
    for row in read_jsonl(path):
        if prompts.get(row["id"]) == row["prompt"] and key in row:
            r = row[key]
            known[row["id"]] = {
                "id": row["id"],
                "system": system,
                "summary": r["summary"],
                "ended_with_eos": r["ended_with_eos"],
                "num_tokens": r["num_tokens"],
                "from": f"{stage}/heldout.jsonl",
            }
    return known


def _generations(rundir, out_dir, system, source, tokenizer, ids, prompts, ev, device, known=None) -> dict[str, dict]:
    """The cached summaries of one policy, generating only the posts not yet in the cache (nor in
    `known`, summaries the RL stage already wrote). [E01][E09]"""
    with AppendLog(out_dir / "generations" / f"{system}.jsonl") as log:
        done = {row["id"]: row for row in log.rows}
        for i, row in (known or {}).items():  # known holds only ids of these prompts
            if i not in done:
                log.append(row)
                done[i] = row
        # Similar lengths share a batch, so less compute goes to left padding; the cache is keyed by id.
        todo = sorted((i for i in ids if i not in done), key=lambda i: len(prompts[i]))
        if todo:
            model = load_causal_lm(str(rundir.stage_dir(source) / "model"), tokenizer, dtype=ev.dtype).to(device)
            for start in tqdm(range(0, len(todo), ev.batch_size), desc=f"eval generate {system}", unit="batch"):
                chunk = todo[start : start + ev.batch_size]
                completions = generate(
                    model,
                    tokenizer,
                    [prompts[i] for i in chunk],
                    max_new_tokens=ev.max_new_tokens,
                    temperature=0.0,
                    batch_size=ev.batch_size,
                )
                for i, (c,) in zip(chunk, completions):
                    row = {
                        "id": i,
                        "system": system,
                        "summary": c.text,
                        "ended_with_eos": c.ended_with_eos,
                        "num_tokens": len(c.token_ids),
                    }
                    log.append(row)
                    done[i] = row
            del model
            gc.collect()
    return {i: done[i] for i in ids}


def _rm_scores(rundir, out_dir, rm, text, prompts, ev, device) -> dict[str, dict[str, float]]:
    """system -> id -> score of reward model `rm` (a stage name); cached in rm_scores.jsonl. [E06]"""
    from rlaif.reward.model import load_reward_model, score

    with AppendLog(out_dir / "rm_scores.jsonl") as log:
        done: dict[str, dict[str, float]] = {system: {} for system in text}
        for row in log.rows:
            if row["rm"] == rm:
                done[row["system"]][row["id"]] = row["score"]
        model = tokenizer = None
        for system, by_id in text.items():
            todo = [i for i in by_id if i not in done[system]]
            if not todo:
                continue
            if model is None:
                model, tokenizer = load_reward_model(str(rundir.stage_dir(rm) / "model"), dtype=ev.dtype)
                model.to(device)
            scores = score(model, tokenizer, [prompts[i] for i in todo], [by_id[i] for i in todo], batch_size=RM_BATCH)
            for i, value in zip(todo, scores.tolist()):
                log.append({"rm": rm, "system": system, "id": i, "score": value})
                done[system][i] = value
        del model
        gc.collect()
    return done


def _judge(out_dir, comparisons, text, prompts, ev) -> dict[str, list[dict]]:
    """comparison -> judgement rows; only pairs missing from judgements.jsonl are sent to the judge."""
    from rlaif.labelers.base import make_labeler

    prompt = eval_prompt(ev)
    with AppendLog(out_dir / "judgements.jsonl") as log:
        done = {(row["comparison"], row["id"]): row for row in log.rows}
        # Post-major order: every comparison of a post sits in one judge call, so a backend that
        # caches the post (hf_local [L02]) encodes it once for all of them. [E07]
        ids = list(prompts)
        pending = [
            (c, i) for i in ids for c in comparisons if all(i in text[s] for s in c.split(":")) and (c, i) not in done
        ]
        failed = 0
        if pending:
            labeler = make_labeler(ev.judge)
            chunk = JUDGE_POSTS * len(comparisons)
            for start in tqdm(range(0, len(pending), chunk), desc="judge", unit="chunk"):
                for row in judge_pairs(labeler, prompt, pending[start : start + chunk], text, prompts):
                    if row is None:  # a transport failure: retried by a rerun, never scored
                        failed += 1
                        continue
                    log.append(row)
                    done[(row["comparison"], row["id"])] = row
    if failed:
        raise RuntimeError(
            f"{failed} judge requests failed after retries; rerun `rlaif evaluate` to retry just those pairs"
        )
    return {c: [done[(c, i)] for i in ids if (c, i) in done] for c in comparisons}


def _position_bias(rows: list[dict]) -> dict:
    return stats.position_bias(
        [r["preferred_position"]["ab"] for r in rows], [r["preferred_position"]["ba"] for r in rows]
    )


def _comparison_metrics(rows: list[dict], n_boot: int, seed: int) -> dict:
    scores = np.array([stats.SCORE[r["outcome"]] for r in rows])
    len_a = np.array([len(r["summary_a"].split()) for r in rows], dtype=float)
    len_b = np.array([len(r["summary_b"].split()) for r in rows], dtype=float)
    lo, hi = stats.bootstrap_ci(scores, n_boot=n_boot, seed=seed)
    lc = stats.lc_win_rate(scores, len_a, len_b)
    lc_lo, lc_hi = stats.bootstrap_ci(
        np.stack([scores, len_a, len_b], axis=1),
        n_boot=n_boot,
        seed=seed,
        statistic=lambda m: stats.lc_win_rate(m[:, 0], m[:, 1], m[:, 2])["lc_win_rate"],
    )
    outcomes = [r["outcome"] for r in rows]
    undecided = sum(o["p_first"] is None for r in rows for o in r["orders"])
    return {
        "win_rate": stats.win_rate(scores),
        "ci_low": lo,
        "ci_high": hi,
        "wins": outcomes.count(stats.WIN),
        "ties": outcomes.count(stats.TIE),
        "losses": outcomes.count(stats.LOSS),
        "n": len(rows),
        "lc_win_rate": lc["lc_win_rate"],
        "lc_ci_low": lc_lo,
        "lc_ci_high": lc_hi,
        "length_coef": lc["length_coef"],
        "mean_words_a": float(len_a.mean()),
        "mean_words_b": float(len_b.mean()),
        "undecided_orders": undecided,
        "position_bias": _position_bias(rows),
    }


def _system_metrics(system, rows, references, rm_scores, tokenizer, n_boot, seed) -> dict:
    """Judge-free checks of one system: length, EOS rate, reward-model scores, ROUGE-L. [E06]"""
    texts = [r["summary"] for r in rows.values()]
    metrics = {
        "n": len(texts),
        "mean_words": float(np.mean([len(t.split()) for t in texts])),
        "mean_tokens": float(np.mean([len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts])),
        "empty": sum(not t.strip() for t in texts),
    }
    eos = [r["ended_with_eos"] for r in rows.values() if r["ended_with_eos"] is not None]
    if eos:
        metrics["eos_rate"] = float(np.mean(eos))
    for rm, by_system in rm_scores.items():
        values = np.array([by_system[system][i] for i in rows])
        lo, hi = stats.bootstrap_ci(values, n_boot=n_boot, seed=seed)
        metrics[f"rm_score/{rm}"] = {"mean": float(values.mean()), "ci_low": lo, "ci_high": hi}
    if system != REFERENCE and references:
        rouge = np.array([stats.rouge_l(rows[i]["summary"], ref) for i, ref in references.items() if i in rows])
        lo, hi = stats.bootstrap_ci(rouge, n_boot=n_boot, seed=seed)
        metrics["rouge_l"] = {"mean": float(rouge.mean()), "ci_low": lo, "ci_high": hi, "n": len(rouge)}
    return metrics
