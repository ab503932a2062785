"""Stage `label_alignment` (`rlaif label CONFIG --eval-alignment`, and `rlaif run` when label.alignment_*
lists human comparison sets): the labeler of the `label` stage, with its prompt style, judges human
comparisons instead of sampled pairs, and the stage reports its agreement with the human choice and
its position bias per set. Writes label_alignment/{summarize,dialogue}.jsonl (+ *_failures.jsonl)
and metrics.json (one entry per set); a killed run resumes like `label`.
"""

from __future__ import annotations

import hashlib

from rlaif.config import DatasetConfig
from rlaif.data import DataError
from rlaif.data.comparisons import load_comparisons
from rlaif.data.tldr import LoadReport
from rlaif.jsonl import AppendLog
from rlaif.labelers.annotate import annotate, check_failures, label_metrics, print_summary, run_info
from rlaif.labelers.base import make_labeler
from rlaif.labelers.prompts import judge_text_from_prompt, label_prompt
from rlaif.stages import StageContext


def run(ctx: StageContext) -> dict:
    """Judge human comparisons and report agreement with the human choice, per task."""
    section = ctx.section
    sets = {"summarize": section.alignment_summarize, "dialogue": section.alignment_dialogue}
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
        # Exemplars and prompt files are written for one task (TL;DR): the dialogue set gets the
        # built-in prompt, 0-shot.
        prompt = label_prompt(section, task)
        text_of = judge_text_from_prompt if task == "summarize" else dialogue_context
        with AppendLog(ctx.dir / f"{task}.jsonl") as labels, AppendLog(ctx.dir / f"{task}_failures.jsonl") as failures:
            stats = annotate(
                pairs,
                lambda p, text_of=text_of: text_of(p["prompt"]),
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
            **run_info(stats, labeler, prompt),
            **report,
            "sources": [ds.path for ds in task_sources],
        }
        print_summary(f"alignment {task}", metrics[task], ctx.dir / f"{task}.jsonl")
    failed = sum(m["failed"] for m in metrics.values())
    check_failures(
        {"failed": failed},
        sum(m["pairs"] + m["failed"] for m in metrics.values()),
        section.max_failed_fraction,
        ctx.dir,
    )
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
