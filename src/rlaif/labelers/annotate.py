"""Label pairs with a judge in both orders, append the records, and summarise them.

Used by the `label` stage (AI labels for the reward model) and by `--eval-alignment` (the same on
human comparisons). Pure functions (soft_label, label_metrics) are kept apart from the loop that
writes, so they can be tested against literal numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tqdm.auto import tqdm

from rlaif.artifacts import write_json
from rlaif.evaluation.stats import mean_or_none, position_bias, preferred_position
from rlaif.jsonl import AppendLog
from rlaif.labelers.base import JudgeResult, Labeler, LabelingIncomplete
from rlaif.labelers.prompts import JudgePrompt


def soft_label(ab: JudgeResult, ba: JudgeResult, undecided: str) -> tuple[float | None, bool]:
    """P(a > b) from the two orders [L01]: in order ab, a is candidate 1 (P(a) = p_first); in
    order ba, a is candidate 2 (P(a) = p_second); the two are averaged, which cancels a pure
    position preference. If either order is undecided the pair is: p_a is None (`drop`) or 0.5
    (`half`), never a coin flip [L04]."""
    if ab.p_first is None or ba.p_second is None:
        return (0.5 if undecided == "half" else None), True
    return (ab.p_first + ba.p_second) / 2.0, False


def label_record(
    pair: dict, ab: JudgeResult, ba: JudgeResult, labeler: Labeler, prompt: JudgePrompt, undecided: str
) -> dict:
    p_a, is_undecided = soft_label(ab, ba, undecided)
    record = {
        "id": pair["id"],
        "prompt": pair["prompt"],
        "summary_a": pair["summary_a"],
        "summary_b": pair["summary_b"],
        "p_a": p_a,
        "undecided": is_undecided,
        "orders": [ab.to_json("ab"), ba.to_json("ba")],
        "backend": labeler.backend,
        "model": labeler.model,
        "prompt_id": prompt.prompt_id,
    }
    if "human_choice" in pair:
        record["human_choice"] = pair["human_choice"]
    return record


def annotate(
    pairs: list[dict],
    text_of: Callable[[dict], str],
    labeler: Labeler,
    prompt: JudgePrompt,
    labels: AppendLog,
    failures: AppendLog,
    undecided: str,
    desc: str = "label",
) -> dict:
    """Label every pair not yet in `labels` (a resumed run skips those, and retries past
    failures). A pair whose request failed for good goes to `failures`, so each pair ends in
    one file or the other. The prompt's text is kept once, under its prompt_id (which every label
    carries), in prompts.jsonl beside the labels [L09]. Returns counts and timing of this call."""
    with AppendLog(labels.path.with_name("prompts.jsonl")) as kept:
        if prompt.prompt_id not in {row["prompt_id"] for row in kept.rows}:
            kept.append(prompt.record())
    done = {r["id"] for r in labels.rows}
    todo = [p for p in pairs if p["id"] not in done]
    t0, failed_now = time.time(), 0
    bar = tqdm(total=len(todo), desc=desc, unit="pair", disable=not todo)
    step = labeler.pairs_per_call  # pairs per judge call; records are written after each call
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        requests = [req for p in chunk for req in prompt.pair_requests(text_of(p), p["summary_a"], p["summary_b"])]
        results = labeler.judge(requests)
        for i, pair in enumerate(chunk):
            ab, ba = results[2 * i], results[2 * i + 1]
            if ab.failed or ba.failed:
                failed_now += 1
                failures.append(
                    {
                        "id": pair["id"],
                        "orders": [ab.to_json("ab"), ba.to_json("ba")],
                        "backend": labeler.backend,
                        "model": labeler.model,
                        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    }
                )
            else:
                labels.append(label_record(pair, ab, ba, labeler, prompt, undecided))
        bar.update(len(chunk))
    bar.close()
    labeled_ids = {r["id"] for r in labels.rows}
    still_failed = {f["id"] for f in failures.rows} - labeled_ids
    seconds = time.time() - t0
    labeled_now = len(todo) - failed_now
    return {
        "labeled_now": labeled_now,
        "failed": len(still_failed & {p["id"] for p in pairs}),
        "seconds": seconds,
        "pairs_per_minute": 60.0 * labeled_now / seconds if seconds > 0 and labeled_now else None,
    }


def label_position_bias(records: list[dict]) -> dict:
    """The labeler's position bias over label records (each with its two `orders`), by the
    evaluation judge's measure, rlaif.evaluation.stats.position_bias (`flip_rate`, `first_rate`,
    `answered_pairs`) [L05, E03]: the labels and the judge are read with one yardstick."""
    positions: dict[str, list[str | None]] = {"ab": [], "ba": []}
    for r in records:
        got = {o["order"]: preferred_position(o["p_first"], o["p_second"]) for o in r["orders"]}
        positions["ab"].append(got.get("ab"))
        positions["ba"].append(got.get("ba"))
    return position_bias(positions["ab"], positions["ba"])


def label_metrics(records: list[dict]) -> dict:
    """Summary of label records: undecided rate, position bias, confidence, and agreement with
    human choices where records carry one [L05]."""
    n = len(records)
    decided = [r for r in records if not r["undecided"]]
    metrics = {
        "pairs": n,
        "undecided": n - len(decided),
        "undecided_rate": (n - len(decided)) / n if n else None,
        "position_bias": label_position_bias(records),
        "mean_confidence": mean_or_none([max(r["p_a"], 1 - r["p_a"]) for r in decided]),
        "mean_p_a": mean_or_none([r["p_a"] for r in decided]),
        "mean_raw_mass": mean_or_none(
            [o["raw_mass"] for r in records for o in r["orders"] if o["raw_mass"] is not None]
        ),
    }
    judged = [r for r in records if r.get("human_choice") in ("a", "b")]
    if judged:
        metrics["alignment_with_humans"] = alignment(judged)
    return metrics


def alignment(records: list[dict]) -> dict:
    """AI labeler alignment (Lee et al. 2023, "AI Labeler Alignment"): the soft label is made binary and
    scored 1 when it picks the human's choice, else 0; averaged. An undecided pair kept at 0.5 (or
    an exact 0.5) scores 0.5; `dropped_undecided` counts the pairs left out (p_a null)."""
    scores = []
    for r in records:
        if r["p_a"] is None:
            continue
        p_chosen = r["p_a"] if r["human_choice"] == "a" else 1.0 - r["p_a"]
        scores.append(1.0 if p_chosen > 0.5 else 0.5 if p_chosen == 0.5 else 0.0)
    return {"accuracy": mean_or_none(scores), "pairs": len(scores), "dropped_undecided": len(records) - len(scores)}


# ----------------------------------------------------------------------------------------------
# What the labeling stages report of a run


def run_info(stats: dict, labeler, prompt) -> dict:
    return {
        "failed": stats["failed"],
        "labeled_now": stats["labeled_now"],
        "seconds": round(stats["seconds"], 2),
        "pairs_per_minute": stats["pairs_per_minute"],
        "backend": labeler.backend,
        "model": labeler.model,
        "prompt_id": prompt.prompt_id,
    }


def print_summary(what: str, m: dict, path) -> None:
    rate = f"{m['pairs_per_minute']:.1f} pairs/min" if m.get("pairs_per_minute") else "nothing new"
    align = m.get("alignment_with_humans")
    align_text = f", alignment {align['accuracy']:.3f}" if align and align["accuracy"] is not None else ""
    print(
        f"[rlaif] {what}: {m['pairs']} labeled, {m['undecided']} undecided, {m['failed']} failed "
        f"({rate}){align_text} -> {path}",
        flush=True,
    )


def check_failures(metrics: dict, total: int, allowed: float, out_dir) -> None:
    failed = metrics["failed"]
    if total and failed / total > allowed:
        write_json(out_dir / "metrics.json", metrics)  # the partial picture stays readable
        raise LabelingIncomplete(
            f"{failed} of {total} pairs failed after every retry (see {out_dir}/failures*.jsonl); "
            f"rerun the same command to retry just those, or raise label.max_failed_fraction"
        )
