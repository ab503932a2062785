"""Append-only JSONL caches, optional tracking, and the report's Markdown/HTML rendering."""

import base64
import sys
import types

import pytest

from rlaif.config import ConfigError
from rlaif.jsonl import AppendLog, read_jsonl
from rlaif.report.render import Doc, fmt
from rlaif.tracking import Tracker, flatten, start_tracking


def test_append_log_resumes_after_a_kill_mid_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    with AppendLog(path) as log:
        log.append({"id": "a"})
        log.append({"id": "b"})
    with open(path, "a") as fh:
        fh.write('{"id": "c", "summ')  # what a kill during a write leaves behind
    with AppendLog(path) as log:
        assert [r["id"] for r in log.rows] == ["a", "b"]
        log.append({"id": "c"})
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b", "c"]


def test_append_log_keeps_only_the_rows_a_resumed_run_keeps(tmp_path):
    """The RL stage's per-step logs, reopened after a resume from the checkpoint of step 2 [D44]."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "lo')  # killed during step 4's line
    with AppendLog(path, keep=lambda row: row["step"] <= 2) as log:
        assert [r["step"] for r in log.rows] == [1, 2]
        log.append({"step": 3})
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]


def test_append_log_names_a_corrupt_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"cache.jsonl:2"):
        AppendLog(path).__enter__()


def test_flatten_keeps_numbers_only():
    assert flatten({"a": {"b": 1, "c": "x", "d": True}, "e": 2.5, "f": [1]}, "s") == {"s/a/b": 1.0, "s/e": 2.5}


def test_tracking_none_is_a_no_op(tiny_config):
    tracker = start_tracking(tiny_config(), "evaluate")
    assert type(tracker) is Tracker
    with tracker:
        tracker.log({"x": 1.0}, step=0)


def test_tracking_wandb_like_backend(tiny_config, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(  # stands in for the external wandb package
        init=lambda **kw: calls.append(("init", kw["project"], kw["name"])),
        log=lambda metrics, step=None: calls.append(("log", metrics, step)),
        finish=lambda: calls.append(("finish",)),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = tiny_config("logging.backend=wandb", "logging.project=p")
    with start_tracking(cfg, "evaluate") as tracker:
        tracker.log_summary("evaluate", {"rl:sft": {"win_rate": 0.5, "judge": "x"}})
    assert calls == [("init", "p", "tiny-evaluate"), ("log", {"evaluate/rl:sft/win_rate": 0.5}, None), ("finish",)]


def test_tracking_missing_package_is_a_config_error(tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "trackio", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="logging.backend: 'trackio' needs `pip install trackio`"):
        start_tracking(tiny_config("logging.backend=trackio"), "rl")


def test_doc_renders_markdown_and_self_contained_html():
    doc = Doc("Run <x>")
    doc.h2("Results", anchor="results")
    doc.table(["name", "value"], [["a|b", 0.12345], ["c", None]])
    doc.note("careful", warn=True)
    doc.not_run("stage rl")
    png = b"\x89PNG\r\n\x1a\nfake"
    doc.figure("curve", png, "a curve")
    md, page = doc.markdown(), doc.html()
    assert "| a\\|b | 0.123 |" in md and "| c | — |" in md
    assert "![a curve](plots/curve.png)" in md and "**Warning:** careful" in md and "*stage rl: not run.*" in md
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert "<h1>Run &lt;x&gt;</h1>" in page and 'class="note warn"' in page and 'class="notrun"' in page


def test_fmt():
    assert (fmt(None), fmt(True), fmt(0.5), fmt(3), fmt(1e-5), fmt(0.0)) == (
        "—",
        "true",
        "0.500",
        "3",
        "1.00e-05",
        "0.000",
    )
