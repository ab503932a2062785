"""Stage `report`: report/report.html (self-contained, figures as base64 PNG) and report/report.md
(figures in report/plots/) from whatever the run has produced.

Order: the results first, with the judge's and the labeler's reliability beside the win rates
and the judge-free checks (reward-model score, ROUGE-L, length) under them; then one section per
stage, with its timings, metrics and curves; then samples side by side; then the config. A stage
that has not finished is shown as such, never filled in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlaif.artifacts import RunDir, atomic_write_text, is_main_process
from rlaif.config import PipelineConfig, to_yaml
from rlaif.jsonl import read_jsonl
from rlaif.report import plots
from rlaif.report.render import Doc, fmt
from rlaif.report.results import label_position_bias, results_section, samples_section

PIPELINE = ("sft", "pairs", "label", "label_alignment", "reward", "rl", "reward_rlhf", "rl_rlhf", "evaluate")
ARM_SECTION = {
    "reward_rlhf": "reward_rlhf",
    "rl_rlhf": "reward_rlhf",
}  # an RLHF-arm stage exists when this section is set


def upstream(cfg: PipelineConfig, stage: str = "report") -> tuple[str, ...]:
    """Every stage finished so far: the report reruns when any of them reruns, and one that has not
    run yet is shown as not run rather than blocking the report."""
    stages = RunDir(cfg).manifest()["stages"]
    return tuple(name for name in PIPELINE if stages.get(name, {}).get("status") == "done")


def data_sources(cfg: PipelineConfig, stage: str = "report"):
    return []


def run(cfg: PipelineConfig, rundir: RunDir, stage: str = "report") -> dict:
    out = rundir.begin(stage, cfg.report, upstream=upstream(cfg), data=[])
    t0 = time.time()
    if not is_main_process():
        return {}
    doc = build(cfg, rundir)
    plots_dir = out.dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    for name, png in doc.figures.items():
        (plots_dir / f"{name}.png").write_bytes(png)
    atomic_write_text(out.dir / "report.md", doc.markdown())
    atomic_write_text(out.dir / "report.html", doc.html())
    metrics = {
        "figures": sorted(doc.figures),
        "stages_shown": list(upstream(cfg)),
        "seconds": round(time.time() - t0, 2),
    }
    print(f"[rlaif] report: {out.dir / 'report.html'} ({len(doc.figures)} figures)", flush=True)
    rundir.finish(out, metrics)
    return metrics


def build(cfg: PipelineConfig, rundir: RunDir) -> Doc:
    doc = Doc(f"rlaif run `{cfg.name}`")
    manifest = rundir.manifest()["stages"]
    doc.p(f"Run folder {rundir.root}; report written {time.strftime('%Y-%m-%d %H:%M:%S')}.")
    results_section(doc, cfg, rundir, manifest)
    _timings(doc, manifest)
    for name in PIPELINE[:-1]:
        if name in ARM_SECTION and getattr(cfg, ARM_SECTION[name], None) is None and name not in manifest:
            continue  # the RLHF arm is off in this config
        doc.h2(f"Stage {name}", anchor=name)
        section = "rl" if name == "rl_rlhf" else name
        if getattr(cfg, section, "absent") is None and name not in manifest:
            doc.not_run(f"stage {name}", f"disabled in this config (section `{section}` is null)")
            continue
        entry = manifest.get(name)
        if name == "label_alignment" and not entry:
            doc.not_run(
                "labeler alignment with human comparisons",
                "not run (`rlaif label CONFIG --eval-alignment` measures it)",
            )
            continue
        if not entry or entry.get("status") != "done":
            status = (
                "not run"
                if not entry
                else f"{entry.get('status')}" + (f" ({entry['error']})" if entry.get("error") else "")
            )
            doc.not_run(f"stage {name}", status)
            continue
        d = rundir.stage_dir(name)
        SECTIONS.get(name.removesuffix("_rlhf"), _generic)(doc, name, d)
    samples_section(doc, cfg, rundir, manifest)
    doc.h2("Config", anchor="config")
    doc.pre(to_yaml(cfg))
    return doc


# ----------------------------------------------------------------------------------------------
# Per-stage sections


def _timings(doc: Doc, manifest: dict) -> None:
    doc.h2("Stages and timings", anchor="timings")
    rows = []
    for name in PIPELINE:
        e = manifest.get(name)
        if e:
            rows.append(
                [
                    name,
                    e.get("status", "?"),
                    e.get("seconds"),
                    e.get("attempts"),
                    e.get("finished_at", "—"),
                    e.get("fingerprint", ""),
                ]
            )
        else:
            rows.append([name, "not run", None, None, "—", ""])
    doc.table(["stage", "status", "seconds", "attempts", "finished", "fingerprint"], rows)


def scalars(metrics: dict, prefix: str = "") -> list[list]:
    """Flat (key, value) rows of a metrics dict: numbers, strings and booleans; lists left out."""
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += scalars(value, f"{name}/")
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append([name, fmt(value, 4)])
    return rows


def _metrics(d: Path) -> dict:
    path = d / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _generic(doc: Doc, name: str, d: Path) -> None:
    metrics = _metrics(d)
    if metrics:
        doc.table(["metric", "value"], scalars(metrics))
    else:
        doc.p(f"{d}/metrics.json is absent.")


def _sft(doc: Doc, name: str, d: Path) -> None:
    history = read_jsonl(d / "log_history.jsonl") if (d / "log_history.jsonl").exists() else []
    train = [(r["step"], r["loss"]) for r in history if "loss" in r and "step" in r]
    val = [(r["step"], r["eval_loss"]) for r in history if "eval_loss" in r and "step" in r]
    series = {k: tuple(zip(*v)) for k, v in (("train loss", train), ("validation loss", val)) if v}
    if series:
        doc.figure(
            f"{name}_loss",
            plots.line_plot(series, "SFT loss (summary tokens + EOS)", "optimizer step", "cross-entropy"),
            "SFT loss curve",
        )
    else:
        doc.p("No loss history in sft/log_history.jsonl.")
    _generic(doc, name, d)


def _label(doc: Doc, name: str, d: Path) -> None:
    path = d / "labels.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    if rows:
        orders = [(o.get("order"), o.get("p_first"), o.get("p_second")) for r in rows for o in r.get("orders", [])]
        by_order = {
            f"P(first slot), order {k}": [p for o, p, _ in orders if o == k and p is not None] for k in ("ab", "ba")
        }
        bias = label_position_bias(rows)
        p_a = [r["p_a"] for r in rows if r.get("p_a") is not None]
        confidence = [max(p, 1 - p) for p in p_a]
        doc.p(
            f"{len(rows)} labeled pairs; {sum(r.get('undecided', False) for r in rows)} undecided. "
            f"Position bias: the preferred slot stays the same when the order is swapped in "
            f"{fmt(bias['flip_rate'])} of pairs (0 = consistent, 1 = reads only the position); "
            f"{fmt(bias['first_rate'])} of single answers chose the first slot (0.5 = unbiased)."
        )
        panels = {
            **{k: v for k, v in by_order.items() if v},
            "soft label P(a > b)": p_a,
            "confidence max(p, 1-p)": confidence,
        }
        doc.figure(
            f"{name}_position_confidence",
            plots.histograms(panels, "AI labels: position bias and confidence"),
            "label position bias and confidence histograms",
        )
    else:
        doc.p("labels/labels.jsonl is absent or empty.")
    _generic(doc, name, d)


def _reward(doc: Doc, name: str, d: Path) -> None:
    metrics = _metrics(d)
    accuracy = [[k, fmt(v)] for k, v in metrics.items() if "accuracy" in k and isinstance(v, (int, float))]
    if accuracy:
        doc.table(["accuracy", "value"], accuracy)
    calibration = metrics.get("calibration")
    if isinstance(calibration, dict) and any(calibration.values()):
        doc.figure(
            f"{name}_calibration", plots.calibration_plot(calibration, f"{name}: calibration"), f"{name} calibration"
        )
    _generic(doc, name, d)


def rl_panel(key: str) -> str | None:
    """Which PPO panel a metrics.jsonl column belongs to: reward, KL or length (None: not plotted)."""
    k = key.lower()
    if any(x in k for x in ("loss", "clip", "learning_rate", "lr", "ratio", "entropy", "approxkl", "time", "seconds")):
        return None
    if "kl" in k or "non_score" in k:  # the non-score reward is the KL penalty
        return "KL"
    if "length" in k or "len" in k.replace("/", "_").split("_"):
        return "length"
    if "score" in k or "reward" in k:
        return "reward"
    return None


def _rl(doc: Doc, name: str, d: Path) -> None:
    path = d / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    panels: dict[str, dict] = {}
    for key in dict.fromkeys(k for r in rows for k in r):
        panel = rl_panel(key)
        points = [(r.get("step", i), r[key]) for i, r in enumerate(rows) if isinstance(r.get(key), (int, float))]
        if panel and points and len(panels.setdefault(panel, {})) < 4:
            panels[panel][key] = tuple(zip(*points))
    panels = {k: v for k, v in panels.items() if v}
    if panels:
        doc.figure(
            f"{name}_curves",
            plots.curves_grid(panels, f"{name}: PPO curves", "step"),
            f"{name} reward, KL and length curves",
        )
    else:
        doc.p(
            f"No reward, KL or length columns in {name}/metrics.jsonl."
            if rows
            else f"{name}/metrics.jsonl is absent or empty."
        )
    _generic(doc, name, d)


SECTIONS = {"sft": _sft, "label": _label, "reward": _reward, "rl": _rl}
