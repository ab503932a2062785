"""Stages `rloo` and `grpo` on the tiny preset: outputs (no critic, snapshots), kill + resume ==
uninterrupted, two processes, the RLHF arm, and the frontier stage drawing their snapshots."""

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
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rlaif.cli import main
from rlaif.config import load_config

from .rl_upstream import make_upstream, stage_device_type
from .test_rl import CONFIG, DATA, REPO, metric_rows

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"real TL;DR posts not found at {DATA}")
ALGORITHMS = ["rloo", "grpo"]


def section(algorithm: str, **settings) -> str:
    """`--set` value of a rloo / grpo section: the tiny preset's rl settings with 2 prompts x 2 samples
    per step (4 episodes, as PPO's 4 prompts), and `settings` on top."""
    raw = yaml.safe_load(Path(CONFIG).read_text())["rl"]
    raw.update(group_size=2, rollout_batch_size=2, **settings)
    return f"{algorithm}=" + yaml.safe_dump(raw, default_flow_style=True, width=10**6).strip()


def setup_run(tmp_path: Path, algorithm: str, *overrides: str, reward_stages=("reward",), **settings) -> list[str]:
    args = [f"output_dir={tmp_path / 'run'}", "rl=null", section(algorithm, **settings), *overrides]
    make_upstream(load_config(CONFIG, args), reward_stages)
    return [x for a in args for x in ("--set", a)]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_stage_outputs_without_a_critic(tmp_path, algorithm):
    extra = {"dr_grpo": True} if algorithm == "grpo" else {}
    sets = setup_run(tmp_path, algorithm, snapshots=2, **extra)
    assert main([algorithm, CONFIG, *sets]) == 0
    run = tmp_path / "run"
    out = run / algorithm
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["algorithm"] == algorithm and metrics["group_size"] == 2 and metrics["mode"] == "lean"
    assert metrics["steps"] == 4 and metrics["episodes"] == 16
    assert metrics.get("dr_grpo", False) == (algorithm == "grpo")
    assert "heldout/kl_to_sft" in metrics and (out / "heldout.jsonl").read_text().count("\n") == 4
    rows = metric_rows(run, algorithm)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("objective/scores", "objective/kl", "objective/rlhf_reward", "objective/group_score_std",
                "policy/entropy", "policy/clipfrac", "policy/approxkl", "loss/policy", "response/length"):  # fmt: skip
        assert all(key in r for r in rows), key
    assert not any(k.startswith("val/") or k == "loss/value" for r in rows for k in r)  # no critic
    assert all(("loss/kl" in r) == (algorithm == "grpo") for r in rows)
    assert (
        not (out / "adapter" / "value_head.safetensors").exists() and (out / "adapter" / "adapter_config.json").exists()
    )
    assert sorted(p.name for p in (out / "trajectory").iterdir()) == ["step-2", "step-4"]  # LoRA: adapters
    assert (out / "trajectory" / "step-4" / "adapter_config.json").exists()
    assert not (out / "checkpoints").exists()
    AutoModelForCausalLM.from_pretrained(out / "model")
    assert json.loads((run / "manifest.json").read_text())["stages"][algorithm]["status"] == "done"


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, algorithm):
    """SIGKILL right after the first checkpoint, rerun: same metrics and bit-identical weights."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    settings = {"total_episodes": 32, "heldout_posts": 0}  # 8 steps, checkpoints every 2

    def command(sets):
        return [sys.executable, "-m", "rlaif.cli", algorithm, CONFIG, *sets]

    full = setup_run(tmp_path / "a", algorithm, **settings)
    subprocess.run(command(full), cwd=REPO, env=env, check=True, capture_output=True)

    killed = setup_run(tmp_path / "b", algorithm, **settings)
    run_b = tmp_path / "b" / "run"
    proc = subprocess.Popen(command(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (run_b / algorithm / "checkpoints" / "step-2" / "state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_b / algorithm / "model").exists(), "the run finished before it could be killed"
    subprocess.run(command(killed), cwd=REPO, env=env, check=True, capture_output=True)

    assert json.loads((run_b / algorithm / "metrics.json").read_text())["resumed_after_step"] in (2, 4, 6)
    assert metric_rows(run_b, algorithm) == metric_rows(tmp_path / "a" / "run", algorithm)
    weights_a = load_file(tmp_path / "a" / "run" / algorithm / "model" / "model.safetensors")
    weights_b = load_file(run_b / algorithm / "model" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_processes(tmp_path, algorithm):
    if shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("accelerate launcher not installed")
    if stage_device_type() == "cuda" and torch.cuda.device_count() < 2:
        pytest.skip("two processes on CUDA need two GPUs (each process takes cuda:LOCAL_RANK)")
    sets = setup_run(tmp_path, algorithm, heldout_posts=2, snapshots=1)
    launcher = str(Path(sys.executable).parent / "accelerate")
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "-m", "rlaif.cli", algorithm, CONFIG, *sets]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    metrics = json.loads((run / algorithm / "metrics.json").read_text())
    # 2 processes x 2 prompts x 2 samples = 8 episodes per step
    assert metrics["processes"] == 2 and metrics["steps"] == 2 and metrics["episodes"] == 16
    assert [r["step"] for r in metric_rows(run, algorithm)] == [1, 2]  # one writer
    assert proc.stdout.count(f"[rlaif] {algorithm}:") == 1
    assert (run / algorithm / "heldout.jsonl").read_text().count("\n") == 2
    assert [p.name for p in (run / algorithm / "trajectory").iterdir()] == ["step-2"]
    AutoModelForCausalLM.from_pretrained(run / algorithm / "model")


def test_rlhf_arm_reads_its_own_reward_model(tmp_path):
    sets = setup_run(
        tmp_path,
        "rloo",
        "reward_rlhf.source=reference_preferred",
        "data.reference_posts=[{path: ../shared/data/tldr/openai_tldr_30.jsonl}]",
        reward_stages=("reward", "reward_rlhf"),
        total_episodes=4,
        heldout_posts=0,
        mode="standard",
    )
    assert main(["rloo", CONFIG, *sets, "--arm", "rlhf"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    assert manifest["rloo_rlhf"]["status"] == "done" and manifest["rloo_rlhf"]["upstream"] == ["sft", "reward_rlhf"]
    assert "rloo" not in manifest
    metrics = json.loads((tmp_path / "run" / "rloo_rlhf" / "metrics.json").read_text())
    assert metrics["mode"] == "standard" and metrics["steps"] == 1


@pytest.mark.slow
def test_frontier_draws_rl_snapshots(tmp_path):
    """The frontier stage samples each RLOO snapshot (both arms') and scores it by both arms' reward models."""
    frontier = "frontier={posts: 3, max_new_tokens: 12, batch_size: 3, bootstrap_samples: 50}"
    sets = setup_run(tmp_path, "rloo", frontier, reward_stages=("reward", "reward_rlhf"), snapshots=2,
                     heldout_posts=0)  # fmt: skip
    assert main(["rloo", CONFIG, *sets]) == 0
    assert main(["rloo", CONFIG, *sets, "--arm", "rlhf"]) == 0
    assert main(["frontier", CONFIG, *sets]) == 0
    metrics = json.loads((tmp_path / "run" / "frontier" / "metrics.json").read_text())
    assert metrics["methods"]["rloo"] == {"label": "RLOO (RLAIF)", "own_rm": "reward", "other_rm": "reward_rlhf",
                                          "kind": "trajectory"}  # fmt: skip
    points = {(p["stage"], p["step"]): p for p in metrics["points"]}
    assert set(points) == {("sft", 0), ("rloo", 2), ("rloo", 4), ("rloo_rlhf", 2), ("rloo_rlhf", 4)}
    assert metrics["methods"]["rloo_rlhf"]["own_rm"] == "reward_rlhf"
    assert set(points[("rloo", 4)]["scores"]) == {"reward", "reward_rlhf"} and points[("rloo", 4)]["posts"] == 3
