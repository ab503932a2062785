"""A new method is one registry entry and one module: this file adds a toy policy (the post's first
sentence, the "lead" baseline of summarisation) through rlaif.pipeline alone, and `rlaif run` runs it,
fingerprints it, evaluates it as a system and shows it in the report; nothing under src/ knows it."""

from __future__ import annotations

import json
import re

import pytest

from rlaif import pipeline
from rlaif.cli import main
from rlaif.data import eval_records
from rlaif.jsonl import write_jsonl
from rlaif.models import load_tokenizer
from tests.conftest import needs_shared_data

pytestmark = [needs_shared_data, pytest.mark.slow]

LEAD = pipeline.Stage(
    "lead", "tests.stages.test_registry", None, "lead",
    "the post's first sentence as its summary (a baseline without a model)",
    artifacts=("summaries.jsonl",), upstream=("sft",), data=lambda cfg, stage: cfg.data.eval,
    role="policy", label="first sentence",
)  # fmt: skip


def first_sentence(prompt: str) -> str:
    post = prompt.split("POST:", 1)[-1].removesuffix("TL;DR:").strip()
    return re.split(r"(?<=[.!?])\s", post, maxsplit=1)[0]


def run(ctx) -> dict:
    """The toy stage: reads the SFT tokenizer (for the prompt budget), writes summaries.jsonl."""
    tokenizer = load_tokenizer(str(ctx.artifact("sft", "model")))
    rows = [{"id": r["id"], "summary": first_sentence(r["prompt"])} for r in eval_records(ctx.cfg, tokenizer)]
    write_jsonl(ctx.dir / "summaries.jsonl", rows)
    return {"summaries": len(rows)}


def test_a_stage_added_through_the_registry_runs_is_evaluated_and_reported(tmp_path, monkeypatch):
    at = [s.name for s in pipeline.STAGES].index("evaluate")
    monkeypatch.setattr(pipeline, "STAGES", [*pipeline.STAGES[:at], LEAD, *pipeline.STAGES[at:]])
    run_dir = tmp_path / "run"
    args = ["configs/tiny.yaml", "--set", f"output_dir={run_dir}", "--set", "rl=null", "--set", "reward_rlhf=null",
            "--set", "evaluate.comparisons=[lead:sft, lead:reference]"]  # fmt: skip
    assert main(["run", *args]) == 0

    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    lead = manifest["lead"]
    assert lead["status"] == "done" and lead["upstream"] == ["sft"] and len(lead["fingerprint"]) == 16
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert set(metrics["comparisons"]) == {"lead:sft", "lead:reference"} and "lead" in metrics["systems"]
    generations = [json.loads(x) for x in (run_dir / "eval" / "generations" / "lead.jsonl").read_text().splitlines()]
    assert generations and all(g["from"] == "lead/summaries.jsonl" for g in generations)
    assert all(g["summary"] == first_sentence(p["prompt"]) for g, p in zip(generations, _posts(run_dir)))
    report = (run_dir / "report" / "report.md").read_text()
    assert "## Stage lead" in report and "| first sentence vs SFT |" in report
    assert "lead" in json.loads((run_dir / "report" / "metrics.json").read_text())["stages_shown"]

    # fingerprinted like any stage: nothing changed -> skipped; its data changed -> it and what reads it rerun
    assert main(["run", *args]) == 0
    assert json.loads((run_dir / "manifest.json").read_text())["stages"]["lead"]["run_id"] == lead["run_id"]
    assert main(["run", *args, "--set", "data.eval.0.limit=3"]) == 0
    after = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert after["lead"]["run_id"] != lead["run_id"]
    assert after["evaluate"]["run_id"] != manifest["evaluate"]["run_id"]
    assert after["reward"]["run_id"] == manifest["reward"]["run_id"]


def _posts(run_dir):
    by_id = {json.loads(x)["id"]: json.loads(x) for x in (run_dir / "eval" / "posts.jsonl").read_text().splitlines()}
    ids = [json.loads(x)["id"] for x in (run_dir / "eval" / "generations" / "lead.jsonl").read_text().splitlines()]
    return [by_id[i] for i in ids]
