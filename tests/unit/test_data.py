"""TL;DR data: prompt format, truncation, every source shape, and precise errors on bad rows."""

from __future__ import annotations

import gzip
import json

import pytest

from rlaif.config import DatasetConfig
from rlaif.data import DataError, build_prompt, format_prompt, load_posts, parse_prompt, truncate_post
from rlaif.data.prompts import count_tokens
from rlaif.models import load_tokenizer
from tests.conftest import SHARED_DATA, needs_shared_data


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny-random")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


POSTS = [
    {"subreddit": "relationships", "title": "A title", "post": "First post body.", "summary": "first"},
    {"subreddit": "tifu", "title": "Another", "post": "Second post body.", "summary": "second"},
]


# --- prompt format and truncation ---


def test_prompt_format_is_exact_and_omits_missing_parts():
    assert format_prompt("P", "aww", "T") == "SUBREDDIT: r/aww\n\nTITLE: T\n\nPOST: P\n\nTL;DR:"
    assert format_prompt("P") == "POST: P\n\nTL;DR:"
    assert format_prompt("P", title="T") == "TITLE: T\n\nPOST: P\n\nTL;DR:"
    assert parse_prompt(format_prompt("line one\n\nline two", "aww", "T")) == {
        "subreddit": "aww",
        "title": "T",
        "post": "line one\n\nline two",
    }


def test_truncation_cuts_at_a_newline_within_budget(tokenizer):
    paragraphs = [" ".join(f"word{i}_{j}" for j in range(30)) for i in range(8)]
    post = "\n".join(paragraphs)
    budget = count_tokens(tokenizer, format_prompt("\n".join(paragraphs[:3]), "aww", "T")) + 5
    cut = truncate_post(tokenizer, post, "aww", "T", budget)
    assert cut == "\n".join(paragraphs[:3])  # the last newline that fits
    assert count_tokens(tokenizer, format_prompt(cut, "aww", "T")) <= budget


def test_truncation_never_cuts_mid_word(tokenizer):
    post = " ".join(f"token{i}" for i in range(400))  # no newline, no sentence end
    cut = truncate_post(tokenizer, post, "", "", 100)
    assert post.startswith(cut) and post[len(cut)] == " "
    assert count_tokens(tokenizer, format_prompt(cut)) <= 100
    assert build_prompt(tokenizer, {"post": "short"}, 100) == "POST: short\n\nTL;DR:"


# --- sources ---


def test_jsonl_with_field_mapping_and_split_filter(tmp_path):
    rows = [{"body": "p1", "tldr": "s1", "split": "train"}, {"body": "p2", "tldr": "s2", "split": "test"}]
    path = write_jsonl(tmp_path / "posts.jsonl", rows)
    ds, report = load_posts([DatasetConfig(path=str(path), fields={"post": "body", "summary": "tldr"}, split="test")])
    assert ds["post"] == ["p2"] and ds["summary"] == ["s2"] and report.rows == 1
    assert len(ds[0]["id"]) == 12  # content hash when the source has no id


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet", ".jsonl.gz"])
def test_other_file_formats(tmp_path, suffix):
    path = tmp_path / f"posts{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(POSTS))
    elif suffix == ".csv":
        import csv

        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(POSTS[0]))
            writer.writeheader()
            writer.writerows(POSTS)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(POSTS), path)
    else:
        with gzip.open(path, "wt") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in POSTS)
    ds, _ = load_posts([DatasetConfig(path=str(path))])
    assert ds["subreddit"] == ["relationships", "tifu"] and ds["summary"] == ["first", "second"]


def test_prompt_completion_rows_are_parsed_back(tmp_path):
    # trl-lib/tldr ships formatted prompts with " summary" completions.
    rows = [{"prompt": format_prompt("The body.", "aww", "Cute"), "completion": " a cat"}]
    ds, _ = load_posts([DatasetConfig(path=str(write_jsonl(tmp_path / "tldr.jsonl", rows)))])
    assert ds[0] == {"id": ds[0]["id"], "subreddit": "aww", "title": "Cute", "post": "The body.", "summary": "a cat"}


def test_comparisons_are_deduplicated_into_a_prompt_pool(tmp_path):
    # summarize_from_feedback `comparisons`: the same post appears once per compared pair.
    def comparison(pid, choice):
        return {
            "info": {"id": pid, "post": f"post {pid}", "title": "t", "subreddit": "s"},
            "summaries": [{"text": "x", "policy": "a", "note": None}, {"text": "y", "policy": "b", "note": None}],
            "choice": choice,
            "worker": "w",
            "batch": "b1",
            "split": "valid1",
            "extra": {"confidence": 8},
        }

    path = write_jsonl(
        tmp_path / "comparisons.jsonl", [comparison("t3_a", 0), comparison("t3_a", 1), comparison("t3_b", 0)]
    )
    ds, report = load_posts([DatasetConfig(path=str(path))])
    assert ds["id"] == ["t3_a", "t3_b"] and report.duplicates == 1 and ds["summary"] == ["", ""]


def test_skip_and_limit_carve_disjoint_slices(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"post": f"post {i}", "summary": "s"} for i in range(10)])
    head, _ = load_posts([DatasetConfig(path=str(path), limit=4)])
    tail, _ = load_posts([DatasetConfig(path=str(path), skip=4, limit=3)])
    assert head["post"] == [f"post {i}" for i in range(4)] and tail["post"] == ["post 4", "post 5", "post 6"]


def test_hub_source_without_network_fails_clearly():
    with pytest.raises(DataError, match=r"cannot load Hub dataset 'trl-lib/tldr'.*point `path` at a local file"):
        load_posts([DatasetConfig(path="trl-lib/tldr")])


@needs_shared_data
def test_real_shared_files_load():
    ds, _ = load_posts(
        [DatasetConfig(path=str(SHARED_DATA / "tldr" / "openai_tldr_30.jsonl"), split="test")], require_summary=True
    )
    assert len(ds) == 20 and all(ds["subreddit"]) and all(ds["title"])
    pool, _ = load_posts([DatasetConfig(path=str(SHARED_DATA / "tldr" / "sff_validation_posts_250.jsonl"))])
    assert len(pool) == 250


# --- bad rows: each names the file, the line and the field ---

BAD_ROWS = [
    ('{"title": "t"}\n', ":1: field 'post' (the post) is missing"),
    ('{"post": "   "}\n', ":1: field 'post' (the post) is empty"),
    ('{"post": "p", "title": 7}\n', ":1: field 'title' must be a string, got int 7"),
    ('{"post": ["p"]}\n', ":1: field 'post' must be a string, got list"),
    ('{"post": "ok"}\n{"post": "p"\n', ":2: not valid JSON"),
    ('{"post": "ok"}\n["a list"]\n', ":2: expected a JSON object, got list"),
    ('{"prompt": "no format here", "completion": "x"}\n', ":1: field 'prompt' is not in the TL;DR format"),
    ('{"post": "p", "summary": ""}\n', ":1: field 'summary' (the reference summary) is missing or empty"),
]


@pytest.mark.parametrize("content, message", BAD_ROWS)
def test_bad_rows_name_file_line_and_field(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        load_posts([DatasetConfig(path=str(path))], require_summary="summary" in message)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_undecodable_line_is_named(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"post": "fine"}\n{"post": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin1.jsonl:2: line is not valid UTF-8"):
        load_posts([DatasetConfig(path=str(path))])


def test_skip_option_drops_and_counts_bad_rows(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"post": "good one"}\n{"post": ""}\n{"post": 3}\n{"post": "good two"}\n')
    ds, report = load_posts([DatasetConfig(path=str(path), on_bad_row="skip")])
    assert ds["post"] == ["good one", "good two"] and report.skipped_bad == 2
