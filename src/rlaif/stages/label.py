"""Stage `label`: AI preference labels for the pairs, as in Lee et al. 2023 (RLAIF).

Reads pairs/pairs.jsonl; writes labels/{labels.jsonl, failures.jsonl, metrics.json}. Each pair
is judged in both orders and the two answers average into p_a = P(summary_a > summary_b) [L01].
Records are appended after every judge call; a killed run resumes with the pairs that are in
neither labels.jsonl nor (for a rerun) failures.jsonl, so nothing is lost or written twice.
"""

from __future__ import annotations

from rlaif.jsonl import AppendLog, read_jsonl
from rlaif.labelers.annotate import annotate, check_failures, label_metrics, print_summary, run_info
from rlaif.labelers.base import make_labeler
from rlaif.labelers.prompts import judge_text_from_prompt, label_prompt
from rlaif.stages import StageContext


def run(ctx: StageContext) -> dict:
    settings = ctx.section
    pairs = read_jsonl(ctx.artifact("pairs", "pairs.jsonl"))[: settings.max_pairs]
    prompt = label_prompt(settings)
    labeler = make_labeler(settings.labeler)
    with AppendLog(ctx.dir / "labels.jsonl") as labels, AppendLog(ctx.dir / "failures.jsonl") as failures:
        stats = annotate(
            pairs, lambda p: judge_text_from_prompt(p["prompt"]), labeler, prompt, labels, failures, settings.undecided
        )
        records = labels.rows
    metrics = {**label_metrics(records), **run_info(stats, labeler, prompt), "resumed": ctx.resumed}
    print_summary("label", metrics, ctx.dir / "labels.jsonl")
    check_failures(metrics, len(pairs), settings.max_failed_fraction, ctx.dir)
    return metrics
