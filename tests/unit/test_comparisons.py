"""Human comparison loading: summarize_from_feedback schema, chosen/rejected files, bad rows."""

import json
from pathlib import Path

import pytest

from rlaif.config import DatasetConfig
from rlaif.data import DataError
from rlaif.data.comparisons import load_comparisons, split_transcripts
from rlaif.data.tldr import LoadReport

HH = Path(__file__).resolve().parents[2].parent / "shared/data/hh-rlhf/harmless-base-test.jsonl.gz"


def sff_row(post_id, choice, confidence, texts=("Alice is late.", "Bob is early.")):
    """A row in the openai/summarize_from_feedback `comparisons` schema (dataset card)."""
    return {
        "info": {
            "id": post_id,
            "post": "I was late again today and my boss noticed.",
            "title": "Late",
            "subreddit": "work",
        },
        "summaries": [
            {"text": " " + texts[0], "policy": "sup2", "note": None},
            {"text": texts[1], "policy": "ref", "note": None},
        ],
        "choice": choice,
        "worker": "w1",
        "batch": "batch3",
        "split": "train",
        "extra": {"confidence": confidence},
    }


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sff_schema(tmp_path):
    path = write_jsonl(tmp_path / "sff.jsonl", [sff_row("t3_a", 1, 9), sff_row("t3_b", 0, None, ("x", "y"))])
    ds = load_comparisons([DatasetConfig(path=str(path))])
    first = ds[0]
    assert (
        first["prompt"]
        == "SUBREDDIT: r/work\n\nTITLE: Late\n\nPOST: I was late again today and my boss noticed.\n\nTL;DR:"
    )
    assert (first["chosen"], first["rejected"], first["confidence"]) == ("Bob is early.", "Alice is late.", 9)
    assert first["id"].startswith("t3_a:")
    assert (ds[1]["chosen"], ds[1]["confidence"]) == ("x", None)


def test_sff_bad_choice_names_file_line_and_field(tmp_path):
    bad = sff_row("t3_a", 2, 9)
    path = write_jsonl(tmp_path / "sff.jsonl", [sff_row("t3_b", 0, 1), bad])
    with pytest.raises(DataError, match=r"sff\.jsonl:2: field 'choice' must be 0 or 1"):
        load_comparisons([DatasetConfig(path=str(path))])
    report = LoadReport()
    ds = load_comparisons([DatasetConfig(path=str(path), on_bad_row="skip")], report)
    assert len(ds) == 1 and report.skipped_bad == 1


def test_prompt_chosen_rejected_with_field_mapping(tmp_path):
    rows = [
        {"q": "Say hi.", "good": "Hi!", "bad": "No.", "conf": 7},
        {"q": "Say hi.", "good": "Hi!", "bad": "No.", "conf": 7},
    ]
    path = write_jsonl(tmp_path / "pref.jsonl", rows)
    report = LoadReport()
    ds = load_comparisons(
        [
            DatasetConfig(
                path=str(path), fields={"prompt": "q", "chosen": "good", "rejected": "bad", "confidence": "conf"}
            )
        ],
        report,
    )
    assert len(ds) == 1 and report.duplicates == 1
    assert (ds[0]["prompt"], ds[0]["chosen"], ds[0]["rejected"], ds[0]["confidence"]) == ("Say hi.", "Hi!", "No.", 7)


def test_missing_or_identical_responses_are_errors(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"chosen": "x y"}])
    with pytest.raises(DataError, match=r"a\.jsonl:1: field 'rejected' is missing"):
        load_comparisons([DatasetConfig(path=str(path))])
    path = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "p", "chosen": "same", "rejected": "same"}])
    with pytest.raises(DataError, match=r"b\.jsonl:1: .*identical"):
        load_comparisons([DatasetConfig(path=str(path))])


def test_split_transcripts_at_the_last_assistant_turn():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me?\n\nAssistant: Sure, here is how."
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me?\n\nAssistant: Sure thing, no."
    prompt, c, r = split_transcripts(chosen, rejected)
    assert prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me?\n\nAssistant:"
    assert (c, r) == ("Sure, here is how.", "Sure thing, no.")


@pytest.mark.skipif(not HH.exists(), reason=f"real HH-RLHF pairs not found at {HH}")
def test_hh_rlhf_file_with_skip_and_limit():
    first = load_comparisons([DatasetConfig(path=str(HH), limit=5)])
    later = load_comparisons([DatasetConfig(path=str(HH), skip=3, limit=5)])
    assert len(first) == 5 and later[0]["id"] == first[3]["id"]
    assert all(row["prompt"].endswith("Assistant:") and row["chosen"] != row["rejected"] for row in first)
