"""Human pairwise comparisons as one `datasets.Dataset` schema, whatever the source.

Every comparison has: id (str), post_id (str), prompt (str), chosen (str), rejected (str),
confidence (int or None: the source's own value, unchanged), strength (int or None: how strongly
the chosen response won, see below) and choice (int or None: the index of the chosen response in
the source's `summaries`). Sources understood:
  - `openai/summarize_from_feedback` (config `comparisons`) rows: info{id, post, title, subreddit},
    summaries[{text, policy, note}] x 2, choice (0/1), extra{confidence}. The prompt is the
    formatted TL;DR prompt, untruncated (the consumer cuts it to its token budget); post_id is
    info.id.
  - chosen/rejected rows with a `prompt` column, the responses alone (TRL's preference format).
  - chosen/rejected rows that are whole transcripts with no prompt (Anthropic HH-RLHF,
    `\\n\\nHuman: ... \\n\\nAssistant: ...`): the prompt is the shared beginning up to the last
    `\\n\\nAssistant:` before the two transcripts part, and each response is the rest.
Columns named differently are mapped with `fields` (our name -> the source's column).

`extra.confidence` of summarize_from_feedback is the worker's 9-point PREFERENCE scale, not a
strength: 1-4 means summaries[0] won (choice 0), 6-9 that summaries[1] won (choice 1), 1 and 9 the
surest (batch 13: 1,097 rows, every one consistent with its choice, no 5s). A filter
`confidence >= 8` therefore keeps only pairs the second summary won. The loader turns it into a
strength symmetric in the two summaries, `strength = |confidence - 5|` (1-4; 3 or more is the
high-confidence set `confidence <= 2 or >= 8`), and rejects a row whose confidence names the other
summary than its choice. Other sources have a strength only through a `strength` column (mapped
with `fields`); their `confidence` column, if any, is kept as given and not interpreted. [H01]
"""

from __future__ import annotations

import hashlib

from datasets import Dataset

from rlaif.config import DatasetConfig
from rlaif.data.prompts import format_prompt
from rlaif.data.readers import DataError
from rlaif.data.tldr import LoadReport, collect_records

COMPARISON_FIELDS = ("id", "prompt", "chosen", "rejected", "confidence", "strength")
PREFERENCE_MIDPOINT = 5
"""The middle of summarize_from_feedback's 9-point scale: below it summaries[0] won, above it summaries[1]."""
TURN_MARKER = "\n\nAssistant:"


def comparison_record(where: str, row: dict, fields: dict[str, str]) -> dict:
    """One raw row -> a comparison record, or DataError naming the row and the field."""
    col = {name: fields.get(name, name) for name in COMPARISON_FIELDS}
    if isinstance(row.get("info"), dict) and "summaries" in row and "chosen" not in fields:
        return _sff_record(where, row)
    chosen, rejected = _text(where, row, col["chosen"]), _text(where, row, col["rejected"])
    if col["prompt"] in row:
        prompt = _text(where, row, col["prompt"], allow_empty=True)
    else:
        prompt, chosen, rejected = split_transcripts(chosen, rejected)
    confidence = _integer(where, row.get(col["confidence"]), col["confidence"])
    strength = _integer(where, row.get(col["strength"]), col["strength"])
    if strength is not None and strength < 0:
        raise DataError(f"{where}: field '{col['strength']}' must be >= 0, got {strength}")
    return _finish(where, row.get(col["id"]), None, prompt, chosen, rejected, confidence, strength, None, col, "")


def split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) of two transcripts sharing their beginning.
    The cut is at the last turn marker inside the shared part, so the prompt ends with
    `Assistant:`; without a marker it is at the last whitespace of the shared part."""
    shared = 0
    for x, y in zip(chosen, rejected):
        if x != y:
            break
        shared += 1
    cut = chosen.rfind(TURN_MARKER, 0, shared)
    if cut >= 0 and cut + len(TURN_MARKER) <= shared:
        cut += len(TURN_MARKER)
    else:
        cut = max(chosen.rfind(" ", 0, shared), chosen.rfind("\n", 0, shared), 0)
    return chosen[:cut].rstrip(), chosen[cut:].strip(), rejected[cut:].strip()


def _sff_record(where: str, row: dict) -> dict:
    info, summaries, choice = row["info"], row["summaries"], row.get("choice")
    if not isinstance(info.get("post"), str) or not info["post"].strip():
        raise DataError(f"{where}: field 'info.post' must be a non-empty string")
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise DataError(f"{where}: field 'summaries' must be a list of 2, got {str(summaries)[:60]}")
    if choice not in (0, 1) or isinstance(choice, bool):
        raise DataError(f"{where}: field 'choice' must be 0 or 1, got {choice!r}")
    texts = []
    for i, s in enumerate(summaries):
        if not isinstance(s, dict) or not isinstance(s.get("text"), str):
            raise DataError(f"{where}: field 'summaries.{i}.text' must be a string")
        texts.append(s["text"].strip())
    prompt = format_prompt(
        info["post"].strip(), (info.get("subreddit") or "").strip(), (info.get("title") or "").strip()
    )
    extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
    confidence = _integer(where, extra.get("confidence"), "extra.confidence")
    strength = preference_strength(where, confidence, choice)
    names = {"id": "info.id", "chosen": f"summaries.{choice}.text", "rejected": f"summaries.{1 - choice}.text"}
    return _finish(
        where, info.get("id"), info.get("id"), prompt, texts[choice], texts[1 - choice], confidence, strength, choice,
        names, str(row.get("worker") or ""),
    )  # fmt: skip


def preference_strength(where: str, confidence: int | None, choice: int) -> int | None:
    """|confidence - 5| of a summarize_from_feedback row (see the module docstring) [H01]; None
    without a confidence. A confidence on the other side of 5 than `choice` is a DataError: the row
    contradicts itself, or its source uses another convention, and either way cannot be read."""
    if confidence is None:
        return None
    if not 1 <= confidence <= 9:
        raise DataError(f"{where}: field 'extra.confidence' must be on the 9-point scale 1-9, got {confidence}")
    if confidence != PREFERENCE_MIDPOINT and (confidence > PREFERENCE_MIDPOINT) != (choice == 1):
        side = "summaries[1]" if confidence > PREFERENCE_MIDPOINT else "summaries[0]"
        raise DataError(
            f"{where}: field 'extra.confidence' is {confidence}, which says {side} won (1-4: summaries[0], "
            f"6-9: summaries[1]), but field 'choice' is {choice}"
        )
    return abs(confidence - PREFERENCE_MIDPOINT)


def _text(where: str, row: dict, column: str, allow_empty: bool = False) -> str:
    value = row.get(column)
    if value is None:
        raise DataError(f"{where}: field '{column}' is missing; columns here: {sorted(row)}")
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{column}' must be a string, got {type(value).__name__} {value!r:.60}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: field '{column}' is empty")
    return value


def _integer(where: str, value, column: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise DataError(f"{where}: field '{column}' must be an integer, got {value!r:.60}")
    return int(value)


def _finish(
    where: str,
    raw_id,
    post_id,
    prompt: str,
    chosen: str,
    rejected: str,
    confidence,
    strength,
    choice,
    names: dict,
    judged_by: str,
) -> dict:
    # An empty response is kept: in HH-RLHF saying nothing is sometimes the preferred answer.
    if chosen == rejected:
        raise DataError(
            f"{where}: fields '{names['chosen']}' and '{names['rejected']}' are identical; the pair has no preference"
        )
    # The id hashes the content, so one comparison in two files de-duplicates; a source id is kept in front.
    # The worker is part of it: summarize_from_feedback has pairs judged by several workers (batch 13:
    # 40 pairs, up to 11 judgements each), each judgement a comparison of its own [H01].
    parts = (prompt, chosen, rejected) + ((judged_by,) if judged_by else ())
    digest = hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:12]
    cid = f"{raw_id}:{digest}" if raw_id not in (None, "") else digest
    # Without a post id the prompt is the post: comparisons of one prompt share it.
    post_id = str(post_id) if post_id not in (None, "") else hashlib.sha1(prompt.encode()).hexdigest()[:12]
    return {
        "id": str(cid),
        "post_id": post_id,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "confidence": confidence,
        "strength": strength,
        "choice": choice,
    }


def load_comparisons(sources: list[DatasetConfig], report: LoadReport | None = None) -> Dataset:
    """Comparisons from every source, in order, de-duplicated by id (first occurrence wins).
    `skip`/`limit` count kept rows of each source; bad rows and duplicates go into `report`."""
    report = report if report is not None else LoadReport()
    return collect_records(
        sources, lambda where, row, ds: comparison_record(where, row, ds.fields), report, "comparisons"
    )


def at_least_strength(row: dict, min_strength: int | None, keep_unknown: bool) -> bool:
    """Whether a comparison passes a min-strength filter (symmetric in the two summaries) [H01].
    None keeps everything; a row without a strength is kept only when `keep_unknown`."""
    if min_strength is None:
        return True
    return keep_unknown if row["strength"] is None else row["strength"] >= min_strength


def one_sided_confidence(row: dict, min_confidence: int) -> bool:
    """The seed's filter, the raw `extra.confidence >= min_confidence` (its evaluate_rm_acc.py uses
    8). On the 9-point preference scale this is one-sided: above 5 it keeps only pairs that
    summaries[1] won, so a judge that always prefers the second summary scores 100% on it. Kept to
    compare with the seed's figures, never as a quality filter. [H01]"""
    return row["confidence"] is not None and row["confidence"] >= min_confidence
