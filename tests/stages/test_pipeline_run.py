"""`rlaif run` on the tiny preset: a run killed mid-way resumes without redoing finished stages, an
unchanged rerun does nothing, and a changed setting reruns its stage and everything downstream only.
Which stages ran is read from the manifest: each finished run of a stage gets a new run_id."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlaif.cli import main
from tests.conftest import REPO, needs_shared_data
from tests.report_browser import rendered_images

pytestmark = [needs_shared_data, pytest.mark.slow]
ALL = ["sft", "pairs", "label", "reward", "rl", "reward_rlhf", "rl_rlhf", "evaluate", "report"]


def stages(run: Path) -> dict:
    path = run / "manifest.json"
    return json.loads(path.read_text())["stages"] if path.exists() else {}


def run_ids(run: Path) -> dict[str, str]:
    return {name: e.get("run_id") for name, e in stages(run).items()}


def rlaif_run(run: Path, *overrides: str) -> None:
    args = ["run", "configs/tiny.yaml", "--set", f"output_dir={run}"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """A tiny `rlaif run` in a subprocess, SIGKILLed while the reward stage runs, then rerun to the end."""
    run = tmp_path_factory.mktemp("pipeline") / "run"
    cmd = [sys.executable, "-m", "rlaif.cli", "run", "configs/tiny.yaml", "--set", f"output_dir={run}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        while stages(run).get("reward", {}).get("status") != "running":
            assert proc.poll() is None, "the run ended before the reward stage started"
            assert time.time() < deadline, "the reward stage never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no chance to record anything: as after a power cut
    finally:
        proc.wait()
    at_kill = stages(run)
    old = os.getcwd()
    os.chdir(REPO)
    try:
        rlaif_run(run)
    finally:
        os.chdir(old)
    return run, at_kill


def test_killed_run_resumes_without_redoing_finished_stages(killed_and_resumed):
    run, at_kill = killed_and_resumed
    assert [s for s in ("sft", "pairs", "label") if at_kill[s]["status"] == "done"] == ["sft", "pairs", "label"]
    assert at_kill["reward"]["status"] == "running" and "evaluate" not in at_kill
    after = stages(run)
    assert all(after[s]["status"] == "done" for s in ALL)
    for s in ("sft", "pairs", "label"):  # finished before the kill: skipped, not redone
        assert after[s]["run_id"] == at_kill[s]["run_id"] and after[s]["attempts"] == 1
    assert after["reward"]["attempts"] == 2  # the interrupted stage ran again, with the same fingerprint
    assert after["reward"]["fingerprint"] == at_kill["reward"]["fingerprint"]
    assert (run / "report" / "report.html").is_file() and (run / "eval" / "metrics.json").is_file()


def test_evaluate_reuses_the_greedy_summaries_the_rl_stages_wrote(killed_and_resumed):
    """tiny: rl.response_length == evaluate.max_new_tokens and the RL held-out posts are data.eval,
    so evaluate generates nothing itself [E09]."""
    run, _ = killed_and_resumed
    expected = {"sft": "rl/heldout.jsonl", "rl": "rl/heldout.jsonl", "rl_rlhf": "rl_rlhf/heldout.jsonl"}
    for system, source in expected.items():
        rows = [
            json.loads(line) for line in (run / "eval" / "generations" / f"{system}.jsonl").read_text().splitlines()
        ]
        assert len(rows) == 4 and {r.get("from") for r in rows} == {source}, system
    heldout = {
        json.loads(line)["id"]: json.loads(line) for line in (run / "rl" / "heldout.jsonl").read_text().splitlines()
    }
    rl_rows = [json.loads(line) for line in (run / "eval" / "generations" / "rl.jsonl").read_text().splitlines()]
    assert all(r["summary"] == heldout[r["id"]]["policy"]["summary"] for r in rl_rows)
    assert stages(run)["label_alignment"]["status"] == "done"  # `rlaif run` measures the labeler's alignment too


def test_rerun_skips_everything_and_kl_coef_reruns_only_downstream(killed_and_resumed, tmp_path):
    src, _ = killed_and_resumed
    run = tmp_path / "run"
    shutil.copytree(src, run)  # the shared run stays as the first test left it
    before = run_ids(run)
    rlaif_run(run)
    assert run_ids(run) == before  # nothing changed: nothing ran
    rlaif_run(run, "rl.kl_coef=0.2")
    after = run_ids(run)
    ran = sorted(s for s in ALL if after[s] != before[s])
    assert ran == sorted(["rl", "rl_rlhf", "evaluate", "report"])
    assert stages(run)["rl"]["status"] == "done"


def test_deleted_output_makes_its_stage_rerun(killed_and_resumed, tmp_path):
    src, _ = killed_and_resumed
    run = tmp_path / "run"
    shutil.copytree(src, run)
    before = run_ids(run)
    shutil.rmtree(run / "report")  # an output recorded in the manifest is gone
    rlaif_run(run)
    after = run_ids(run)
    assert [s for s in ALL if after[s] != before[s]] == ["report"]


def test_full_report_shows_every_stage_and_its_figures_render(killed_and_resumed, tmp_path):
    run, _ = killed_and_resumed
    d = run / "report"
    expected = {
        "sft_loss",
        "label_position_confidence",
        "reward_calibration",
        "reward_rlhf_calibration",
        "rl_curves",
        "rl_rlhf_curves",
        "win_rates",
    }
    assert set(json.loads((d / "metrics.json").read_text())["figures"]) == expected
    md = (d / "report.md").read_text()
    assert "not run." not in md.replace("labeler alignment with human comparisons: not run", "")
    images = rendered_images(d / "report.html", tmp_path)
    assert {i["figure"] for i in images} == expected
    assert all(i["width"] > 100 and i["height"] > 100 for i in images), images


def test_report_sets_every_judge_against_people_and_each_policy_against_sft_per_post(killed_and_resumed):
    """[H03] the labeler and both reward models on the same held-out human comparisons, beside the
    length baseline and chance; [E10] each policy's verdict from the paired per-post difference."""
    run, _ = killed_and_resumed
    labeler = json.loads((run / "label_alignment" / "metrics.json").read_text())["human_heldout"]
    blocks = [labeler["agreement_with_people"]] + [
        json.loads((run / rm / "metrics.json").read_text())["agreement_with_people"] for rm in ("reward", "reward_rlhf")
    ]
    assert len({b["rows_id"] for b in blocks}) == 1 and {b["rows"] for b in blocks} == {8}
    md = (run / "report" / "report.md").read_text()
    section = md[md.index("## Agreement with people") : md.index("## Stages and timings")]
    for row in (
        "| AI labeler (tiny-random) |",
        "| reward model `reward` (RLAIF: AI labels) |",
        "| reward model `reward_rlhf` (RLHF proxy: reference preferred) |",
        "| length baseline: the longer summary wins |",
        "| chance |",
    ):
        assert row in section, row
    assert "measured on other rows" not in section and "score std" in section
    # human.labeler_max_heldout: the labeler alone on 12 rows, the shared 8 first
    wide = labeler["agreement_on_labeler_rows"]
    assert wide["rows"] == 12 and wide["rows_id"] != blocks[0]["rows_id"]
    assert wide["all_rows"]["length_baseline"]["n"] == 12 and "position_bias" in wide
    assert "AI labeler (tiny-random) on 12 held-out comparisons" in section
    versus = json.loads((run / "eval" / "metrics.json").read_text())["versus_sft"]
    assert set(versus) == {"rl", "rl_rlhf"}
    assert set(versus["rl"]) == {"n", "rm_score/reward", "rm_score/reward_rlhf", "rouge_l"}
    assert md.count("paired 95% CI") == 4  # each policy: its own reward model and ROUGE-L
