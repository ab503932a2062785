"""The evaluation judge's two-order protocol, on any labeler backend; its prompt (`eval_prompt`,
[E02]) is with the other judges' in rlaif.labelers.prompts.
Every pair is asked in both orders; `rlaif.evaluation.stats.outcome` turns the two answers into win/tie/loss.
"""

from __future__ import annotations

from rlaif.evaluation.stats import outcome, preferred_position
from rlaif.labelers.base import JudgeResult, Labeler
from rlaif.labelers.prompts import JudgePrompt, eval_prompt, judge_text_from_prompt

__all__ = ["eval_prompt", "judge_both_orders", "judge_pairs", "judgement_row"]


def judge_both_orders(
    labeler: Labeler, prompt: JudgePrompt, prompts: list[str], a: list[str], b: list[str]
) -> list[tuple[JudgeResult, JudgeResult]]:
    """(order ab, order ba) results per pair: A shown first, then B shown first."""
    requests = [
        r for p, x, y in zip(prompts, a, b, strict=True) for r in prompt.pair_requests(judge_text_from_prompt(p), x, y)
    ]
    results = labeler.judge(requests)
    if len(results) != len(requests):
        raise RuntimeError(
            f"judge backend {labeler.backend} returned {len(results)} results for {len(requests)} requests"
        )
    return [(results[i], results[i + 1]) for i in range(0, len(results), 2)]


def judgement_row(
    comparison: str, post_id: str, summary_a: str, summary_b: str, ab: JudgeResult, ba: JudgeResult
) -> dict:
    """One line of eval/judgements.jsonl: both raw answers and the outcome for A."""
    pos_ab, pos_ba = preferred_position(ab.p_first, ab.p_second), preferred_position(ba.p_first, ba.p_second)
    system_a, system_b = comparison.split(":")
    return {
        "comparison": comparison,
        "id": post_id,
        "system_a": system_a,
        "system_b": system_b,
        "summary_a": summary_a,
        "summary_b": summary_b,
        "orders": [ab.to_json("ab"), ba.to_json("ba")],
        "preferred_position": {"ab": pos_ab, "ba": pos_ba},
        "outcome": outcome(pos_ab, pos_ba),
    }


def judge_pairs(
    labeler: Labeler,
    prompt: JudgePrompt,
    pending: list[tuple[str, str]],
    text: dict[str, dict[str, str]],
    prompts: dict[str, str],
) -> list[dict | None]:
    """Judgement rows for (comparison `A:B`, post id) pairs, judged in one call; None for a pair
    whose request failed in transport (to be retried), not for an undecided answer."""
    sides = [c.split(":") for c, _ in pending]
    results = judge_both_orders(
        labeler,
        prompt,
        [prompts[i] for _, i in pending],
        [text[a][i] for (a, _), (_, i) in zip(sides, pending)],
        [text[b][i] for (_, b), (_, i) in zip(sides, pending)],
    )
    rows: list[dict | None] = []
    for (comparison, i), (a, b), (ab, ba) in zip(pending, sides, results):
        if ab.failed or ba.failed:
            rows.append(None)
            continue
        row = judgement_row(comparison, i, text[a][i], text[b][i], ab, ba)
        row["judge"] = {"backend": labeler.backend, "model": labeler.model, "prompt_id": prompt.prompt_id}
        rows.append(row)
    return rows
