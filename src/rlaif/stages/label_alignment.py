"""Stage `label_alignment` (`rlaif label CONFIG --eval-alignment`, and `rlaif run` when there are human
comparisons to judge): the labeler of the `label` stage, with its prompt style, judges human
comparisons instead of sampled pairs, and the stage reports its agreement with the human choice.

Sets judged: the held-out part of human.comparisons (task `human_heldout`: the same rows the reward
models are measured on, with the length baseline, length-matched and length-balanced figures,
position bias and calibration beside the alignment [H03]), and the further sets of
label.alignment_summarize and label.alignment_dialogue (agreement and position bias per set). Posts
are cut to data.max_prompt_tokens as the pairs' prompts are, so the labeler sees what it sees in
`label`. Writes label_alignment/{human_heldout,summarize,dialogue}.jsonl (+ *_failures.jsonl) and
metrics.json (one entry per set); a killed run resumes like `label`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rlaif.config import DatasetConfig
from rlaif.data import DataError, fit_prompt
from rlaif.data.comparisons import at_least_strength, load_comparisons
from rlaif.data.splits import HumanSplit, human_split
from rlaif.data.tldr import LoadReport
from rlaif.evaluation import stats
from rlaif.evaluation.agreement import agreement_on_comparisons, calibration
from rlaif.jsonl import AppendLog
from rlaif.labelers.annotate import alignment, annotate, check_failures, label_metrics, print_summary, run_info
from rlaif.labelers.base import make_labeler
from rlaif.labelers.prompts import judge_text_from_prompt, label_prompt
from rlaif.models import load_tokenizer
from rlaif.stages import StageContext

HELDOUT = "human_heldout"


def run(ctx: StageContext) -> dict:
    """Judge human comparisons and report agreement with the human choice, per set."""
    section = ctx.section
    labeler = make_labeler(section.labeler)
    metrics: dict = {}
    split = human_split(ctx.cfg)
    if split.heldout:
        metrics[HELDOUT] = _judge_heldout(ctx, labeler, split)
    sets = {"summarize": section.alignment_summarize, "dialogue": section.alignment_dialogue}
    for task, task_sources in sets.items():
        if not task_sources:
            continue
        min_strength = section.alignment_min_strength if task == "summarize" else None
        pairs, report = comparison_pairs(task_sources, min_strength, section.alignment_max_pairs)
        if not pairs:
            raise DataError(
                f"label.alignment_{task}: no comparisons left after label.alignment_min_strength="
                f"{min_strength} ({report['below_confidence']} below it or without a confidence)"
            )
        records, stats_now, prompt = _judge(ctx, labeler, task, pairs)
        metrics[task] = {
            **label_metrics(records),
            **run_info(stats_now, labeler, prompt),
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


def _judge(ctx: StageContext, labeler, task: str, pairs: list[dict], file: str | None = None):
    """Label `pairs` in both orders into <file or task>.jsonl (resuming); (records, run stats, prompt)."""
    section, file = ctx.section, file or task
    # Exemplars and prompt files are written for one task (TL;DR): the dialogue set gets the
    # built-in prompt, 0-shot.
    prompt = label_prompt(section, task)
    text_of = judge_text_from_prompt if task == "summarize" else dialogue_context
    with AppendLog(ctx.dir / f"{file}.jsonl") as labels, AppendLog(ctx.dir / f"{file}_failures.jsonl") as failures:
        run_stats = annotate(
            pairs,
            lambda p, text_of=text_of: text_of(p["prompt"]),
            labeler,
            prompt,
            labels,
            failures,
            section.undecided,
            desc=f"alignment {file}",
        )
        wanted = {p["id"] for p in pairs}
        records = [r for r in labels.rows if r["id"] in wanted]
    return records, run_stats, prompt


def _judge_heldout(ctx: StageContext, labeler, split: HumanSplit) -> dict:
    """The labeler on the held-out human comparisons, each distinct pair judged once (a pair several
    workers compared is one question to the labeler) and scored against every worker's choice [H03].
    `agreement_with_people` is on the rows every judge shares (split.heldout, the report's table);
    with human.labeler_max_heldout above them, `agreement_on_labeler_rows` is on all the labeler's
    rows (split.labeler_heldout, which start with the shared ones)."""
    cfg = ctx.cfg
    tokenizer = load_tokenizer(cfg.sft.model)  # the policy's tokenizer cut the pairs `label` labels
    rows = split.labeler_heldout or split.heldout
    pairs: dict[str, dict] = {}
    pair_of_row = []
    for row in rows:
        pair = distinct_pair(row, fit_prompt(tokenizer, row["prompt"], cfg.data.max_prompt_tokens))
        pairs.setdefault(pair["id"], pair)
        pair_of_row.append(pair["id"])
    records, run_stats, prompt = _judge(ctx, labeler, "summarize", list(pairs.values()), HELDOUT)
    by_id = {r["id"]: r for r in records}
    p_chosen = []
    for row, pid in zip(rows, pair_of_row):
        record = by_id.get(pid)
        p_chosen.append(np.nan if record is None else chosen_probability(record, row["chosen"]))
    p_chosen = np.array(p_chosen, dtype=float)
    shared = len(split.heldout)  # the labeler's rows start with the shared ones (data.splits.human_split)
    result = {
        **label_metrics(records),
        **run_info(run_stats, labeler, prompt),
        "distinct_pairs": len(pairs),
        "undecided_handling": ctx.section.undecided,
        # Lee et al.'s alignment over the rows (one per worker's judgement), as in `label_metrics`.
        "alignment_with_humans": alignment(
            [{"p_a": None if np.isnan(p) else float(p), "human_choice": "a"} for p in p_chosen]
        ),
        "agreement_with_people": _agreement_block(
            ctx,
            split,
            rows[:shared],
            p_chosen[:shared],
            [by_id[i] for i in dict.fromkeys(pair_of_row[:shared]) if i in by_id],
        ),
    }
    if len(rows) > shared:
        result["agreement_on_labeler_rows"] = _agreement_block(ctx, split, rows, p_chosen, records)
    print_summary(f"alignment {HELDOUT}", result, ctx.dir / f"{HELDOUT}.jsonl")
    return result


def _agreement_block(ctx: StageContext, split: HumanSplit, rows: list[dict], p_chosen: np.ndarray, records) -> dict:
    """agreement_on_comparisons of the labeler on `rows`, with the position bias of the distinct
    pairs behind them (`records`) and the calibration of its soft label against the human choice."""
    human = ctx.cfg.human
    block = agreement_on_comparisons(
        rows,
        p_chosen,
        human.high_confidence_strength,
        human.one_sided_min_confidence,
        human.length_match_chars,
        human.bootstrap_samples,
        ctx.cfg.seed,
    )
    block.update(
        {"position_bias": order_position_bias(records), "calibration": calibration(p_chosen), "split": split.report}
    )
    return block


def distinct_pair(row: dict, prompt: str) -> dict:
    """The question a comparison puts to the labeler, keyed by its content (post and the two
    summaries, in either order), so repeated judgements of one pair share it. Which summary is `a` is
    decided by a hash of that key: the human-chosen one is first in about half the pairs."""
    texts = sorted((row["chosen"], row["rejected"]))
    key = hashlib.sha1("\x00".join((prompt, *texts)).encode()).hexdigest()[:16]
    first = int(key, 16) % 2
    return {"id": f"{row['post_id']}:{key}", "prompt": prompt, "summary_a": texts[first], "summary_b": texts[1 - first]}


def chosen_probability(record: dict, chosen: str) -> float:
    """The labeler's probability for the human-chosen summary; NaN when the pair was undecided (with
    `undecided: half` its p_a is 0.5 by rule, not by the labeler's answer)."""
    if record["undecided"] or record["p_a"] is None:
        return float("nan")
    return record["p_a"] if record["summary_a"] == chosen else 1.0 - record["p_a"]


def order_position_bias(records: list[dict]) -> dict:
    """stats.position_bias of label records (each with its two `orders`): flip_rate, first_rate [E03]."""
    positions: dict[str, list] = {"ab": [], "ba": []}
    for r in records:
        got = {o["order"]: stats.preferred_position(o["p_first"], o["p_second"]) for o in r["orders"]}
        positions["ab"].append(got.get("ab"))
        positions["ba"].append(got.get("ba"))
    return stats.position_bias(positions["ab"], positions["ba"])


def comparison_pairs(sources: list[DatasetConfig], min_strength: int | None, max_pairs: int) -> tuple[list[dict], dict]:
    """Human comparisons as pairs with a `human_choice`. Which response is `a` is decided by a hash
    of the id, so the human-preferred one is first in half the pairs and the AI label cannot agree
    by favouring a fixed slot."""
    load_report = LoadReport()
    rows = load_comparisons(sources, load_report)
    kept = [r for r in rows if at_least_strength(r, min_strength, keep_unknown=False)]
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
        "below_confidence": len(rows) - len(kept),  # below label.alignment_min_strength, or without a confidence
        "skipped_bad_rows": load_report.skipped_bad,
        "duplicate_rows": load_report.duplicates,
    }
    return pairs, report


def dialogue_context(prompt: str) -> str:
    """An HH-RLHF prompt (`\\n\\nHuman: ... \\n\\nAssistant:`) without the final open turn marker."""
    return prompt.strip().removesuffix("Assistant:").strip()
