"""TL;DR posts as `datasets.Dataset`s with one schema, whatever the source.

Every post record has string fields: id, subreddit, title, post, summary ("" where a source lacks
one). Sources understood:
  - rows with our field names, or others mapped through `fields` (local JSONL/JSON/Parquet/CSV,
    e.g. ../shared/data/tldr/*.jsonl);
  - formatted prompts with completions: `trl-lib/tldr` (prompt, completion) and
    `CarperAI/openai_summarize_tldr` (prompt, label);
  - `openai/summarize_from_feedback` rows (info{id, post, title, subreddit}, ...), whose posts repeat
    across comparisons and are de-duplicated into a prompt pool, as the seed's preprocessing does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from datasets import Dataset

from rlaif.config import DatasetConfig
from rlaif.data.prompts import parse_prompt
from rlaif.data.readers import DataError, read_rows

POST_FIELDS = ("id", "subreddit", "title", "post", "summary")


@dataclass
class LoadReport:
    """What a load kept and dropped, for the stage metrics."""

    rows: int = 0
    skipped_bad: int = 0
    duplicates: int = 0


def post_record(where: str, row: dict, fields: dict[str, str]) -> dict[str, str]:
    """One raw row -> a post record, or DataError naming the row and the field."""
    col = {name: fields.get(name, name) for name in POST_FIELDS}
    if isinstance(row.get("info"), dict) and "post" not in fields:  # summarize_from_feedback schema
        info = row["info"]
        raw = {
            "id": info.get("id"),
            "subreddit": info.get("subreddit"),
            "title": info.get("title"),
            "post": info.get("post"),
            "summary": None,
        }
        names = {k: f"info.{k}" for k in POST_FIELDS}
    elif col["post"] not in row and isinstance(row.get("prompt"), str):  # trl-lib/tldr, CarperAI
        parsed = parse_prompt(row["prompt"])
        if parsed is None:
            raise DataError(f"{where}: field 'prompt' is not in the TL;DR format 'SUBREDDIT: ... POST: ... TL;DR:'")
        raw = {**parsed, "id": row.get(col["id"]), "summary": row.get("completion", row.get("label"))}
        names = {
            **{k: "prompt" for k in ("subreddit", "title", "post")},
            "id": col["id"],
            "summary": "completion" if "completion" in row else "label",
        }
    else:
        raw = {k: row.get(col[k]) for k in POST_FIELDS}
        names = col
    if raw["post"] is None:
        raise DataError(f"{where}: field '{names['post']}' (the post) is missing; columns here: {sorted(row)}")
    record = {}
    for key in POST_FIELDS:
        value = raw[key]
        if key == "id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{where}: field '{names[key]}' must be a string, got {type(value).__name__} {value!r:.60}")
        record[key] = (value or "").strip()
    if not record["post"]:
        raise DataError(f"{where}: field '{names['post']}' (the post) is empty")
    # Sources without ids get a content hash, so the same post from two files de-duplicates.
    record["id"] = record["id"] or hashlib.sha1(record["post"].encode()).hexdigest()[:12]
    return record


def load_posts(sources: list[DatasetConfig], require_summary: bool = False) -> tuple[Dataset, LoadReport]:
    """Posts from every source, in order, de-duplicated by id (first occurrence wins)."""

    def record_of(where: str, row: dict, ds: DatasetConfig) -> dict:
        record = post_record(where, row, ds.fields)
        if require_summary and not record["summary"]:
            raise DataError(
                f"{where}: field '{ds.fields.get('summary', 'summary')}' (the reference summary) is missing or empty"
            )
        return record

    report = LoadReport()
    return collect_records(sources, record_of, report, "rows"), report


def collect_records(sources: list[DatasetConfig], record_of, report: LoadReport, what: str) -> Dataset:
    """Records `record_of(where, row, ds)` of every source's rows, in order, de-duplicated by id
    (first occurrence wins). A bad row (DataError) stops the load, or is skipped and counted, as the
    source's `on_bad_row` says; `skip`/`limit` count the kept rows of each source."""
    records, seen = [], set()
    for ds in sources:
        kept = 0
        for where, row in read_rows(ds):
            try:
                record = record_of(where, row, ds)
            except DataError:
                if ds.on_bad_row == "error":
                    raise
                report.skipped_bad += 1
                continue
            if record["id"] in seen:
                report.duplicates += 1
                continue
            seen.add(record["id"])
            kept += 1
            if kept <= ds.skip:
                continue
            if ds.limit is not None and kept > ds.skip + ds.limit:
                break
            records.append(record)
    if not records:
        raise DataError(f"no usable {what} in {', '.join(ds.path for ds in sources) or 'an empty source list'}")
    report.rows = len(records)
    return Dataset.from_list(records)
