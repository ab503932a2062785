"""Stage `frontier`: KL to SFT against reward, along every method's training, on held-out posts.

Reads sft/model, every policy stage's `trajectory/` (snapshots saved during training; see
rlaif.models.save_snapshot), every best-of-n stage's `candidates.jsonl`, and the reward models of
both arms. Writes frontier/{samples.jsonl, scores.jsonl, points.jsonl, metrics.json}. Each point is
one snapshot: one sample per post at frontier.temperature, its KL to SFT [F01], and its score under
each reward model; the SFT model is the origin (KL 0) of every curve. Samples and scores are
append-only caches keyed by (stage, step, post), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import gc
import time

import torch

from rlaif import pipeline
from rlaif.artifacts import is_main_process
from rlaif.data import eval_records
from rlaif.evaluation.frontier import best_of_n_points, point_summary, sample_with_kl
from rlaif.jsonl import AppendLog, read_jsonl, write_jsonl
from rlaif.models import compute_device, load_causal_lm, load_snapshot, load_tokenizer, snapshot_dirs
from rlaif.stages import StageContext

ORIGIN = ("sft", 0)


def trajectories(cfg, rundir) -> list[pipeline.Stage]:
    """Enabled policy stages that saved snapshots while they trained (their `snapshots` setting > 0)."""
    return [
        s for s in pipeline.policies(cfg)
        if "trajectory" in s.artifacts and (rundir.stage_dir(s.name) / "trajectory").is_dir()
    ]  # fmt: skip


def own_and_other(stage: pipeline.Stage, reward_models: list[str]) -> tuple[str | None, str | None]:
    """A method's own reward model (the one it optimised against, else its arm's) and the other arm's."""
    by_arm = {s.arm: s.name for s in pipeline.STAGES if s.role == "reward_model" and s.name in reward_models}
    own = stage.reward if stage.reward in reward_models else by_arm.get(stage.arm)
    other = next((name for arm, name in by_arm.items() if arm != stage.arm), None)
    return own, other


def run(ctx: StageContext) -> dict:
    if not is_main_process():  # one process draws the frontier; the others wait for it (run_stage's barrier)
        return {}
    cfg, settings = ctx.cfg, ctx.section
    t0 = time.time()
    device = compute_device()
    sft_dir = str(ctx.artifact("sft", "model"))
    tokenizer = load_tokenizer(sft_dir, padding_side="left")
    records = eval_records(cfg, tokenizer, settings.posts)
    prompts = {r["id"]: r["prompt"] for r in records}
    reward_models = [s.name for s in pipeline.reward_models(cfg)]

    # 1. samples and KL at every point: the SFT origin, then each snapshot of each method [F01]
    with AppendLog(ctx.dir / "samples.jsonl") as log:
        done = {(r["stage"], r["step"], r["id"]) for r in log.rows}
        points = [(*ORIGIN, None)] + [
            (s.name, step, path)
            for s in trajectories(cfg, ctx.rundir)
            for step, path in snapshot_dirs(ctx.artifact(s.name, "trajectory"))
        ]
        for stage, step, path in points:
            todo = [r for r in records if (stage, step, r["id"]) not in done]
            if not todo:
                continue
            policy = (load_causal_lm(sft_dir, tokenizer, settings.dtype) if path is None
                      else load_snapshot(path, sft_dir, tokenizer, settings.dtype)).to(device)  # fmt: skip
            # a full-model snapshot needs the SFT model beside it; an adapter snapshot turns its adapter off
            reference = None if path is None or hasattr(policy, "peft_config") else (
                load_causal_lm(sft_dir, tokenizer, settings.dtype).to(device))  # fmt: skip
            generator = torch.Generator(device=device).manual_seed(cfg.seed)  # the same draws at every point
            rows = sample_with_kl(policy, tokenizer, todo, settings.max_new_tokens, settings.temperature,
                                  settings.batch_size, generator, reference)  # fmt: skip
            if path is None:
                rows = [{**row, "kl": 0.0} for row in rows]  # the SFT model against itself
            log.extend({"stage": stage, "step": step, **row} for row in rows)
            del policy, reference
            gc.collect()
        samples = log.rows

    # 2. best-of-n candidates as the best_of_n stages wrote them, each already scored by its own RM
    candidates = {
        s.name: [row for row in read_jsonl(ctx.artifact(s.name, "candidates.jsonl")) if row["id"] in prompts]
        for s in pipeline.best_of_n_stages(cfg)
    }  # the frontier's posts only: the first frontier.posts of data.eval

    # 3. every text scored by every reward model (a candidate's own score is reused), cached
    texts = {(r["stage"], r["step"], r["id"]): r["summary"] for r in samples}
    known: dict[str, dict[tuple, float]] = {rm: {} for rm in reward_models}
    for stage, rows in candidates.items():
        own, _ = own_and_other(pipeline.stage(stage), reward_models)
        for row in rows:
            for index, candidate in enumerate(row["candidates"]):
                texts[(stage, index, row["id"])] = candidate["summary"]
                if own is not None:
                    known[own][(stage, index, row["id"])] = candidate["score"]
    scores = _scores(ctx, reward_models, texts, prompts, settings, device, known)

    # 4. points
    out_points, methods = [], {}
    by_point: dict[tuple, list[dict]] = {}
    for r in samples:
        by_point.setdefault((r["stage"], r["step"]), []).append(r)
    for (stage, step), rows in by_point.items():
        summary = point_summary(
            [r["kl"] for r in rows],
            {rm: [scores[rm][(stage, step, r["id"])] for r in rows] for rm in reward_models},
            settings.bootstrap_samples,
            cfg.seed,
        )
        out_points.append({"stage": stage, "step": step, **summary})
    for s in trajectories(cfg, ctx.rundir):
        own, other = own_and_other(s, reward_models)
        methods[s.name] = {"label": s.label or s.name, "own_rm": own, "other_rm": other, "kind": "trajectory"}
    for stage, rows in candidates.items():
        s = pipeline.stage(stage)
        own, other = own_and_other(s, reward_models)
        by_post = {
            row["id"]: [
                {"scores": {rm: scores[rm][(stage, i, row["id"])] for rm in reward_models}}
                for i in range(len(row["candidates"]))
            ]
            for row in rows
        }
        ns = [n for n in settings.best_of_n if n <= min(len(v) for v in by_post.values())]
        for point in best_of_n_points(by_post, own, ns, settings.bootstrap_samples, cfg.seed):
            out_points.append({"stage": stage, **point})  # best-of-n points carry n instead of a step
        methods[stage] = {"label": s.label or stage, "own_rm": own, "other_rm": other, "kind": "best_of_n"}
    write_jsonl(ctx.dir / "points.jsonl", out_points)
    print(f"[rlaif] frontier: {len(out_points)} points of {len(methods)} methods -> {ctx.dir / 'points.jsonl'}")
    return {
        "posts": len(records),
        "temperature": settings.temperature,
        "reward_models": reward_models,
        "methods": methods,
        "points": out_points,
        "seconds": round(time.time() - t0, 2),
    }


def _scores(ctx, reward_models, texts, prompts, settings, device, known) -> dict[str, dict[tuple, float]]:
    """rm -> (stage, step or candidate index, post id) -> score, cached in scores.jsonl; `known` holds
    scores computed elsewhere (a best-of-n candidate's, by its own reward model)."""
    from rlaif.reward.model import load_reward_model, score

    out: dict[str, dict[tuple, float]] = {rm: dict(known.get(rm, {})) for rm in reward_models}
    with AppendLog(ctx.dir / "scores.jsonl") as log:
        for row in log.rows:
            out[row["rm"]][(row["stage"], row["step"], row["id"])] = row["score"]
        for rm in reward_models:
            todo = [key for key in texts if key not in out[rm]]
            if not todo:
                continue
            model, rm_tokenizer = load_reward_model(str(ctx.artifact(rm, "model")), dtype=settings.dtype)
            model.to(device)
            values = score(model, rm_tokenizer, [prompts[k[2]] for k in todo], [texts[k] for k in todo],
                           batch_size=settings.batch_size)  # fmt: skip
            for key, value in zip(todo, values.tolist()):
                log.append({"rm": rm, "stage": key[0], "step": key[1], "id": key[2], "score": value})
                out[rm][key] = value
            del model
            gc.collect()
    return out
