"""Stage evaluate on the tiny preset, judged by the openai_api backend against a real HTTP server on
127.0.0.1 (tests/labelers/fake_openai_server.py: it prefers a candidate whose text starts with GOOD).
The held-out references are real posts' references prefixed with GOOD, so the judge's verdicts are
known: every policy loses to the reference in both orders, and identical policies tie."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from rlaif import pipeline
from rlaif.artifacts import RunDir
from rlaif.jsonl import read_jsonl
from rlaif.models import embedded_folder
from rlaif.stages import run_stage
from tests.conftest import needs_shared_data
from tests.labelers.fake_openai_server import FakeOpenAIServer
from tests.stages.eval_upstream import N_POSTS, eval_file, fake_judge_overrides, make_eval_upstream

pytestmark = needs_shared_data


@pytest.fixture
def eval_run(tiny_config, tmp_path):
    def setup(server, *overrides):
        cfg = tiny_config(f"data.eval=[{{path: {eval_file(tmp_path)}}}]", *fake_judge_overrides(server), *overrides)
        return cfg, make_eval_upstream(cfg)

    return setup


def test_evaluate_metrics_and_judgements(eval_run):
    with FakeOpenAIServer() as server:
        cfg, rundir = eval_run(server)
        assert run_stage(pipeline.stage("evaluate"), cfg)
    d = rundir.stage_dir("evaluate")
    metrics = json.loads((d / "metrics.json").read_text())
    comps = metrics["comparisons"]
    assert set(comps) == {"rl:sft", "rl:reference", "sft:reference", "rl_rlhf:sft", "rl_rlhf:reference", "rl:rl_rlhf"}
    for name in ("rl:reference", "sft:reference", "rl_rlhf:reference"):  # the GOOD reference wins in both orders
        m = comps[name]
        assert (m["win_rate"], m["ci_low"], m["ci_high"], m["losses"], m["ties"], m["n"]) == (
            0.0,
            0.0,
            0.0,
            N_POSTS,
            0,
            N_POSTS,
        )
        assert m["position_bias"] == {"flip_rate": 0.0, "first_rate": 0.5, "answered_pairs": N_POSTS}
    for name in ("rl:sft", "rl_rlhf:sft", "rl:rl_rlhf"):  # the same tiny model: equal summaries, equal odds -> ties
        m = comps[name]
        assert (m["win_rate"], m["ties"], m["n"]) == (0.5, N_POSTS, N_POSTS)
    systems = metrics["systems"]
    assert set(systems) == {"sft", "rl", "rl_rlhf", "reference"}
    for name, m in systems.items():
        assert m["n"] == N_POSTS and {"rm_score/reward", "rm_score/reward_rlhf"} <= set(m)
        assert m["rm_score/reward"]["ci_low"] <= m["rm_score/reward"]["mean"] <= m["rm_score/reward"]["ci_high"]
        assert ("rouge_l" in m) == (name != "reference")
    assert metrics["judge"]["prompt_id"].startswith("tldr-eval-base-0shot-") and metrics["judge"]["flip_rate"] == 0.0
    assert metrics["judge"]["prompt"]["prompt_id"] == metrics["judge"]["prompt_id"]  # the text, kept [L09]

    judgements = read_jsonl(d / "judgements.jsonl")
    assert len(judgements) == 6 * N_POSTS
    assert len({(j["comparison"], j["id"]) for j in judgements}) == len(judgements)
    assert all([o["order"] for o in j["orders"]] == ["ab", "ba"] for j in judgements)
    # the reference was shown first in order ba and second in ab; the judge followed the text, not the slot
    ref = [j for j in judgements if j["comparison"] == "sft:reference"]
    assert all(j["preferred_position"] == {"ab": "second", "ba": "first"} and j["outcome"] == "loss" for j in ref)
    for system in ("sft", "rl", "rl_rlhf"):
        rows = read_jsonl(d / "generations" / f"{system}.jsonl")
        assert len(rows) == N_POSTS and {"id", "summary", "ended_with_eos", "num_tokens"} <= set(rows[0])
    assert len(read_jsonl(d / "rm_scores.jsonl")) == 2 * 4 * N_POSTS  # 2 reward models x 4 systems
    # with the openai backend a prompt is sent per order: 6 comparisons x N posts x 2 orders
    assert len(server.requests) == 6 * N_POSTS * 2


def test_evaluate_resumes_after_a_judge_failure(eval_run):
    with FakeOpenAIServer() as server:
        cfg, rundir = eval_run(server, "evaluate.comparisons=[sft:reference]")
        server.faults.extend(["500"])  # the first judge request fails and max_retries is 0
        with pytest.raises(RuntimeError, match="1 judge requests failed"):
            run_stage(pipeline.stage("evaluate"), cfg)
        d = rundir.stage_dir("evaluate")
        assert RunDir(cfg).entry("evaluate")["status"] == "failed"
        assert len(read_jsonl(d / "judgements.jsonl")) == N_POSTS - 1
        generations = (d / "generations" / "sft.jsonl").read_bytes()
        before = len(server.requests)
        assert run_stage(pipeline.stage("evaluate"), cfg)  # same settings: resumes
        assert len(server.requests) - before == 2  # only the failed pair, in its two orders
    assert (d / "generations" / "sft.jsonl").read_bytes() == generations  # nothing regenerated
    judgements = read_jsonl(d / "judgements.jsonl")
    assert sorted(j["id"] for j in judgements) == sorted({j["id"] for j in judgements}) and len(judgements) == N_POSTS
    entry = RunDir(cfg).entry("evaluate")
    assert entry["status"] == "done" and entry["attempts"] == 2 and entry["error"] is None
    assert json.loads((d / "metrics.json").read_text())["comparisons"]["sft:reference"]["n"] == N_POSTS


def test_a_changed_evaluation_recomputes_only_what_changed(eval_run, tiny_config, tmp_path):
    """A stale evaluate keeps the rows of its caches that still match [E11]: a new comparison is all the
    judge sees; after rl reruns, only rl is decoded, scored and judged again."""
    with FakeOpenAIServer() as server:
        first = ["evaluate.comparisons=[rl:sft, sft:reference]"]
        cfg, rundir = eval_run(server, *first)
        assert run_stage(pipeline.stage("evaluate"), cfg)
        d = rundir.stage_dir("evaluate")
        sft_rows = (d / "generations" / "sft.jsonl").read_bytes()
        assert len(server.requests) == 2 * N_POSTS * 2
        (d / "stray.txt").write_text("not a cache")

        def config(comparisons: str):
            overrides = [f"data.eval=[{{path: {eval_file(tmp_path)}}}]", *fake_judge_overrides(server)]
            return tiny_config(*overrides, f"evaluate.comparisons={comparisons}")

        cfg = config("[rl:sft, sft:reference, rl_rlhf:sft]")
        assert run_stage(pipeline.stage("evaluate"), cfg)  # stale: its section changed
        assert len(server.requests) == 3 * N_POSTS * 2  # only rl_rlhf:sft was judged
        assert not (d / "stray.txt").exists()  # the rest of the folder is wiped
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["cached_rows"] == {"summaries": 3 * N_POSTS, "rm_scores": 2 * 4 * N_POSTS,
                                          "judgements": 2 * N_POSTS}  # fmt: skip
        assert metrics["comparisons"]["rl:sft"]["n"] == N_POSTS

        # rl runs again (a new run id) to other weights: its summaries, their scores and its comparison are redone
        out = rundir.begin("rl", cfg.rl, upstream=("sft",))
        shutil.copytree(embedded_folder("tiny-random"), out.dir / "model")
        weights = load_file(out.dir / "model" / "model.safetensors")
        torch.manual_seed(0)
        for name in weights:
            weights[name] += torch.randn_like(weights[name])
        save_file(weights, out.dir / "model" / "model.safetensors", metadata={"format": "pt"})
        rundir.finish(out, {})
        before = len(server.requests)
        assert run_stage(pipeline.stage("evaluate"), cfg)
        assert len(server.requests) - before == N_POSTS * 2  # rl:sft only
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["cached_rows"] == {"summaries": 2 * N_POSTS, "rm_scores": 2 * 3 * N_POSTS,
                                          "judgements": 2 * N_POSTS}  # fmt: skip
        before = len(server.requests)
        assert run_stage(pipeline.stage("evaluate"), cfg, force=True)  # --force: nothing kept
        assert len(server.requests) - before == 3 * N_POSTS * 2
        assert json.loads((d / "metrics.json").read_text())["cached_rows"] == {"summaries": 0, "rm_scores": 0,
                                                                               "judgements": 0}  # fmt: skip
    assert (d / "generations" / "sft.jsonl").read_bytes() == sft_rows  # never decoded again
    assert len(read_jsonl(d / "generations" / "rl.jsonl")) == N_POSTS
    assert len(read_jsonl(d / "rm_scores.jsonl")) == 2 * 4 * N_POSTS
    assert len(read_jsonl(d / "judgements.jsonl")) == 3 * N_POSTS
