"""Stages pairs and label on the tiny preset: outputs, metrics, resume after a kill, --eval-alignment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from rlaif.artifacts import RunDir
from rlaif.cli import main
from rlaif.config import load_config
from rlaif.labelers.prompts import make_prompt
from rlaif.models import embedded_folder
from tests.conftest import REPO, needs_shared_data
from tests.labelers.fake_openai_server import FakeOpenAIServer

pytestmark = needs_shared_data
CONFIG = "configs/tiny.yaml"
PAIR_FIELDS = {"id", "prompt", "post", "summary_a", "summary_b", "a_ended_with_eos", "b_ended_with_eos", "generation"}
LABEL_FIELDS = {"id", "prompt", "summary_a", "summary_b", "p_a", "undecided", "orders", "backend", "model", "prompt_id"}


def sets(run, *overrides: str) -> list[str]:
    return [x for o in (f"output_dir={run}", *overrides) for x in ("--set", o)]


def read(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


@pytest.fixture
def run_with_sft(tmp_path):
    """A run folder whose sft stage is done, with tiny-random standing in for the SFT model."""
    run = tmp_path / "run"
    rundir = RunDir(load_config(CONFIG, [f"output_dir={run}"]))
    out = rundir.begin("sft", rundir.cfg.sft)
    shutil.copytree(embedded_folder("tiny-random"), out.dir / "model")
    rundir.finish(out, {})
    return run


def test_pairs_then_label_write_records_and_metrics(run_with_sft, capsys):
    run = run_with_sft
    assert main(["pairs", CONFIG, *sets(run)]) == 0
    pairs = read(run / "pairs" / "pairs.jsonl")
    assert len(pairs) == 8 and len({p["id"] for p in pairs}) == 8 and set(pairs[0]) == PAIR_FIELDS
    assert pairs[0]["prompt"].endswith("TL;DR:") and pairs[0]["post"] in pairs[0]["prompt"]
    assert pairs[0]["generation"] == {"model": "sft/model", "temperature": 1.0, "max_new_tokens": 12, "seed": 0}
    assert pairs[4]["generation"]["seed"] == 4  # batch seeds follow the pool index, not the run history
    pm = json.loads((run / "pairs" / "metrics.json").read_text())
    assert pm["pairs"] == 8 and pm["prompt_pool"] == 16 and pm["pool_left_for_rl"] == 8

    assert main(["label", CONFIG, *sets(run)]) == 0
    labels = read(run / "labels" / "labels.jsonl")
    assert [r["id"] for r in labels] == [p["id"] for p in pairs] and set(labels[0]) == LABEL_FIELDS
    for r in labels:  # tiny-random never answers 1/2: undecided, kept at 0.5 by the tiny preset
        assert r["undecided"] and r["p_a"] == 0.5 and [o["order"] for o in r["orders"]] == ["ab", "ba"]
        assert r["orders"][0]["rationale"] is not None and r["orders"][0]["error"].startswith("undecided")
    prompt_id = make_prompt("summarize", "cot", 8).prompt_id  # the name and a hash of the text [L09]
    assert prompt_id.startswith("summarize-cot-0shot-")
    assert (labels[0]["backend"], labels[0]["model"], labels[0]["prompt_id"]) == ("hf_local", "tiny-random", prompt_id)
    assert read(run / "labels" / "prompts.jsonl") == [make_prompt("summarize", "cot", 8).record()]
    m = json.loads((run / "labels" / "metrics.json").read_text())
    for key in ("pairs", "undecided_rate", "position_bias", "mean_confidence", "seconds", "pairs_per_minute", "failed"):
        assert key in m, key
    assert m["pairs"] == 8 and m["undecided_rate"] == 1.0 and m["failed"] == 0

    capsys.readouterr()
    assert main(["label", CONFIG, *sets(run)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_pairs_resume_after_a_kill_keeps_done_rows(run_with_sft):
    run = run_with_sft
    assert main(["pairs", CONFIG, *sets(run)]) == 0
    path = run / "pairs" / "pairs.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    # What a kill mid-write leaves: 3 whole rows, half a row, the stage still marked running.
    path.write_text("".join(lines[:3]) + lines[3][:40])
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["pairs"]["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert main(["pairs", CONFIG, *sets(run)]) == 0
    rows = read(path)
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    assert [json.loads(line) for line in lines[:3]] == rows[:3]
    assert json.loads((run / "pairs" / "metrics.json").read_text())["sampled_now"] == 5


@pytest.mark.slow
def test_label_killed_mid_run_resumes_without_loss_or_duplicates(run_with_sft):
    run = run_with_sft
    assert main(["pairs", CONFIG, *sets(run)]) == 0
    labels = run / "labels" / "labels.jsonl"
    with FakeOpenAIServer(delay_s=0.15) as server:  # slow enough to kill between two judge calls
        http = (
            "label.labeler.backend=openai_api",
            f"label.labeler.api.base_url={server.base_url}",
            "label.labeler.model=judge",
            "label.labeler.api.concurrency=1",
        )
        cmd = [sys.executable, "-m", "rlaif.cli", "label", CONFIG, *sets(run, *http)]
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
        )
        deadline = time.time() + 120
        while time.time() < deadline and not (labels.exists() and labels.read_text().count("\n") >= 1):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = read(labels)
        assert 1 <= len(before) < 8, "the kill should land between the first and the last judge call"
        server.delay_s = 0.0
        assert main(["label", CONFIG, *sets(run, *http)]) == 0
    after = read(labels)
    assert len(after) == 8 and len({r["id"] for r in after}) == 8
    assert after[: len(before)] == before
    assert json.loads((run / "labels" / "metrics.json").read_text())["resumed"] is True


def test_eval_alignment_reports_agreement_per_task(tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            ["label", CONFIG, "--eval-alignment", *sets(run, "label.alignment_min_strength=3", "human.comparisons=[]")]
        )
        == 0
    )
    m = json.loads((run / "label_alignment" / "metrics.json").read_text())
    assert set(m) == {"summarize", "dialogue"}
    # fixture confidences 2, 9, 3, none, 7, 4 (strengths 3, 4, 2, none, 2, 1): two pass; HH has none, so none pass
    assert m["summarize"]["pairs"] == 2 and m["summarize"]["below_confidence"] == 4
    for task in m.values():
        assert "accuracy" in task["alignment_with_humans"] and "position_bias" in task
    records = read(run / "label_alignment" / "summarize.jsonl")
    assert {r["human_choice"] for r in records} <= {"a", "b"}
    assert records[0]["prompt_id"] == make_prompt("summarize", "cot", 8).prompt_id
