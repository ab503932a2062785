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


# ----------------------------------------------------------------------------------------------
# The 9-point preference scale read as a strength [H01], and the split by post [H02]

BATCH13 = Path(__file__).resolve().parents[2].parent / "shared/data/tldr/sff_comparisons_batch13.jsonl"
needs_batch13 = pytest.mark.skipif(
    not BATCH13.exists(), reason=f"OpenAI's batch 13 comparisons not found at {BATCH13} (../shared/data)"
)


@pytest.mark.parametrize(
    "choice, confidence, strength",
    [(0, 1, 4), (0, 2, 3), (0, 4, 1), (1, 6, 1), (1, 8, 3), (1, 9, 4), (0, 5, 0), (1, 5, 0), (1, None, None)],
)
def test_confidence_becomes_a_strength_symmetric_in_the_two_summaries(tmp_path, choice, confidence, strength):
    path = write_jsonl(tmp_path / "sff.jsonl", [sff_row("t3_a", choice, confidence)])
    row = load_comparisons([DatasetConfig(path=str(path))])[0]
    assert (row["strength"], row["confidence"], row["choice"], row["post_id"]) == (strength, confidence, choice, "t3_a")
    assert row["chosen"] == ("Alice is late." if choice == 0 else "Bob is early.")


@pytest.mark.parametrize(
    "choice, confidence, message",
    [
        (
            0,
            8,
            r"sff\.jsonl:1: field 'extra.confidence' is 8, which says summaries\[1\] won .* but field 'choice' is 0",
        ),
        (1, 2, r"sff\.jsonl:1: field 'extra.confidence' is 2, which says summaries\[0\] won"),
        (1, 10, r"sff\.jsonl:1: field 'extra.confidence' must be on the 9-point scale 1-9, got 10"),
    ],
)
def test_a_confidence_that_contradicts_the_choice_is_a_bad_row(tmp_path, choice, confidence, message):
    path = write_jsonl(tmp_path / "sff.jsonl", [sff_row("t3_a", choice, confidence)])
    with pytest.raises(DataError, match=message):
        load_comparisons([DatasetConfig(path=str(path))])


def test_each_workers_judgement_is_a_comparison_of_its_own(tmp_path):
    # The same pair judged by two workers the same way: two comparisons, not a duplicate.
    rows = [sff_row("t3_a", 1, 9), {**sff_row("t3_a", 1, 7), "worker": "w2"}, sff_row("t3_a", 1, 9)]
    report = LoadReport()
    ds = load_comparisons([DatasetConfig(path=str(write_jsonl(tmp_path / "sff.jsonl", rows)))], report)
    assert len(ds) == 2 and report.duplicates == 1 and ds["strength"] == [4, 2]


def test_strength_of_other_sources_comes_only_from_a_strength_column(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "conf": 7, "s": 2}]
    path = write_jsonl(tmp_path / "pref.jsonl", rows)
    plain = load_comparisons([DatasetConfig(path=str(path), fields={"confidence": "conf"})])[0]
    assert (plain["confidence"], plain["strength"], plain["choice"]) == (7, None, None)
    mapped = load_comparisons([DatasetConfig(path=str(path), fields={"strength": "s"})])[0]
    assert mapped["strength"] == 2 and mapped["post_id"] == plain["post_id"]  # same prompt, same post


def test_min_strength_and_the_seeds_one_sided_filter():
    from rlaif.data.comparisons import at_least_strength, one_sided_confidence

    first_won = {"strength": 3, "confidence": 2, "choice": 0}
    second_won = {"strength": 3, "confidence": 8, "choice": 1}
    unknown = {"strength": None, "confidence": None, "choice": 0}
    assert at_least_strength(first_won, 3, False) and at_least_strength(second_won, 3, False)
    assert not at_least_strength(first_won, 4, True) and at_least_strength(unknown, 4, True)
    assert not at_least_strength(unknown, 4, False) and at_least_strength(unknown, None, False)
    assert one_sided_confidence(second_won, 8) and not one_sided_confidence(first_won, 8)


def test_split_by_post_keeps_every_post_on_one_side_whatever_the_file_order():
    from rlaif.data.splits import split_by_post

    rows = [{"id": f"{p}-{k}", "post_id": p} for p in "abcdefghij" for k in range(1 + (ord(p) % 3))]
    train, heldout, held = split_by_post(rows, 0.3, seed=0)
    assert len(held) == 3 and {r["post_id"] for r in heldout} == held
    assert not held & {r["post_id"] for r in train} and len(train) + len(heldout) == len(rows)
    shuffled = list(reversed(rows))
    _, heldout_again, held_again = split_by_post(shuffled, 0.3, seed=0)
    assert held_again == held and sorted(r["id"] for r in heldout_again) == sorted(r["id"] for r in heldout)
    assert split_by_post(rows, 0.3, seed=1)[2] != held  # the seed picks other posts
    assert split_by_post(rows, 1.0, seed=0)[0] == []


@needs_batch13
def test_real_batch13_rows_read_as_strengths():
    ds = load_comparisons([DatasetConfig(path=str(BATCH13))])
    raw = [json.loads(line) for line in BATCH13.read_text().splitlines()]
    assert len(ds) == len(raw) == 1097 and len(set(ds["post_id"])) == 905
    for row, source in zip(ds, raw):
        c = source["extra"]["confidence"]
        assert row["strength"] == abs(c - 5) and row["choice"] == source["choice"]
        assert row["chosen"] == source["summaries"][source["choice"]]["text"].strip()
    high = [r for r in ds if r["strength"] >= 3]
    assert len(high) == 549  # confidence <= 2 or >= 8
    seed_filter = [r for r in ds if r["confidence"] >= 8]
    assert len(seed_filter) == 238 and {r["choice"] for r in seed_filter} == {1}  # one-sided


@needs_batch13
def test_a_judge_that_always_prefers_the_second_summary_scores_its_real_rate_on_high_confidence_rows():
    """The acceptance check of the confidence fix: on the symmetric high-confidence set such a judge
    scores how often summaries[1] really won there (about half), not the 1.0 of the seed's filter."""
    from rlaif.evaluation.agreement import agreement_on_comparisons

    rows = list(load_comparisons([DatasetConfig(path=str(BATCH13))]))
    p_chosen = [1.0 if r["choice"] == 1 else 0.0 for r in rows]  # P(the chosen one) when it always picks summaries[1]
    m = agreement_on_comparisons(rows, p_chosen, 3, 8, 10, 200, 0)
    high = m["subsets"]["high_confidence"]["accuracy"]
    assert high["n"] == 549 and high["value"] == pytest.approx(238 / 549)  # 0.434
    assert m["subsets"]["one_sided"]["accuracy"]["value"] == 1.0  # the seed's filter: a perfect score
    assert m["accuracy"]["value"] == pytest.approx(473 / 1097)
