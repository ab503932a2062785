"""Stage `rl` on the tiny preset: outputs, kill + resume == uninterrupted, two processes, the RLHF arm."""

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
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rlaif.cli import main
from rlaif.config import load_config
from rlaif.labelers.rating import rescale
from tests.labelers.fake_openai_server import AFTER_ONE, RATING_OTHER, FakeOpenAIServer
from tests.labelers.test_rating import expected_probs

from .rl_upstream import make_upstream, stage_device_type

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "tldr" / "sff_validation_posts_250.jsonl"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"real TL;DR posts not found at {DATA}")
CONFIG = str(REPO / "configs" / "tiny.yaml")


def setup_run(tmp_path: Path, *overrides: str, reward_stages=("reward",)) -> list[str]:
    args = [f"output_dir={tmp_path / 'run'}", *overrides]
    make_upstream(load_config(CONFIG, args), reward_stages)
    return [x for a in args for x in ("--set", a)]


def rl_command(sets: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "rlaif.cli", "rl", CONFIG, *sets, *extra]


def metric_rows(run: Path, stage: str = "rl") -> list[dict]:
    rows = [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_rl_stage_outputs(tmp_path):
    sets = setup_run(tmp_path)
    assert main(["rl", CONFIG, *sets]) == 0
    out = tmp_path / "run" / "rl"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["episodes"] == 16 and metrics["mode"] == "lean"
    rows = metric_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in (
        "objective/scores",
        "objective/kl",
        "objective/non_score_reward",
        "policy/entropy",
        "policy/clipfrac",
        "policy/approxkl",
        "loss/value",
        "val/clipfrac",
        "response/length",
        "response/eos_rate",
    ):
        assert all(key in r for r in rows), key
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2, 4} and all(s["response"] is not None for s in samples)
    assert not (out / "checkpoints").exists()  # removed once model/ is saved
    policy = AutoModelForCausalLM.from_pretrained(out / "model")  # merged: loads without peft
    assert (out / "adapter" / "adapter_config.json").exists()
    assert policy.config.vocab_size > 0
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["rl"]["status"] == "done"


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL right after the first checkpoint, rerun: same metrics and bit-identical weights."""
    steps = ["rl.total_episodes=32", "rl.heldout_posts=0"]  # 8 steps, checkpoints every 2
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    full = setup_run(tmp_path / "a", *steps)
    subprocess.run(rl_command(full), cwd=REPO, env=env, check=True, capture_output=True)

    killed = setup_run(tmp_path / "b", *steps)
    run_b = tmp_path / "b" / "run"
    proc = subprocess.Popen(rl_command(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (run_b / "rl" / "checkpoints" / "step-2" / "state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_b / "rl" / "model").exists(), "the run finished before it could be killed"
    subprocess.run(rl_command(killed), cwd=REPO, env=env, check=True, capture_output=True)

    metrics_b = json.loads((run_b / "rl" / "metrics.json").read_text())
    assert metrics_b["resumed_after_step"] in (2, 4)
    assert metric_rows(run_b) == metric_rows(tmp_path / "a" / "run")
    weights_a = load_file(tmp_path / "a" / "run" / "rl" / "model" / "model.safetensors")
    weights_b = load_file(run_b / "rl" / "model" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


@pytest.mark.slow
def test_two_processes_save_once(tmp_path):
    if shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("accelerate launcher not installed")
    if stage_device_type() == "cuda" and torch.cuda.device_count() < 2:
        pytest.skip("two processes on CUDA need two GPUs (each process takes cuda:LOCAL_RANK)")
    sets = setup_run(
        tmp_path, "rl.heldout_posts=2", "data.eval=[{path: ../shared/data/tldr/openai_tldr_30.jsonl, split: test}]"
    )
    launcher = str(Path(sys.executable).parent / "accelerate")
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "-m", "rlaif.cli", "rl", CONFIG, *sets]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    metrics = json.loads((run / "rl" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 2 and metrics["episodes"] == 16  # 2 x 4 prompts per step
    assert [r["step"] for r in metric_rows(run)] == [1, 2]  # one writer
    assert proc.stdout.count("[rlaif] rl:") == 1
    assert len(json.loads((run / "manifest.json").read_text())["stages"]["rl"]) > 0
    assert (run / "rl" / "heldout.jsonl").read_text().count("\n") == 2
    AutoModelForCausalLM.from_pretrained(run / "rl" / "model")


def test_rlhf_arm_reads_its_own_reward_model(tmp_path):
    sets = setup_run(
        tmp_path,
        "reward_rlhf.source=reference_preferred",
        "rl.total_episodes=4",
        "rl.heldout_posts=0",
        "data.reference_posts=[{path: ../shared/data/tldr/openai_tldr_30.jsonl}]",
        reward_stages=("reward", "reward_rlhf"),
    )
    assert main(["rl", CONFIG, *sets, "--arm", "rlhf"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    assert manifest["rl_rlhf"]["status"] == "done" and manifest["rl_rlhf"]["upstream"] == ["sft", "reward_rlhf"]
    assert "rl" not in manifest
    assert (tmp_path / "run" / "rl_rlhf" / "model" / "config.json").exists()


def test_direct_reward_needs_no_reward_model(tmp_path):
    sets = setup_run(
        tmp_path,
        "rl.reward_source=direct",
        "rl.total_episodes=8",
        "rl.heldout_posts=0",
        "rl.direct_labeler={backend: hf_local, model: tiny-random, batch_size: 4}",
        reward_stages=(),
    )
    assert main(["rl", CONFIG, *sets]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "manifest.json").read_text())["stages"]["rl"]["upstream"] == ["sft"]
    rows = metric_rows(run)
    assert len(rows) == 2 and all(-1.0 <= r["objective/raw_scores"] <= 1.0 for r in rows)


def test_direct_reward_on_the_openai_api_backend(tmp_path):
    """d-RLAIF with an HTTP labeler: the test server rates every response as a digit-by-digit model
    would (tests/labelers/fake_openai_server.py), so each rating takes two requests (the answer,
    then what follows `1`) and every score is the hand-computed one."""
    with FakeOpenAIServer() as server:
        labeler = f"{{backend: openai_api, model: judge-model, api: {{base_url: '{server.base_url}', endpoint: completions}}}}"
        sets = setup_run(
            tmp_path,
            "rl.reward_source=direct",
            "rl.total_episodes=8",
            "rl.heldout_posts=0",
            f"rl.direct_labeler={labeler}",
            reward_stages=(),
        )
        assert main(["rl", CONFIG, *sets]) == 0
    rows = metric_rows(tmp_path / "run")
    score = rescale(torch.tensor([expected_probs(RATING_OTHER, AFTER_ONE)])).item()  # -0.6: no response says GOOD
    assert len(rows) == 2 and all(r["objective/raw_scores"] == pytest.approx(score) for r in rows)
    prompts = [q["body"]["prompt"] for q in server.requests]
    assert len(prompts) == 16 and sum(p.endswith("Rating: 1") for p in prompts) == 8


def test_rl_prompts_are_the_pool_after_the_pairs_posts():
    from rlaif.data import DataError, load_posts
    from rlaif.models import load_tokenizer
    from rlaif.stages.rl import rl_prompts

    cfg = load_config(CONFIG, ["rl.prompts=[]", "pairs.num_posts=8"])
    tokenizer = load_tokenizer("tiny-random")
    pool, _ = load_posts(cfg.data.prompts)
    prompts = rl_prompts(cfg, tokenizer)
    assert [p["id"] for p in prompts] == pool["id"][8:]
    assert all(p["prompt"].endswith("TL;DR:") for p in prompts)
    with pytest.raises(DataError, match="none is left for RL"):
        rl_prompts(load_config(CONFIG, ["rl.prompts=[]", f"pairs.num_posts={len(pool)}"]), tokenizer)
