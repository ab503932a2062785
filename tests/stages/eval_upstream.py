"""Upstream artifacts for evaluate/report tests, registered through the real RunDir: tiny-random
policies as sft/model, rl/model and rl_rlhf/model, tiny-random reward models (via rl_upstream), and
an eval file of real posts whose references start with GOOD, which the fake judge server prefers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rlaif.artifacts import RunDir
from rlaif.models import embedded_folder
from tests.conftest import SHARED_DATA
from tests.stages.rl_upstream import make_upstream

N_POSTS = 4


def eval_file(tmp_path: Path, n: int = N_POSTS) -> Path:
    rows = [json.loads(line) for line in (SHARED_DATA / "tldr" / "openai_tldr_30.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "test"][:n]
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({**r, "summary": "GOOD " + r["summary"]}) + "\n" for r in rows))
    return path


def fake_judge_overrides(server) -> list[str]:
    return [
        "evaluate.judge.backend=openai_api",
        "evaluate.judge.model=judge",
        f"evaluate.judge.api.base_url={server.base_url}",
        "evaluate.judge.api.max_retries=0",
        "evaluate.judge.api.concurrency=1",
        "evaluate.judge.api.timeout_s=5",
    ]


def make_eval_upstream(cfg) -> RunDir:
    rundir = make_upstream(cfg, reward_stages=("reward", "reward_rlhf"))
    for stage in ("rl", "rl_rlhf"):
        out = rundir.begin(stage, cfg.rl, upstream=("sft",))
        shutil.copytree(embedded_folder("tiny-random"), out.dir / "model")
        rundir.finish(out, {})
    return rundir
