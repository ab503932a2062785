"""Human pairwise comparisons as one `datasets.Dataset` schema, whatever the source.

Every comparison has: id (str), prompt (str), chosen (str), rejected (str), confidence (int or
None). Sources understood:
  - `openai/summarize_from_feedback` (config `comparisons`) rows: info{id, post, title, subreddit},
    summaries[{text, policy, note}] x 2, choice (0/1), extra{confidence} (1-9, often missing). The
    prompt is the formatted TL;DR prompt, untruncated (the consumer cuts it to its token budget).
  - chosen/rejected rows with a `prompt` column, the responses alone (TRL's preference format).
  - chosen/rejected rows that are whole transcripts with no prompt (Anthropic HH-RLHF,
    `\\n\\nHuman: ... \\n\\nAssistant: ...`): the prompt is the shared beginning up to the last
    `\\n\\nAssistant:` before the two transcripts part, and each response is the rest.
Columns named differently are mapped with `fields` (our name -> the source's column).
"""

from __future__ import annotations

import hashlib

from datasets import Dataset

from rlaif.config import DatasetConfig
from rlaif.data.prompts import format_prompt
from rlaif.data.readers import DataError
from rlaif.data.tldr import LoadReport, collect_records

COMPARISON_FIELDS = ("id", "prompt", "chosen", "rejected", "confidence")
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
    confidence = _confidence(where, row.get(col["confidence"]), col["confidence"])
    return _finish(where, row.get(col["id"]), prompt, chosen, rejected, confidence, col)


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
    confidence = _confidence(where, extra.get("confidence"), "extra.confidence")
    names = {"id": "info.id", "chosen": f"summaries.{choice}.text", "rejected": f"summaries.{1 - choice}.text"}
    return _finish(where, info.get("id"), prompt, texts[choice], texts[1 - choice], confidence, names)


def _text(where: str, row: dict, column: str, allow_empty: bool = False) -> str:
    value = row.get(column)
    if value is None:
        raise DataError(f"{where}: field '{column}' is missing; columns here: {sorted(row)}")
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{column}' must be a string, got {type(value).__name__} {value!r:.60}")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}: field '{column}' is empty")
    return value


def _confidence(where: str, value, column: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise DataError(f"{where}: field '{column}' must be an integer, got {value!r:.60}")
    return int(value)


def _finish(where: str, raw_id, prompt: str, chosen: str, rejected: str, confidence, names: dict) -> dict:
    # An empty response is kept: in HH-RLHF saying nothing is sometimes the preferred answer.
    if chosen == rejected:
        raise DataError(
            f"{where}: fields '{names['chosen']}' and '{names['rejected']}' are identical; the pair has no preference"
        )
    # The id hashes the content, so one comparison in two files de-duplicates; a source id is kept in front.
    digest = hashlib.sha1("\x00".join((prompt, chosen, rejected)).encode()).hexdigest()[:12]
    cid = f"{raw_id}:{digest}" if raw_id not in (None, "") else digest
    return {"id": str(cid), "prompt": prompt, "chosen": chosen, "rejected": rejected, "confidence": confidence}


def load_comparisons(sources: list[DatasetConfig], report: LoadReport | None = None) -> Dataset:
    """Comparisons from every source, in order, de-duplicated by id (first occurrence wins).
    `skip`/`limit` count kept rows of each source; bad rows and duplicates go into `report`."""
    report = report if report is not None else LoadReport()
    return collect_records(
        sources, lambda where, row, ds: comparison_record(where, row, ds.fields), report, "comparisons"
    )
