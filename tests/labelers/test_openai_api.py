"""The openai_api backend against a real HTTP server on 127.0.0.1 (tests/labelers/fake_openai_server.py):
parsing, order mapping, retries on injected faults, failure records, the API key's handling."""

from __future__ import annotations

import dataclasses

import pytest

from rlaif.config import ConfigError, LabelerSettings, OpenAIApiSettings
from rlaif.jsonl import AppendLog
from rlaif.labelers import make_labeler
from rlaif.labelers.annotate import annotate
from rlaif.labelers.prompts import make_prompt
from tests.labelers.fake_openai_server import FakeOpenAIServer

P_GOOD = 0.8 / 0.9  # the fake server's P(GOOD candidate) after renormalising over 1 and 2


def settings(server, **api) -> LabelerSettings:
    api = {"base_url": server.base_url, "timeout_s": 0.5, "max_retries": 3, "backoff_s": 0.01, "concurrency": 2, **api}
    return LabelerSettings(
        backend="openai_api", model="judge-model", max_rationale_tokens=16, api=OpenAIApiSettings(**api)
    )


def pairs(n: int, bad_ids=()) -> list[dict]:
    out = []
    for i in range(n):
        marker = "FAIL-ALWAYS " if i in bad_ids else ""
        good, bad = f"GOOD summary {i}", f"weak summary {i}"
        a, b = (good, bad) if i % 2 == 0 else (bad, good)
        out.append(
            {"id": f"p{i}", "prompt": f"POST: {marker}post number {i}\n\nTL;DR:", "summary_a": a, "summary_b": b}
        )
    return out


def label(labeler, rows, tmp_path, style="cot"):
    prompt = make_prompt("summarize", style, 16)
    with AppendLog(tmp_path / "labels.jsonl") as labels, AppendLog(tmp_path / "failures.jsonl") as failures:
        stats = annotate(rows, lambda p: p["prompt"], labeler, prompt, labels, failures, "drop")
        return labels.rows, failures.rows, stats


@pytest.mark.parametrize("endpoint,continue_final", [("chat", False), ("chat", True), ("completions", False)])
def test_labels_map_orders_back_to_a_and_b(tmp_path, endpoint, continue_final):
    with FakeOpenAIServer() as server:
        labeler = make_labeler(settings(server, endpoint=endpoint, continue_final_message=continue_final))
        records, failures, _ = label(labeler, pairs(4), tmp_path)
    assert failures == [] and [r["id"] for r in records] == ["p0", "p1", "p2", "p3"]
    for i, r in enumerate(records):
        # a is the GOOD one in even pairs: P(a > b) = P_GOOD, else 1 - P_GOOD
        expected = P_GOOD if i % 2 == 0 else 1 - P_GOOD
        assert r["p_a"] == pytest.approx(expected, abs=1e-9) and not r["undecided"]
        ab, ba = r["orders"]
        assert ab["raw_mass"] == pytest.approx(0.9) and ab["p_first"] + ab["p_second"] == pytest.approx(1.0)
        assert "more accurate" in ab["rationale"] and r["backend"] == "openai_api" and r["model"] == "judge-model"
    answer = [q for q in server.requests if q["body"].get("max_tokens") == 1]
    assert len(answer) == 8 and all(q["body"]["model"] == "judge-model" for q in server.requests)
    if endpoint == "chat":
        last = answer[0]["body"]["messages"][-1]
        if continue_final:  # the assistant turn is continued: rationale + cue inside it
            assert (
                last["role"] == "assistant"
                and last["content"].startswith("Rationale:")
                and last["content"].endswith("Preferred Summary=")
            )
            assert answer[0]["body"]["continue_final_message"] is True and answer[0]["body"]["top_logprobs"] == 20
        else:  # OpenAI: the rationale is the assistant's reply, the answer is asked in a new user turn
            assert last["role"] == "user" and "1 or 2" in last["content"]
    else:
        assert (
            answer[0]["body"]["prompt"].endswith("more accurate.\nPreferred Summary=")
            and answer[0]["body"]["logprobs"] == 20
        )


def test_transient_faults_are_retried_until_every_pair_is_labeled(tmp_path):
    with FakeOpenAIServer(stall_s=1.0) as server:
        server.faults.extend(["timeout", "429", "500", "drop", "badjson", "nologprobs"])
        # Faults land on whichever request comes next, so one request may meet all six in a row.
        # The base style asks every request for logprobs, so each fault (nologprobs too) bites.
        labeler = make_labeler(settings(server, max_retries=6))
        records, failures, stats = label(labeler, pairs(6), tmp_path, style="base")
    assert failures == [] and len(records) == 6 and stats["failed"] == 0
    assert labeler.stats["retries"] == 6 and labeler.stats["failed"] == 0
    assert all(r["p_a"] == pytest.approx(P_GOOD if i % 2 == 0 else 1 - P_GOOD) for i, r in enumerate(records))


def test_pairs_that_keep_failing_are_recorded_then_retried_by_a_rerun(tmp_path):
    rows = pairs(5, bad_ids={1, 3})
    with FakeOpenAIServer() as server:
        labeler = make_labeler(settings(server, max_retries=2))
        records, failures, stats = label(labeler, rows, tmp_path)
        assert {r["id"] for r in records} == {"p0", "p2", "p4"} and stats["failed"] == 2
        assert {f["id"] for f in failures} == {"p1", "p3"}
        error = failures[0]["orders"][0]["error"]
        assert error.startswith("failed:") and "HTTP 500" in error and "after 2 retries" in error
        # The server heals; a rerun labels exactly the failed pairs, nothing twice.
        healed = [dict(r, prompt=r["prompt"].replace("FAIL-ALWAYS ", "")) for r in rows]
        records, failures, stats = label(labeler, healed, tmp_path)
    ids = [r["id"] for r in records]
    assert sorted(ids) == ["p0", "p1", "p2", "p3", "p4"] and len(ids) == len(set(ids))
    assert stats == {**stats, "labeled_now": 2, "failed": 0}


def test_client_errors_are_not_retried(tmp_path):
    with FakeOpenAIServer() as server:
        labeler = make_labeler(settings(server, base_url=server.base_url + "/missing"))
        results = labeler.judge(make_prompt("summarize", "base", 0).pair_requests("post", "x", "y"))
    assert all(r.failed and "HTTP 404" in r.error for r in results)
    assert labeler.stats["retries"] == 0


def test_no_choice_token_is_undecided_not_failed(tmp_path):
    with FakeOpenAIServer() as server:
        labeler = make_labeler(settings(server))
        rows = [dict(pairs(1)[0], prompt="POST: NO-DIGITS here\n\nTL;DR:")]
        records, failures, _ = label(labeler, rows, tmp_path)
    assert failures == [] and records[0]["undecided"] and records[0]["p_a"] is None
    assert records[0]["orders"][0]["error"].startswith("undecided: neither choice token among the top 20")


def test_api_key_comes_from_the_named_variable_and_is_never_written(tmp_path, monkeypatch, capsys):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("JUDGE_KEY", secret)
    with FakeOpenAIServer() as server:
        server.faults.extend(["500", "500", "500", "500"])
        labeler = make_labeler(settings(server, api_key_env="JUDGE_KEY", max_retries=1))
        label(labeler, pairs(2), tmp_path)
    assert {q["authorization"] for q in server.requests} == {f"Bearer {secret}"}
    written = (tmp_path / "labels.jsonl").read_text() + (tmp_path / "failures.jsonl").read_text()
    out = capsys.readouterr()
    assert secret not in written + out.out + out.err + repr(labeler.__dict__.get("settings"))
    monkeypatch.delenv("JUDGE_KEY")
    with pytest.raises(ConfigError, match="JUDGE_KEY is not set"):
        make_labeler(dataclasses.replace(settings(server), api=OpenAIApiSettings(api_key_env="JUDGE_KEY")))


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_a_choice_outside_the_top_tokens_is_bounded_by_the_smallest_shown(tmp_path, endpoint):
    """The seed's rule (issue #11, item 8): `2` missing from the returned top tokens gets the last
    (smallest) returned probability, an upper bound, not 0; the label record says which choice."""
    with FakeOpenAIServer() as server:
        labeler = make_labeler(settings(server, endpoint=endpoint))
        rows = [dict(pairs(1)[0], prompt="POST: ONE-CHOICE here\n\nTL;DR:")]
        records, failures, _ = label(labeler, rows, tmp_path, style="base")
    ab, ba = records[0]["orders"]
    assert ab["p_first"] == pytest.approx(0.6 / 0.65) and ab["raw_mass"] == pytest.approx(0.65)
    assert ab["bounded"] == ["2"] and ba["bounded"] == ["2"] and not records[0]["undecided"]
