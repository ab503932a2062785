"""The evaluation judge's prompt and its two-order protocol, on any labeler backend.

The question paraphrases the one Huang et al. 2024 (arXiv 2403.17031) put to their GPT judge of
TL;DR summaries, taken from Rafailov et al. 2023 (DPO, arXiv 2305.18290): which summary gets the
post's most important points across without minor or irrelevant details, precise and concise.
The wording is ours. [E02]
Every pair is asked in both orders; `rlaif.evaluation.stats.outcome` turns the two answers into win/tie/loss.
"""

from __future__ import annotations

from rlaif.evaluation.stats import outcome, preferred_position
from rlaif.labelers.base import JudgeResult, Labeler
from rlaif.labelers.prompts import JudgePrompt, Task, judge_text_from_prompt

EVAL_PREAMBLE = """\
You will read a Reddit post and two summaries of it. Decide which summary better conveys the \
points of the post that matter most, while leaving out details that are minor or beside the \
point. The better summary is accurate and to the point: it says what matters, and says it briefly. \
Do not favour a summary for being longer or for the position in which it is shown."""

EVAL_TASK = Task(
    "tldr-eval",
    EVAL_PREAMBLE,
    "Text",
    "Summary",
    "In a sentence or two, say which summary captures the key points more accurately and concisely.",
    "Which summary captures the key points more accurately and concisely? Answer with 1 or 2.",
)


def eval_prompt(style: str, max_rationale_tokens: int) -> JudgePrompt:
    return JudgePrompt(EVAL_TASK, style, max_rationale_tokens)


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
