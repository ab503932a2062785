"""Stage `label`: AI preference labels for the pairs, as in Lee et al. 2023 (RLAIF).

Reads pairs/pairs.jsonl; writes labels/{labels.jsonl, failures.jsonl, metrics.json}. Each pair
is judged in both orders and the two answers average into p_a = P(summary_a > summary_b) [L01].
Records are appended after every judge call; a killed run resumes with the pairs that are in
neither labels.jsonl nor (for a rerun) failures.jsonl, so nothing is lost or written twice.

`rlaif label CONFIG --eval-alignment` instead judges human comparison sets (label.alignment_*)
with the same labeler and prompt style and writes label_alignment/{summarize,dialogue}.jsonl and
metrics.json: agreement with the human choice and position bias on each set.
"""

from __future__ import annotations

import hashlib

from rlaif.artifacts import RunDir, write_json
from rlaif.config import DatasetConfig, PipelineConfig
from rlaif.data import DataError
from rlaif.data.comparisons import load_comparisons
from rlaif.data.tldr import LoadReport
from rlaif.jsonl import AppendLog, read_jsonl
from rlaif.labelers.annotate import annotate, label_metrics
from rlaif.labelers.base import LabelingIncomplete, make_labeler
from rlaif.labelers.prompts import judge_text_from_prompt, label_prompt
from rlaif.stages.pairs import single_process

ALIGNMENT_STAGE = "label_alignment"


def upstream(cfg: PipelineConfig, stage: str = "label") -> tuple[str, ...]:
    return () if stage == ALIGNMENT_STAGE else ("pairs",)


def data_sources(cfg: PipelineConfig, stage: str = "label") -> list[DatasetConfig]:
    # The exemplars and prompt template files are inputs: editing one must make the labels stale.
    fewshot = [DatasetConfig(path=f) for f in (cfg.label.fewshot_file, cfg.label.prompt_file) if f]
    if stage == ALIGNMENT_STAGE:
        return list(cfg.label.alignment_summarize) + list(cfg.label.alignment_dialogue) + fewshot
    return fewshot


def run(cfg: PipelineConfig, rundir: RunDir, stage: str = "label") -> dict:
    if stage == ALIGNMENT_STAGE:  # `rlaif label --eval-alignment`, or `rlaif run`
        return run_alignment(cfg, rundir)
    section = cfg.label
    single_process(stage)
    out = rundir.begin(stage, section, upstream=upstream(cfg), data=data_sources(cfg))
    pairs = read_jsonl(rundir.stage_dir("pairs") / "pairs.jsonl")[: section.max_pairs]
    prompt = label_prompt(section)
    labeler = make_labeler(section.labeler)
    with AppendLog(out.dir / "labels.jsonl") as labels, AppendLog(out.dir / "failures.jsonl") as failures:
        stats = annotate(
            pairs, lambda p: judge_text_from_prompt(p["prompt"]), labeler, prompt, labels, failures, section.undecided
        )
        records = labels.rows
    metrics = {**label_metrics(records), **_run_info(stats, labeler, prompt), "resumed": out.resumed}
    _print_summary("label", metrics, out.dir / "labels.jsonl")
    _check_failures(metrics, len(pairs), section.max_failed_fraction, out.dir)
    rundir.finish(out, metrics)
    return metrics


def run_alignment(cfg: PipelineConfig, rundir: RunDir) -> dict:
    """Judge human comparisons and report agreement with the human choice, per task; resumed when
    interrupted (skipping it when up to date is cli.run_stage's job, as for every stage)."""
    section = cfg.label
    sets = {"summarize": section.alignment_summarize, "dialogue": section.alignment_dialogue}
    single_process("label")
    out = rundir.begin(ALIGNMENT_STAGE, section, data=data_sources(cfg, ALIGNMENT_STAGE))
    labeler = make_labeler(section.labeler)
    metrics: dict = {}
    for task, task_sources in sets.items():
        if not task_sources:
            continue
        min_confidence = section.alignment_min_confidence if task == "summarize" else None
        pairs, report = comparison_pairs(task_sources, min_confidence, section.alignment_max_pairs)
        if not pairs:
            raise DataError(
                f"label.alignment_{task}: no comparisons left after label.alignment_min_confidence="
                f"{min_confidence} ({report['below_confidence']} below it or without a confidence)"
            )
        # Exemplars and prompt files are written for one task (TL;DR): the dialogue set gets the built-in prompt, 0-shot.
        prompt = label_prompt(section, task)
        text_of = judge_text_from_prompt if task == "summarize" else dialogue_context
        with AppendLog(out.dir / f"{task}.jsonl") as labels, AppendLog(out.dir / f"{task}_failures.jsonl") as failures:
            stats = annotate(
                pairs,
                lambda p: text_of(p["prompt"]),
                labeler,
                prompt,
                labels,
                failures,
                section.undecided,
                desc=f"alignment {task}",
            )
            records = labels.rows
        metrics[task] = {
            **label_metrics(records),
            **_run_info(stats, labeler, prompt),
            **report,
            "sources": [ds.path for ds in task_sources],
        }
        _print_summary(f"alignment {task}", metrics[task], out.dir / f"{task}.jsonl")
    failed = sum(m["failed"] for m in metrics.values())
    _check_failures(
        {"failed": failed},
        sum(m["pairs"] + m["failed"] for m in metrics.values()),
        section.max_failed_fraction,
        out.dir,
    )
    rundir.finish(out, metrics)
    return metrics


def comparison_pairs(
    sources: list[DatasetConfig], min_confidence: int | None, max_pairs: int
) -> tuple[list[dict], dict]:
    """Human comparisons as pairs with a `human_choice`. Which response is `a` is decided by a hash
    of the id, so the human-preferred one is first in half the pairs and the AI label cannot agree
    by favouring a fixed slot."""
    load_report = LoadReport()
    rows = load_comparisons(sources, load_report)
    kept = [
        r for r in rows if min_confidence is None or (r["confidence"] is not None and r["confidence"] >= min_confidence)
    ]
    pairs = []
    for row in kept[:max_pairs]:
        chosen_first = int(hashlib.sha1(row["id"].encode()).hexdigest(), 16) % 2 == 0
        a, b = (row["chosen"], row["rejected"]) if chosen_first else (row["rejected"], row["chosen"])
        pairs.append(
            {
                "id": row["id"],
                "prompt": row["prompt"],
                "summary_a": a,
                "summary_b": b,
                "human_choice": "a" if chosen_first else "b",
            }
        )
    report = {
        "comparisons_loaded": len(rows),
        "below_confidence": len(rows) - len(kept),
        "skipped_bad_rows": load_report.skipped_bad,
        "duplicate_rows": load_report.duplicates,
    }
    return pairs, report


def dialogue_context(prompt: str) -> str:
    """An HH-RLHF prompt (`\\n\\nHuman: ... \\n\\nAssistant:`) without the final open turn marker."""
    return prompt.strip().removesuffix("Assistant:").strip()


def _run_info(stats: dict, labeler, prompt) -> dict:
    return {
        "failed": stats["failed"],
        "labeled_now": stats["labeled_now"],
        "seconds": round(stats["seconds"], 2),
        "pairs_per_minute": stats["pairs_per_minute"],
        "backend": labeler.backend,
        "model": labeler.model,
        "prompt_id": prompt.prompt_id,
    }


def _print_summary(what: str, m: dict, path) -> None:
    rate = f"{m['pairs_per_minute']:.1f} pairs/min" if m.get("pairs_per_minute") else "nothing new"
    align = m.get("alignment_with_humans")
    align_text = f", alignment {align['accuracy']:.3f}" if align and align["accuracy"] is not None else ""
    print(
        f"[rlaif] {what}: {m['pairs']} labeled, {m['undecided']} undecided, {m['failed']} failed "
        f"({rate}){align_text} -> {path}",
        flush=True,
    )


def _check_failures(metrics: dict, total: int, allowed: float, out_dir) -> None:
    failed = metrics["failed"]
    if total and failed / total > allowed:
        write_json(out_dir / "metrics.json", metrics)  # the partial picture stays readable
        raise LabelingIncomplete(
            f"{failed} of {total} pairs failed after every retry (see {out_dir}/failures*.jsonl); "
            f"rerun the same command to retry just those, or raise label.max_failed_fraction"
        )
