"""Stage report on a partial tiny run: what ran is shown, what did not is marked "not run", the HTML
is self-contained, a judge without signal is flagged, and Chromium decodes every embedded figure."""

from __future__ import annotations

import json
import re

import pytest

from rlaif import pipeline
from rlaif.artifacts import RunDir
from rlaif.stages import run_stage
from tests.conftest import needs_shared_data
from tests.labelers.fake_openai_server import FakeOpenAIServer
from tests.report_browser import rendered_images
from tests.stages.eval_upstream import eval_file, fake_judge_overrides, make_eval_upstream

pytestmark = needs_shared_data


def test_report_of_a_partial_run(tiny_config, tmp_path):
    with FakeOpenAIServer() as server:
        cfg = tiny_config(f"data.eval=[{{path: {eval_file(tmp_path)}}}]", *fake_judge_overrides(server))
        rundir = make_eval_upstream(cfg)
        run_stage(pipeline.stage("evaluate"), cfg)
    assert run_stage(pipeline.stage("report"), cfg)
    d = rundir.stage_dir("report")
    md, page = (d / "report.md").read_text(), (d / "report.html").read_text()
    # stages that never ran are marked, never filled in
    for stage in ("pairs", "label"):
        assert f"*stage {stage}: not run.*" in md
    assert "labeler alignment with human comparisons: not run" in md
    assert "rl/metrics.jsonl is absent or empty." in md  # rl was registered without training curves
    # the headline: win rates with CIs, the judge's position bias, and the judge-free checks
    assert re.search(r"\| SFT vs human reference \| 0\.000 \| \[0\.000, 0\.000\] \|", md)
    assert "judge: verdict flips when the order is swapped" in md and "ROUGE-L vs reference" in md
    assert "| AI labeler | stage label not run |" in md
    assert "carry no evidence" not in md  # this judge is consistent and separates the reference
    # self-contained: figures are data URIs, nothing is fetched
    assert 'src="data:image/png;base64,' in page and not re.search(r'(src|href)="(http|plots/)', page)
    assert (d / "plots" / "win_rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![win rates with 95% confidence intervals](plots/win_rates.png)" in md
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["figures"] == ["win_rates"] and "evaluate" in metrics["stages_shown"]
    images = rendered_images(d / "report.html", tmp_path)
    assert [i["figure"] for i in images] == ["win_rates"] and all(i["width"] > 0 and i["height"] > 0 for i in images)


def test_report_flags_a_judge_without_signal(tiny_config, tmp_path):
    cfg = tiny_config(f"data.eval=[{{path: {eval_file(tmp_path)}}}]", "evaluate.comparisons=[rl:sft, sft:reference]")
    make_eval_upstream(cfg)
    run_stage(pipeline.stage("evaluate"), cfg)  # the tiny-random judge: every order undecided
    run_stage(pipeline.stage("report"), cfg)
    md = (RunDir(cfg).stage_dir("report") / "report.md").read_text()
    assert "> **Warning:** These win rates carry no evidence of a difference" in md
    assert "the judge never gave a usable answer in both orders" in md
    assert "every 95% interval contains 50%" in md


def test_report_reruns_when_an_upstream_stage_reruns(tiny_config, tmp_path):
    cfg = tiny_config(f"data.eval=[{{path: {eval_file(tmp_path)}}}]", "evaluate.comparisons=[sft:reference]")
    make_eval_upstream(cfg)
    assert run_stage(pipeline.stage("report"), cfg)  # evaluate not run yet: shown as such
    md = (RunDir(cfg).stage_dir("report") / "report.md").read_text()
    assert "*stage evaluate: not run.*" in md
    assert not run_stage(pipeline.stage("report"), cfg)  # nothing new: skipped
    run_stage(pipeline.stage("evaluate"), cfg)
    assert run_stage(pipeline.stage("report"), cfg)  # evaluate finished since: stale
    run_stage(pipeline.stage("evaluate"), cfg, force=True)  # same settings, new run
    assert run_stage(pipeline.stage("report"), cfg)
    assert "*stage evaluate: not run.*" not in (RunDir(cfg).stage_dir("report") / "report.md").read_text()


@pytest.mark.parametrize(
    "key, panel",
    [
        ("objective/scores", "reward"),
        ("objective/rlhf_reward", "reward"),
        ("objective/kl", "KL"),
        ("response/length", "length"),
        ("objective/non_score_reward", "KL"),
        ("loss/policy", None),
        ("policy/approxkl", None),
        ("response/eos_rate", None),
    ],
)
def test_rl_panel_of_each_metric(key, panel):
    from rlaif.report.sections import rl_panel

    assert rl_panel(key) == panel
