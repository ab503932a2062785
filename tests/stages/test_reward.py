"""Stages reward / reward_rlhf on the tiny preset: outputs, bias normalisation, eval-only, kill + resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from rlaif.artifacts import RunDir
from rlaif.cli import main
from rlaif.config import PipelineConfig, load_config
from rlaif.data import build_prompt, load_posts
from rlaif.models import embedded_folder, load_tokenizer
from rlaif.reward.data import reference_records
from rlaif.reward.model import load_reward_model, score
from tests.conftest import REPO, SHARED_DATA, needs_shared_data

pytestmark = needs_shared_data
CONFIG = "configs/tiny.yaml"
HH = SHARED_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"


@dataclass
class LabelFixture:
    """Stands in for the label stage's config section in the manifest."""

    made_by: str = "tests/stages/test_reward.py"


def make_upstream(cfg: PipelineConfig, n_labels: int = 16) -> RunDir:
    """sft/model = the tiny-random model; labels/labels.jsonl from real posts: the post's own
    TL;DR line against another post's (soft labels in both orders, one undecided row)."""
    rundir = RunDir(cfg)
    out = rundir.begin("sft", cfg.sft)
    shutil.copytree(embedded_folder("tiny-random"), out.dir / "model")
    rundir.finish(out, {})
    tokenizer = load_tokenizer(str(out.dir / "model"))
    posts, _ = load_posts(cfg.data.sft, require_summary=True)
    out = rundir.begin("label", LabelFixture(), upstream=("sft",))
    with open(out.dir / "labels.jsonl", "w") as fh:
        for i in range(n_labels):
            own, other = posts[i]["summary"], posts[i + 1]["summary"]
            a_is_own = i % 2 == 0
            p_own = (0.95, 0.8, 0.7)[i % 3]
            row = {
                "id": f"pair-{i}",
                "prompt": build_prompt(tokenizer, posts[i], cfg.data.max_prompt_tokens),
                "summary_a": own if a_is_own else other,
                "summary_b": other if a_is_own else own,
                "p_a": p_own if a_is_own else 1 - p_own,
                "undecided": False,
            }
            if i == n_labels - 1:
                row.update(p_a=None, undecided=True)
            fh.write(json.dumps(row) + "\n")
    rundir.finish(out, {})
    return rundir


def sets(run: Path, *overrides: str) -> list[str]:
    return [x for o in (f"output_dir={run}", *overrides) for x in ("--set", o)]


def test_reward_on_ai_labels_saves_a_normalised_model_and_evaluates_only_on_request(tmp_path):
    run = tmp_path / "run"
    cfg = load_config(CONFIG, [f"output_dir={run}"])
    make_upstream(cfg)
    assert main(["reward", CONFIG, *sets(run)]) == 0

    out = run / "reward"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy_ai_heldout", "train_loss", "examples", "seconds", "calibration", "reward_bias"):
        assert key in metrics, key
    assert metrics["undecided_dropped"] == 1 and metrics["examples"] + metrics["heldout_examples"] == 15
    assert metrics["global_steps"] == 6 and metrics["label_clamp"] == [0.4, 0.6]
    assert sum(row["count"] for row in metrics["calibration"]["heldout"]) == 2 * metrics["heldout_examples"]

    plain = AutoModelForSequenceClassification.from_pretrained(out / "model")  # a plain HF folder
    assert plain.config.num_labels == 1 and plain.config.reward_bias == metrics["reward_bias"]
    model, tokenizer = load_reward_model(str(out / "model"))
    refs = reference_records(cfg, tokenizer)[: cfg.reward.normalization_examples]
    scores = score(model, tokenizer, [r["prompt"] for r in refs], [r["reference"] for r in refs], batch_size=3)
    assert scores.shape == (len(refs),)
    assert scores.mean().item() == pytest.approx(0.0, abs=1e-4)  # [D19] references average 0
    raw = plain(
        **tokenizer([refs[0]["prompt"] + " " + refs[0]["reference"] + tokenizer.eos_token], return_tensors="pt")
    )
    assert raw.logits[0, 0].item() + metrics["reward_bias"] == pytest.approx(scores[0].item(), abs=1e-4)

    manifest = (run / "manifest.json").read_text()
    hh_eval = f"reward.eval_comparisons=[{{path: {HH}, limit: 8}}]"
    assert main(["reward", CONFIG, "--eval-only", *sets(run, hh_eval)]) == 0
    evaluated = json.loads((out / "eval_only_metrics.json").read_text())
    assert evaluated["human_pairs"] == 8 and 0.0 <= evaluated["accuracy_human"] <= 1.0
    assert (run / "manifest.json").read_text() == manifest  # eval-only trains nothing and records nothing


def test_reward_needs_labels_and_eval_only_needs_comparisons(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["reward", CONFIG, *sets(run)]) == 2
    assert "needs the output of 'sft'" in capsys.readouterr().err
    assert main(["reward", CONFIG, "--eval-only", *sets(run)]) == 2
    assert "reward.eval_comparisons: empty" in capsys.readouterr().err


def test_reference_preferred_arm_resumes_after_a_kill(tmp_path):
    run = tmp_path / "run"
    make_upstream(load_config(CONFIG, [f"output_dir={run}"]))
    args = [
        sys.executable,
        "-m",
        "rlaif.cli",
        "reward",
        CONFIG,
        "--arm",
        "rlhf",
        *sets(
            run,
            "reward_rlhf.max_steps=24",
            "reward_rlhf.save_steps=3",
            "reward_rlhf.eval_steps=100",
            "reward_rlhf.save_total_limit=5",
        ),
    ]
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    out = run / "reward_rlhf"
    deadline = time.time() + 240
    while not (out / "checkpoints" / "checkpoint-6").exists():
        assert proc.poll() is None, "reward_rlhf finished or died before it could be killed"
        assert time.time() < deadline, "no checkpoint-6 after 240 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # most likely while checkpoint-6 is being written: resume skips a torn one
    proc.wait()
    assert json.loads((run / "manifest.json").read_text())["stages"]["reward_rlhf"]["status"] == "running"

    samples_path = out / "reference_samples.jsonl"
    lines = samples_path.read_text().splitlines(keepends=True)
    assert len(lines) == 12
    samples_path.write_text("".join(lines[:9]) + lines[9][:25])  # as if killed while writing row 10

    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout
    rows = [json.loads(line) for line in samples_path.read_text().splitlines()]
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12  # no loss, no duplicates
    assert [json.loads(line) for line in lines[:9]] == rows[:9]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_steps"] == 24 and int(Path(metrics["resumed_from_checkpoint"]).name.split("-")[1]) >= 3
    assert metrics["source"] == "reference_preferred" and "PROXY" in metrics["source_note"]
    assert metrics["normalization_set"] == "data.reference_posts references"
    model, tokenizer = load_reward_model(str(out / "model"))
    assert torch.isfinite(score(model, tokenizer, [rows[0]["prompt"]], [rows[0]["sample"]])).all()
