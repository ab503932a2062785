"""Stages dpo, oaif and best_of_n (both arms) on the tiny preset: outputs, kill + resume == uninterrupted,
two processes, and `rlaif run` with the methods evaluated as systems and shown in the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rlaif.artifacts import RunDir
from rlaif.cli import main
from rlaif.config import load_config
from rlaif.jsonl import read_complete
from tests.conftest import REPO, SHARED_DATA, needs_shared_data

from .rl_upstream import make_upstream

pytestmark = needs_shared_data
CONFIG = str(REPO / "configs" / "tiny.yaml")
COMPARISONS = "{path: tests/fixtures/sff_comparisons_6.jsonl}"
DPO = "dpo={batch_size: 4, micro_batch_size: 2, learning_rate: 1.0e-3, max_response_tokens: 12, save_steps: 2, " \
      f"max_steps: 4, comparisons: [{COMPARISONS}]}}"  # fmt: skip
OAIF = "oaif={batch_size: 4, micro_batch_size: 2, learning_rate: 1.0e-3, total_prompts: 16, response_length: 12, " \
       "save_steps: 2, sample_steps: 2, undecided: half, lora: {enabled: true, r: 8}}"  # fmt: skip
BEST_OF_N = "best_of_n={n: 4, max_new_tokens: 12, sample_batch_size: 8}"  # 2 posts per sampling call
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def setup_run(tmp_path: Path, *overrides: str) -> list[str]:
    """sft/model, reward/model, reward_rlhf/model (tiny-random) and labels/labels.jsonl with decided labels."""
    args = [f"output_dir={tmp_path / 'run'}", *overrides]
    cfg = load_config(CONFIG, args)
    rundir = make_upstream(cfg, ("reward", "reward_rlhf"))
    out = rundir.begin("label", cfg.label)
    posts = [json.loads(line) for line in (SHARED_DATA / "tldr" / "openai_tldr_30.jsonl").read_text().splitlines()]
    rows = [
        {"id": f"l{i}", "prompt": f"POST: {p['post'][:300]}\n\nTL;DR:", "summary_a": p["summary"],
         "summary_b": "it is a post " * (1 + i % 3), "p_a": [0.9, 0.7, 0.2, None][i % 4], "undecided": i % 4 == 3}
        for i, p in enumerate(posts[:12])
    ]  # fmt: skip
    (out.dir / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rundir.finish(out, {})
    return [x for a in args for x in ("--set", a)]


def stage_rows(run: Path, folder: str, name: str = "metrics.jsonl") -> list[dict]:
    rows = [json.loads(line) for line in (run / folder / name).read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "labels/reused"} for r in rows]


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())["stages"]


def same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_dpo_both_arms(tmp_path):
    sets = setup_run(tmp_path, DPO, "dpo.arms=[rlaif, rlhf]", "dpo.max_steps=null", "dpo.num_epochs=2")
    assert main(["dpo", CONFIG, *sets]) == 0
    assert main(["dpo", CONFIG, *sets, "--arm", "rlhf", "--set", "dpo.lora={enabled: true, r: 8}"]) == 0
    run = tmp_path / "run"
    stages = manifest(run)
    assert stages["dpo"]["upstream"] == ["sft", "label"] and stages["dpo_rlhf"]["upstream"] == ["sft"]
    rlaif, rlhf = (json.loads((run / s / "metrics.json").read_text()) for s in ("dpo", "dpo_rlhf"))
    # 12 labels, 3 undecided left out -> 9 pairs x 2 epochs // 4 = 4 steps; 6 human comparisons -> 3 steps
    assert (rlaif["pairs"], rlaif["undecided_dropped"], rlaif["steps"], rlaif["source"]) == (9, 3, 4, "ai_labels")
    assert (rlhf["pairs"], rlhf["steps"], rlhf["source"], rlhf["lora"]) == (6, 3, "human", True)
    assert (run / "dpo" / "reference_logprobs.jsonl").read_text().count("\n") == 9
    assert [r["step"] for r in stage_rows(run, "dpo")] == [1, 2, 3, 4]
    human = stage_rows(run, "dpo_rlhf")
    assert human[0]["loss/dpo"] == pytest.approx(0.693147, abs=1e-5)  # policy == reference before the first step
    assert human[-1]["rewards/margins"] > 0 and human[-1]["loss/dpo"] < 0.69  # p = 1 pairs: the chosen side rises
    for stage in ("dpo", "dpo_rlhf"):
        assert not (run / stage / "checkpoints").exists()
        AutoModelForCausalLM.from_pretrained(run / stage / "model")  # merged: loads without peft
    assert (run / "dpo_rlhf" / "adapter" / "adapter_config.json").exists()
    # arms the section leaves out are refused with what to set
    assert main(["dpo", CONFIG, *sets, "--arm", "rlhf", "--set", "dpo.arms=[rlaif]"]) == 2


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None and time.time() < deadline, f"run ended before {what}"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def rerun_after_kill(
    tmp_path: Path, command: list[str], overrides: list[str], ready, what: str, on_kill=lambda run: None
) -> tuple[Path, Path]:
    """The same stage uninterrupted (run a) and, in a subprocess, SIGKILLed when `ready(run b)`, then rerun (run b);
    `on_kill(run b)` looks at what the kill left."""
    full = setup_run(tmp_path / "a", *overrides)
    assert main([*command, *full]) == 0  # in this process: the same numbers, without a second start-up
    killed = setup_run(tmp_path / "b", *overrides)
    run_b = tmp_path / "b" / "run"
    cmd = [sys.executable, "-m", "rlaif.cli", *command, *killed]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: ready(run_b), what)
    on_kill(run_b)
    subprocess.run(cmd, cwd=REPO, env=ENV, check=True, capture_output=True)
    return tmp_path / "a" / "run", run_b


@pytest.mark.slow
def test_dpo_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """Full fine-tuning, 24 steps, checkpoints every 2; SIGKILL after the first: same curve, same weights."""
    overrides = [DPO, "dpo.arms=[rlaif]", "dpo.max_steps=24"]
    run_a, run_b = rerun_after_kill(
        tmp_path, ["dpo", CONFIG], overrides,
        lambda run: (run / "dpo" / "checkpoints" / "step-2" / "state.json").exists(), "the first checkpoint",
    )  # fmt: skip
    metrics = json.loads((run_b / "dpo" / "metrics.json").read_text())
    assert metrics["resumed_after_step"] is not None and metrics["resumed_after_step"] < 24
    assert stage_rows(run_b, "dpo") == stage_rows(run_a, "dpo")
    assert (run_b / "dpo" / "reference_logprobs.jsonl").read_text() == (
        run_a / "dpo" / "reference_logprobs.jsonl"
    ).read_text()
    same_weights(run_a / "dpo" / "model", run_b / "dpo" / "model")


@pytest.mark.slow
def test_oaif_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """RLHF arm (the reward model picks, so every pair is decided and the weights move), LoRA; SIGKILL once
    a label past the first checkpoint is logged: same curve, labels and weights; those labels are reused."""
    overrides = [OAIF, "oaif.arms=[rlhf]", "oaif.total_prompts=48"]

    def ready(run: Path) -> bool:
        labels = run / "oaif_rlhf" / "labels.jsonl"
        return (
            (run / "oaif_rlhf" / "checkpoints" / "step-2").exists()
            and labels.exists()
            and '"step": 3' in labels.read_text()
        )

    at_kill: list[dict] = []

    def logged(run: Path) -> None:
        at_kill.extend(read_complete(run / "oaif_rlhf" / "labels.jsonl"))

    run_a, run_b = rerun_after_kill(
        tmp_path, ["oaif", CONFIG, "--arm", "rlhf"], overrides, ready, "step 3's labels", on_kill=logged
    )
    metrics = json.loads((run_b / "oaif_rlhf" / "metrics.json").read_text())
    resumed = metrics["resumed_after_step"]
    assert resumed is not None and resumed < 12
    assert stage_rows(run_b, "oaif_rlhf") == stage_rows(run_a, "oaif_rlhf")
    labels_a, labels_b = stage_rows(run_a, "oaif_rlhf", "labels.jsonl"), stage_rows(run_b, "oaif_rlhf", "labels.jsonl")
    assert sorted((r["step"], r["index"]) for r in labels_b) == [(s, i) for s in range(1, 13) for i in range(4)]
    key = lambda r: (r["step"], r["index"])  # noqa: E731
    assert sorted(labels_b, key=key) == sorted(labels_a, key=key)
    # every label logged after the checkpoint it resumed from was read back, not asked for again
    assert metrics["labels_reused"] == sum(r["step"] > resumed for r in at_kill) >= 4
    same_weights(run_a / "oaif_rlhf" / "model", run_b / "oaif_rlhf" / "model")


@pytest.mark.slow
def test_best_of_n_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """Posts are sampled 2 per call; the kill's file is cut to an odd number of rows and a partial line, so
    a chunk is half-written: the rerun samples that chunk again whole and appends only its missing post."""
    overrides = [BEST_OF_N, "best_of_n.n=16", "best_of_n.sample_batch_size=32", "best_of_n.arms=[rlaif]",
                 f"data.eval=[{{path: {SHARED_DATA / 'tldr' / 'openai_tldr_30.jsonl'}}}]"]  # fmt: skip
    path = Path("best_of_n") / "candidates.jsonl"

    def ready(run: Path) -> bool:
        return (run / path).exists() and (run / path).read_text().count("\n") >= 4

    def half_a_chunk(run: Path) -> None:
        lines = (run / path).read_text().splitlines(keepends=True)
        keep = len(lines) - 1 if len(lines) % 2 == 0 else len(lines)  # an odd count: the last chunk half-written
        (run / path).write_text("".join(lines[:keep]) + lines[keep - 1][:40])  # and half a line, as a kill leaves

    run_a, run_b = rerun_after_kill(
        tmp_path, ["best_of_n", CONFIG], overrides, ready, "4 posts were sampled", on_kill=half_a_chunk
    )
    metrics = json.loads((run_b / "best_of_n" / "metrics.json").read_text())
    assert metrics["posts"] == 30 and 3 <= metrics["resumed_posts"] < 30 and metrics["resumed_posts"] % 2 == 1
    assert (run_b / "best_of_n" / "summaries.jsonl").read_text() == (
        run_a / "best_of_n" / "summaries.jsonl"
    ).read_text()

    def candidates(run: Path) -> list[dict]:  # the two runs' SFT models are the same weights from two stage runs
        rows = [json.loads(line) for line in (run / "best_of_n" / "candidates.jsonl").read_text().splitlines()]
        return [{**r, "generation": {k: v for k, v in r["generation"].items() if k != "sft_run"}} for r in rows]

    assert candidates(run_b) == candidates(run_a)
    rows = candidates(run_a)
    assert all(len(r["candidates"]) == 16 and r["rm"] == "reward" for r in rows)
    picks = [json.loads(line) for line in (run_a / "best_of_n" / "summaries.jsonl").read_text().splitlines()]
    for row, chosen in zip(rows, picks):
        assert chosen["score"] == max(c["score"] for c in row["candidates"])
    by_n = json.loads((run_a / "best_of_n" / "metrics.json").read_text())["by_n"]
    assert list(by_n) == ["1", "2", "4", "8", "16"]
    scores = [by_n[k]["mean_score"] for k in by_n]
    assert scores == sorted(scores)  # the best of the first n can only get better with n


@pytest.mark.slow
def test_best_of_n_second_arm_scores_the_first_arms_samples(tmp_path):
    """Both arms draw the same SFT samples: the RLHF arm reuses the RLAIF arm's when the generation settings
    match and scores them with its own reward model; with other settings it samples itself. One post per
    call when n > sample_batch_size (its n in 2 calls)."""
    sets = setup_run(tmp_path, BEST_OF_N, "best_of_n.sample_batch_size=2")
    run = tmp_path / "run"

    def rows(stage: str) -> list[dict]:
        return [json.loads(line) for line in (run / stage / "candidates.jsonl").read_text().splitlines()]

    def metrics(stage: str) -> dict:
        return json.loads((run / stage / "metrics.json").read_text())

    assert main(["best_of_n", CONFIG, *sets]) == 0
    assert metrics("best_of_n")["posts_sampled_now"] == 4 and metrics("best_of_n")["posts_reused_samples"] == 0
    assert main(["best_of_n", CONFIG, "--arm", "rlhf", *sets, "--set", "best_of_n.temperature=0.7"]) == 0
    alone = rows("best_of_n_rlhf")  # other generation settings: sampled, not reused
    assert metrics("best_of_n_rlhf")["posts_sampled_now"] == 4
    assert main(["best_of_n", CONFIG, "--arm", "rlhf", *sets]) == 0
    first, second = rows("best_of_n"), rows("best_of_n_rlhf")
    assert (
        metrics("best_of_n_rlhf")["posts_reused_samples"] == 4 and metrics("best_of_n_rlhf")["posts_sampled_now"] == 0
    )
    assert all(r["samples_from"] == "best_of_n/candidates.jsonl" and r["rm"] == "reward_rlhf" for r in second)
    assert all("samples_from" not in r for r in first + alone)
    for a, b in zip(first, second):
        assert [c["summary"] for c in a["candidates"]] == [c["summary"] for c in b["candidates"]]
        assert len(b["candidates"]) == 4 and all("score" in c for c in b["candidates"])
    assert [c["summary"] for r in alone for c in r["candidates"]] != [
        c["summary"] for r in first for c in r["candidates"]
    ]


def launch_two(command: list[str]) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists():
        pytest.skip("accelerate launcher not installed")
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "-m", "rlaif.cli", *command]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_dpo_two_processes_equal_one(tmp_path):
    """Each process takes half of every global batch; the mean loss and the weights are those of one process."""
    sets = setup_run(tmp_path / "two", DPO, "dpo.arms=[rlaif]")
    proc = launch_two(["dpo", CONFIG, *sets])
    one = setup_run(tmp_path / "one", DPO, "dpo.arms=[rlaif]")
    assert main(["dpo", CONFIG, *one]) == 0
    run2, run1 = tmp_path / "two" / "run", tmp_path / "one" / "run"
    metrics = json.loads((run2 / "dpo" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 4 and proc.stdout.count("[rlaif] dpo:") == 1
    assert (run2 / "dpo" / "reference_logprobs.jsonl").read_text().count("\n") == 9
    rows2, rows1 = stage_rows(run2, "dpo"), stage_rows(run1, "dpo")
    assert [r["step"] for r in rows2] == [1, 2, 3, 4]  # one writer
    for r2, r1 in zip(rows2, rows1):
        assert r2["loss/dpo"] == pytest.approx(r1["loss/dpo"], abs=1e-5)
    w2, w1 = (
        load_file(run2 / "dpo" / "model" / "model.safetensors"),
        load_file(run1 / "dpo" / "model" / "model.safetensors"),
    )
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_oaif_two_processes_one_judge(tmp_path):
    """The RLAIF arm with the tiny labeler: rank 0 judges both processes' pairs (both orders) and logs them once."""
    sets = setup_run(tmp_path, OAIF, "oaif.arms=[rlaif]")
    proc = launch_two(["oaif", CONFIG, *sets])
    run = tmp_path / "run"
    metrics = json.loads((run / "oaif" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 4 and proc.stdout.count("[rlaif] oaif:") == 1
    labels = [json.loads(line) for line in (run / "oaif" / "labels.jsonl").read_text().splitlines()]
    assert sorted((r["step"], r["index"]) for r in labels) == [(s, i) for s in range(1, 5) for i in range(4)]
    assert all([o["order"] for o in r["orders"]] == ["ab", "ba"] and r["p_a"] == 0.5 for r in labels)
    assert [r["step"] for r in stage_rows(run, "oaif")] == [1, 2, 3, 4]
    AutoModelForCausalLM.from_pretrained(run / "oaif" / "model")


@pytest.mark.slow
def test_best_of_n_and_frontier_two_processes(tmp_path):
    """best_of_n deals 7 posts to 2 processes (the last round has one) and rank 0 appends them in post
    order: the files one process writes. frontier runs on rank 0 while the other process waits."""
    overrides = [BEST_OF_N, "best_of_n.arms=[rlaif]", "rl=null",
                 "frontier={posts: 3, max_new_tokens: 12, batch_size: 3, best_of_n: [1, 2, 4], bootstrap_samples: 50}",
                 f"data.eval=[{{path: {SHARED_DATA / 'tldr' / 'openai_tldr_30.jsonl'}, limit: 7}}]"]  # fmt: skip
    sets = setup_run(tmp_path / "two", *overrides)
    proc = launch_two(["best_of_n", CONFIG, *sets])
    assert proc.stdout.count("[rlaif] best_of_n:") == 1
    proc = launch_two(["frontier", CONFIG, *sets])
    assert proc.stdout.count("[rlaif] frontier:") == 1
    one = setup_run(tmp_path / "one", *overrides)
    assert main(["best_of_n", CONFIG, *one]) == 0
    run2, run1 = tmp_path / "two" / "run", tmp_path / "one" / "run"

    def rows(run: Path, name: str) -> list[dict]:
        return [json.loads(line) for line in (run / "best_of_n" / name).read_text().splitlines()]

    two, single = rows(run2, "candidates.jsonl"), rows(run1, "candidates.jsonl")
    assert [r["id"] for r in two] == [r["id"] for r in single] and len(two) == 7  # once each, in post order
    for a, b in zip(two, single):
        assert [c["summary"] for c in a["candidates"]] == [c["summary"] for c in b["candidates"]]
        assert [c["score"] for c in a["candidates"]] == pytest.approx([c["score"] for c in b["candidates"]], abs=1e-5)
    assert [r["summary"] for r in rows(run2, "summaries.jsonl")] == [
        r["summary"] for r in rows(run1, "summaries.jsonl")
    ]
    metrics = json.loads((run2 / "best_of_n" / "metrics.json").read_text())
    assert metrics["posts"] == 7 and metrics["posts_sampled_now"] == 7
    points = json.loads((run2 / "frontier" / "metrics.json").read_text())["points"]
    assert sorted((p["stage"], p.get("step", p.get("n"))) for p in points) == [
        ("best_of_n", 1), ("best_of_n", 2), ("best_of_n", 4), ("sft", 0)]  # fmt: skip
    assert (run2 / "frontier" / "samples.jsonl").read_text().count("\n") == 3  # written once: SFT on 3 posts
    assert manifest(run2)["frontier"]["status"] == "done"


@pytest.mark.slow
def test_rlaif_run_evaluates_and_reports_every_method(tmp_path):
    run = tmp_path / "run"
    methods = ["dpo", "dpo_rlhf", "oaif", "oaif_rlhf", "best_of_n", "best_of_n_rlhf"]
    args = ["configs/tiny.yaml", "--set", f"output_dir={run}", "--set", "rl=null", "--set", DPO, "--set", OAIF,
            "--set", BEST_OF_N, "--set", f"evaluate.comparisons=[{', '.join(m + ':sft' for m in methods)}]"]  # fmt: skip
    assert main(["run", *args]) == 0
    stages = manifest(run)
    assert all(stages[m]["status"] == "done" for m in methods)
    assert stages["oaif_rlhf"]["upstream"] == ["sft", "reward_rlhf"] and stages["best_of_n"]["upstream"] == [
        "sft",
        "reward",
    ]
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["comparisons"]) == {f"{m}:sft" for m in methods}
    assert all(metrics["systems"][m]["n"] == 4 for m in methods)
    best = [json.loads(line) for line in (run / "eval" / "generations" / "best_of_n.jsonl").read_text().splitlines()]
    assert {r["from"] for r in best} == {"best_of_n/summaries.jsonl"}
    reused = json.loads((run / "best_of_n_rlhf" / "metrics.json").read_text())
    assert reused["posts_reused_samples"] == 4 and reused["posts_sampled_now"] == 0  # the RLAIF arm's samples
    report = (run / "report" / "report.md").read_text()
    for m in methods:
        assert f"## Stage {m}" in report
    assert "| DPO (RLAIF) vs SFT |" in report and "| best-of-n (RLHF RM) vs SFT |" in report
    figures = set(json.loads((run / "report" / "metrics.json").read_text())["figures"])
    assert {f"{m}_curves" for m in methods[:4]} | {"best_of_n_by_n", "best_of_n_rlhf_by_n"} <= figures
    # fingerprinted like every stage: unchanged -> skipped; evaluate.max_posts, which best_of_n reads, reruns it
    before = {m: stages[m]["run_id"] for m in methods}
    assert main(["run", *args, "--set", "evaluate.max_posts=3"]) == 0
    after = manifest(run)
    assert [m for m in methods if after[m]["run_id"] != before[m]] == ["best_of_n", "best_of_n_rlhf"]
    assert RunDir(load_config(CONFIG, [f"output_dir={run}"])).finished("best_of_n")


def test_sections_default_to_off():
    cfg = load_config(CONFIG)
    assert cfg.dpo is None and cfg.oaif is None and cfg.best_of_n is None
    from rlaif import pipeline

    assert not {"dpo", "dpo_rlhf", "oaif", "oaif_rlhf", "best_of_n", "best_of_n_rlhf"} & {
        s.name for s in pipeline.enabled(cfg)
    }
    demo = load_config(REPO / "configs" / "demo.yaml")
    assert demo.dpo is None and demo.oaif is None and demo.best_of_n is None


def test_method_sections_are_checked_with_the_field_named():
    from rlaif.config import ConfigError

    for override, field in (
        ("dpo={batch_size: 6, micro_batch_size: 4}", "dpo.micro_batch_size"),
        ("oaif={arms: [rlaif, rlaif]}", "oaif.arms"),
        ("oaif={total_prompts: 8, batch_size: 16, micro_batch_size: 8}", "oaif.total_prompts"),
        ("best_of_n={n: 0}", "best_of_n.n"),
        ("dpo={bta: 0.1}", "dpo.bta"),
        ("dpo={beta: -1}", "dpo.beta"),
    ):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(CONFIG, [override])
