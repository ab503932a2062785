"""The report's body: the stage table with timings, one section per stage (drawn by the kind the
registry gives it: sft, label, reward, rl or generic), the samples and the config. The headline
(win rates and judge-free checks) is rlaif.report.results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlaif import pipeline
from rlaif.artifacts import RunDir
from rlaif.config import PipelineConfig, to_yaml
from rlaif.jsonl import read_jsonl
from rlaif.labelers.annotate import label_position_bias
from rlaif.report import plots
from rlaif.report.render import Doc, fmt
from rlaif.report.results import agreement_section, results_section, samples_section


def build(cfg: PipelineConfig, rundir: RunDir) -> Doc:
    doc = Doc(f"rlaif run `{cfg.name}`")
    manifest = rundir.manifest()["stages"]
    doc.p(f"Run folder {rundir.root}; report written {time.strftime('%Y-%m-%d %H:%M:%S')}.")
    results_section(doc, cfg, rundir, manifest)
    agreement_section(doc, cfg, rundir, manifest)
    _timings(doc, manifest)
    disabled = []
    for stage in pipeline.STAGES:
        if stage.report is None:
            continue
        if stage.arm == "rlhf" and any(getattr(cfg, s, None) is None for s in stage.requires):
            continue  # the RLHF arm is off in this config
        entry = manifest.get(stage.name)
        if not entry and stage.section is not None and getattr(cfg, stage.section, None) is None:
            disabled.append(stage.name)  # listed once below, not a section each
            continue
        if not entry and stage.arm is not None and stage.when is not None and not stage.enabled(cfg):
            continue  # an arm the method's `arms` leaves out
        doc.h2(f"Stage {stage.name}", anchor=stage.name)
        if not entry and stage.flag is not None:
            doc.not_run(stage.label or stage.name, f"not run (`rlaif {stage.cli} CONFIG --{stage.flag}` measures it)")
            continue
        if not entry or entry.get("status") != "done":
            status = (
                "not run"
                if not entry
                else f"{entry.get('status')}" + (f" ({entry['error']})" if entry.get("error") else "")
            )
            doc.not_run(f"stage {stage.name}", status)
            continue
        SECTIONS[stage.report](doc, stage.name, rundir.stage_dir(stage.name))
    if disabled:
        doc.h2("Disabled stages", anchor="disabled")
        sections = sorted({pipeline.stage(name).section for name in disabled})
        doc.p(f"Off in this config (section null): {', '.join(disabled)} (sections {', '.join(sections)}).")
    samples_section(doc, cfg, rundir, manifest)
    doc.h2("Config", anchor="config")
    doc.pre(to_yaml(cfg))
    return doc


def _timings(doc: Doc, manifest: dict) -> None:
    doc.h2("Stages and timings", anchor="timings")
    rows = []
    for stage in pipeline.STAGES:
        if stage.name == "report":
            continue
        e = manifest.get(stage.name)
        if e:
            rows.append(
                [
                    stage.name,
                    e.get("status", "?"),
                    e.get("seconds"),
                    e.get("attempts"),
                    e.get("finished_at", "—"),
                    e.get("fingerprint", ""),
                ]
            )
        else:
            rows.append([stage.name, "not run", None, None, "—", ""])
    doc.table(["stage", "status", "seconds", "attempts", "finished", "fingerprint"], rows)


def _read_metrics(d: Path) -> dict:
    path = d / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def scalars(metrics: dict, prefix: str = "") -> list[list]:
    """Flat (key, value) rows of a metrics dict: numbers, strings and booleans; lists left out, and the
    agreement figures too (the section "Agreement with people" shows them)."""
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if key == "agreement_with_people":
            rows.append([name, "see Agreement with people"])
        elif isinstance(value, dict):
            rows += scalars(value, f"{name}/")
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append([name, fmt(value, 4)])
    return rows


def _generic(doc: Doc, name: str, d: Path) -> None:
    metrics = _read_metrics(d)
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
    metrics = _read_metrics(d)
    accuracy = [[k, fmt(v)] for k, v in metrics.items() if "accuracy" in k and isinstance(v, (int, float))]
    if metrics.get("score_std") is not None:
        accuracy.append([f"score scale: std of scores on {metrics.get('score_std_on')}", fmt(metrics["score_std"])])
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
    algorithm = _read_metrics(d).get("algorithm") or "ppo"  # the rl stage's kin: rloo, grpo
    if panels:
        doc.figure(
            f"{name}_curves",
            plots.curves_grid(panels, f"{name}: {algorithm.upper()} curves", "step"),
            f"{name} reward, KL and length curves",
        )
    else:
        doc.p(
            f"No reward, KL or length columns in {name}/metrics.jsonl."
            if rows
            else f"{name}/metrics.jsonl is absent or empty."
        )
    _generic(doc, name, d)


def _frontier(doc: Doc, name: str, d: Path) -> None:
    """Reward against KL for every method: its own arm's reward model, and the other arm's [F03]."""
    metrics = _read_metrics(d)
    methods, points = metrics.get("methods", {}), metrics.get("points", [])
    origin = next((p for p in points if p["stage"] == "sft"), None)
    if not methods or origin is None:
        doc.p("No method saved snapshots (trajectory/) or best-of-n candidates; nothing to draw.")
        _generic(doc, name, d)
        return
    evaluation = _read_metrics(d.parent / "eval")
    panels: dict[str, dict] = {"own arm's reward model": {}, "other arm's reward model": {}}
    rows = []
    for stage, method in methods.items():
        own = [p for p in points if p["stage"] == stage]
        own.sort(key=lambda p: p.get("step", p.get("n", 0)))
        if method["kind"] == "trajectory":
            own = [origin, *own]
        for panel, rm in (
            ("own arm's reward model", method["own_rm"]),
            ("other arm's reward model", method["other_rm"]),
        ):
            if rm is None:
                continue
            x = [p["kl"]["mean"] for p in own]
            y = [p["scores"][rm]["mean"] for p in own]
            bounds = [(p["scores"][rm]["ci_low"], p["scores"][rm]["ci_high"]) for p in own]
            panels[panel][f"{method['label']} ({rm})"] = (x, y, bounds)
        last = own[-1]
        win = (evaluation.get("comparisons") or {}).get(f"{stage}:sft")
        rows.append([
            method["label"],
            f"n={last['n']}" if "n" in last else f"step {last['step']}",
            _mean_ci(last["kl"]),
            _mean_ci(last["scores"].get(method["own_rm"], {})),
            _mean_ci(last["scores"].get(method["other_rm"], {})) if method["other_rm"] else "—",
            f"{fmt(win['win_rate'])} [{fmt(win['ci_low'])}, {fmt(win['ci_high'])}]" if win else "—",
        ])  # fmt: skip
    panels = {k: v for k, v in panels.items() if v}
    doc.figure(name, plots.frontier_plot(panels, "KL-reward frontier (Gao et al. 2022)"), "reward against KL to SFT")
    doc.table(["method", "final point", "KL to SFT [95% CI]", "own RM score [95% CI]", "other arm's RM score [95% CI]",
               "win rate vs SFT [95% CI]"], rows)  # fmt: skip
    doc.p(
        f"{metrics.get('posts')} held-out posts, one sample each at temperature {metrics.get('temperature')} per point; "
        "KL is the mean over posts of sum_t (log pi - log pi_sft) on the policy's own samples, and for best-of-n "
        "the bound log n - (n-1)/n (Beirami et al. 2024). A method whose own reward keeps rising while the other "
        "arm's turns down is over-optimising its proxy (Gao et al. 2022). The win rate is evaluate's, at the final point."
    )


def _mean_ci(m: dict) -> str:
    if not m:
        return "—"
    if m.get("ci_low") is None:
        return f"{fmt(m['mean'])}" + (" (bound)" if m.get("bound") else "")
    return f"{fmt(m['mean'])} [{fmt(m['ci_low'])}, {fmt(m['ci_high'])}]"


def dpo_panel(key: str) -> str | None:
    """Which panel of the DPO / OAIF curves a metrics.jsonl column belongs to (None: not plotted)."""
    if key == "loss/dpo":
        return "loss"
    if key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        return "implicit rewards"
    if key == "rewards/accuracies":
        return "accuracy"
    if key in ("labels/order_agreement", "labels/in_loss_rate", "labels/mean_confidence"):
        return "labels"
    if key == "response/length":
        return "length"
    return None


def _dpo(doc: Doc, name: str, d: Path) -> None:
    """DPO / OAIF: loss, implicit rewards (beta x log-ratio to SFT) and their margin, the share of pairs
    the implicit rewards rank as the label does, and (OAIF) the judge's labels and the sample length."""
    path = d / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    panels: dict[str, dict] = {}
    for key in dict.fromkeys(k for r in rows for k in r):
        panel = dpo_panel(key)
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if panel and points:
            panels.setdefault(panel, {})[key] = tuple(zip(*points))
    if panels:
        doc.figure(f"{name}_curves", plots.curves_grid(panels, f"{name}: DPO curves", "step"),
                   f"{name} loss, implicit rewards, accuracy and labels per step")  # fmt: skip
    else:
        doc.p(f"{name}/metrics.jsonl is absent or empty.")
    metrics = _read_metrics(d)
    doc.table(["metric", "value"], scalars({k: v for k, v in metrics.items() if k != "last_step"}))


def _best_of_n(doc: Doc, name: str, d: Path) -> None:
    """Best-of-n: the mean score of the pick by the arm's reward model against n, beside the KL bound."""
    metrics = _read_metrics(d)
    by_n = metrics.get("by_n") or {}
    if by_n:
        ns = [int(k) for k in by_n]
        panels = {
            f"pick's {metrics.get('reward_model')} score": {"mean score": (ns, [by_n[k]["mean_score"] for k in by_n])},
            "KL bound (nats)": {"log n - (n-1)/n": (ns, [by_n[k]["kl_bound"] for k in by_n])},
        }
        doc.figure(f"{name}_by_n", plots.curves_grid(panels, f"{name}: best of n", "n"),
                   f"{name} reward-model score and KL bound against n")  # fmt: skip
        doc.table(["n", "mean score of the pick", "KL bound (nats)", "mean tokens"],
                  [[k, v["mean_score"], v["kl_bound"], v["mean_tokens"]] for k, v in by_n.items()])  # fmt: skip
    doc.table(["metric", "value"], scalars({k: v for k, v in metrics.items() if k != "by_n"}))


SECTIONS = {
    "generic": _generic,
    "sft": _sft,
    "label": _label,
    "reward": _reward,
    "rl": _rl,
    "dpo": _dpo,
    "best_of_n": _best_of_n,
    "frontier": _frontier,
}
