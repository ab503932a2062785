"""Stage sft on the tiny preset: outputs, skip when fresh, resume after a kill, and 2 processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from rlaif import pipeline
from rlaif.artifacts import RunDir
from rlaif.cli import main
from rlaif.stages import run_stage
from tests.conftest import REPO, needs_shared_data

pytestmark = needs_shared_data


def rlaif_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rlaif.cli", *args]


def test_tiny_sft_trains_saves_and_skips_when_fresh(tiny_config):
    cfg = tiny_config()
    assert run_stage(pipeline.stage("sft"), cfg) is True
    out = cfg.run_dir / "sft"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_loss", "eval_loss_before", "eval_loss_after", "train_seconds", "examples"):
        assert key in metrics
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert (out / "model" / "model.safetensors").exists()
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert model.config.pad_token_id != model.config.eos_token_id
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == cfg.sft.num_samples and {"prompt", "reference", "generated"} <= set(samples[0])
    entry = RunDir(cfg).entry("sft")
    assert entry["status"] == "done" and entry["seconds"] > 0 and entry["fingerprint"]
    assert run_stage(pipeline.stage("sft"), cfg) is False  # same settings, same data: nothing to do
    assert run_stage(pipeline.stage("sft"), tiny_config("sft.learning_rate=0.002")) is True  # changed: reruns


def test_killed_sft_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    args = [
        "sft",
        "configs/tiny.yaml",
        f"--set=output_dir={run}",
        "--set=sft.max_steps=30",
        "--set=sft.save_steps=3",
        "--set=sft.eval_steps=100",
        "--set=sft.save_total_limit=5",
    ]
    proc = subprocess.Popen(
        rlaif_cmd(*args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    checkpoints = run / "sft" / "checkpoints"
    deadline = time.time() + 240
    while not (checkpoints / "checkpoint-6").exists():
        assert proc.poll() is None, "sft finished or died before it could be killed"
        assert time.time() < deadline, "no checkpoint-6 after 240 s"
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint finish writing... or not: a torn checkpoint must not break resume
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["sft"]["status"] == "running"  # killed, not finished

    done = subprocess.run(rlaif_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout
    metrics = json.loads((run / "sft" / "metrics.json").read_text())
    assert metrics["global_steps"] == 30
    resumed_step = int(Path(metrics["resumed_from_checkpoint"]).name.split("-")[1])
    assert resumed_step >= 6
    manifest = json.loads((run / "manifest.json").read_text())["stages"]["sft"]
    assert manifest["status"] == "done" and manifest["attempts"] == 2


@pytest.mark.slow
def test_sft_under_accelerate_with_two_processes_saves_once(tmp_path):
    run = tmp_path / "run"
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "rlaif.cli",
        "sft",
        "configs/tiny.yaml",
        f"--set=output_dir={run}",
        "--set=sft.max_steps=4",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run / "sft" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["global_steps"] == 4
    saved = sorted(p.name for p in (run / "sft" / "model").iterdir())
    assert saved.count("model.safetensors") == 1 and not any(name.endswith(".tmp") for name in saved)
    AutoModelForCausalLM.from_pretrained(run / "sft" / "model")


def test_cli_reports_user_errors_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft:\n  learnign_rate: 1\n")
    assert main(["sft", str(bad)]) == 2
    assert "rlaif: error: unknown config key sft.learnign_rate" in capsys.readouterr().err
