"""The report's headline: win rates with the judge's and the labeler's reliability beside them, the
judge-free checks, and sample summaries side by side. A small judge (SmolLM2-135M) shows no signal;
this section says so in a warning instead of letting a 50% win rate pass for a result.
"""

from __future__ import annotations

from rlaif import pipeline
from rlaif.artifacts import RunDir
from rlaif.config import PipelineConfig
from rlaif.jsonl import read_jsonl
from rlaif.labelers.annotate import label_position_bias
from rlaif.pipeline import system_label
from rlaif.report import plots
from rlaif.report.render import Doc, fmt

UNRELIABLE_FLIP_RATE = 0.5  # a judge that keeps the slot in half the swaps is mostly reading positions


def labeler_alignment(rundir: RunDir) -> list[list[str]]:
    """Rows (what, value) of the labeler's agreement with human choices, per human comparison set:
    label_alignment/metrics.json (one entry per task, with the position bias on that set), and
    labels/metrics.json when the labeled pairs carried human choices (their position bias is the
    labeler's own row of the table, so it is not repeated here)."""
    sets = {task: (m, True) for task, m in rundir.metrics("label_alignment").items()}
    if "alignment_with_humans" in (labels := rundir.metrics("label")):
        sets["labeled pairs"] = (labels, False)
    rows = []
    for task, (m, with_bias) in sets.items():
        align = m.get("alignment_with_humans") or {}
        if align.get("accuracy") is None:
            continue
        rows.append(
            [f"agreement with humans ({task}, {align.get('pairs')} pairs; 0.5 = chance)", fmt(align["accuracy"])]
        )
        flip = (m.get("position_bias") or {}).get("flip_rate")
        if with_bias and flip is not None:
            rows.append([f"verdict flips when the order is swapped ({task})", fmt(flip)])
    return rows


def _ci(m: dict, key: str = "", digits: int = 3) -> str:
    lo, hi = m.get(f"{key}ci_low"), m.get(f"{key}ci_high")
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]" if lo is not None else "—"


def results_section(doc: Doc, cfg: PipelineConfig, rundir: RunDir, manifest: dict) -> None:
    doc.h2("Results: win rates", anchor="results")
    entry = manifest.get("evaluate")
    if not entry or entry.get("status") != "done":
        doc.not_run("stage evaluate", "not run" if not entry else entry.get("status", "?"))
        return
    metrics = rundir.metrics("evaluate")
    comparisons, judge = metrics.get("comparisons", {}), metrics.get("judge", {})
    doc.p(
        f"{metrics.get('posts')} held-out posts ({metrics.get('posts_with_reference')} with a human reference); every "
        f"system decodes greedily with at most {metrics.get('max_new_tokens')} new tokens. Each pair is judged in both "
        "orders; a win needs both, a disagreement is a tie, and ties count 1/2. LC = length-controlled (AlpacaEval 2 "
        "style logistic regression on the length difference, evaluated at equal length)."
    )
    rows = []
    for name, m in comparisons.items():
        a, b = name.split(":")
        label = f"{system_label(a)} vs {system_label(b)}"
        rows.append(
            [
                label,
                m["win_rate"],
                _ci(m),
                m.get("lc_win_rate"),
                _ci(m, "lc_"),
                f"{m['wins']} / {m['ties']} / {m['losses']}",
                m["n"],
                (m.get("position_bias") or {}).get("flip_rate"),
                m.get("undecided_orders"),
            ]
        )
    if rows:
        doc.table(
            [
                "comparison (win rate of the first)",
                "win rate",
                "95% CI",
                "LC win rate",
                "LC 95% CI",
                "W / T / L",
                "n",
                "judge flips on swap",
                "undecided orders",
            ],
            rows,
        )
        forest = [(r[0], r[1], comparisons[k]["ci_low"], comparisons[k]["ci_high"]) for r, k in zip(rows, comparisons)]
        doc.figure("win_rates", plots.win_rate_plot(forest, "Win rates"), "win rates with 95% confidence intervals")
    else:
        doc.not_run("comparisons", "none of the configured comparisons had both systems")
    _reliability(doc, rundir, manifest, comparisons, judge)
    _judge_free(doc, metrics.get("systems", {}))


def _reliability(doc: Doc, rundir: RunDir, manifest: dict, comparisons: dict, judge: dict) -> None:
    doc.h3("Can the judge and the labeler be trusted?")
    n_orders = 2 * sum(m["n"] for m in comparisons.values())
    undecided = sum(m.get("undecided_orders", 0) for m in comparisons.values())
    rows = [
        ["evaluation judge", f"{judge.get('backend')} / {judge.get('model')} / {judge.get('prompt_id')}"],
        [
            "judge: verdict flips when the order is swapped (same slot both times; 0 = consistent)",
            fmt(judge.get("flip_rate")),
        ],
        ["judge: answers choosing the first slot (0.5 = unbiased)", fmt(judge.get("first_rate"))],
        ["judge: undecided orders (no `1`/`2` among top tokens)", f"{undecided} / {n_orders}"],
    ]
    label_dir = rundir.stage_dir("label")
    if manifest.get("label", {}).get("status") == "done":
        labels = read_jsonl(label_dir / "labels.jsonl") if (label_dir / "labels.jsonl").exists() else []
        bias = label_position_bias(labels)  # labels/metrics.json's measure, the judge's too [L05, E03]
        rows += [
            ["AI labeler: verdict flips when the order is swapped", fmt(bias["flip_rate"])],
            ["AI labeler: answers choosing the first slot", fmt(bias["first_rate"])],
        ]
        alignment = labeler_alignment(rundir)
        rows += [[f"AI labeler: {k}", v] for k, v in alignment] or [
            ["AI labeler alignment with humans", "not measured (run `rlaif label CONFIG --eval-alignment`)"]
        ]
    else:
        rows.append(["AI labeler", "stage label not run"])
    doc.table(["check", "value"], rows)
    flip = judge.get("flip_rate")
    problems = []
    if flip is None:
        problems.append("the judge never gave a usable answer in both orders")
    elif flip >= UNRELIABLE_FLIP_RATE:
        problems.append(
            f"the judge keeps the same slot in {flip:.0%} of swapped pairs, so its verdicts mostly follow position"
        )
    if n_orders and undecided / n_orders >= 0.5:
        problems.append(f"{undecided / n_orders:.0%} of the judge's answers were undecided")
    if comparisons and all(m["ci_low"] <= 0.5 <= m["ci_high"] for m in comparisons.values()):
        problems.append("every 95% interval contains 50%, so no comparison is distinguishable from chance")
    if problems:  # [E08]
        doc.note(
            "These win rates carry no evidence of a difference between the systems: "
            + "; ".join(problems)
            + ". A small judge cannot tell these summaries apart; use a stronger judge (e.g. evaluate.judge.backend="
            "openai_api with GPT-4o or a vLLM server) and the judge-free checks below before reading anything into them.",
            warn=True,
        )
    else:
        doc.note(
            "The judge answers consistently across orders on most pairs; the intervals above are the uncertainty from "
            "the number of posts only, not from the judge's own errors."
        )


def _judge_free(doc: Doc, systems: dict) -> None:
    doc.h3("Judge-free checks")
    rms = sorted({k for m in systems.values() for k in m if k.startswith("rm_score/")})
    headers = (
        ["system", "n", "mean words", "mean tokens", "EOS rate"]
        + [f"{k.split('/', 1)[1]} score [95% CI]" for k in rms]
        + ["ROUGE-L vs reference [95% CI]"]
    )
    rows = []
    for name, m in systems.items():
        row = [system_label(name), m.get("n"), m.get("mean_words"), m.get("mean_tokens"), m.get("eos_rate")]
        row += [f"{fmt(m[k]['mean'])} {_ci(m[k])}" if k in m else "—" for k in rms]
        row.append(f"{fmt(m['rouge_l']['mean'])} {_ci(m['rouge_l'])}" if "rouge_l" in m else "—")
        rows.append(row)
    doc.table(headers, rows)
    own_rm = {s.name: f"rm_score/{s.reward}" for s in pipeline.STAGES if s.role == "policy" and s.reward}
    verdicts = []
    for name, rm in own_rm.items():  # did each RL policy move the judge-free checks above SFT?
        policy, sft = systems.get(name, {}), systems.get("sft", {})
        parts = [
            f"{label} {fmt(policy[k]['mean'])} vs {fmt(sft[k]['mean'])} ({_versus(policy[k], sft[k])})"
            for k, label in ((rm, f"its reward model ({rm.split('/', 1)[1]})"), ("rouge_l", "ROUGE-L"))
            if k in policy and k in sft
        ]
        if parts:
            verdicts.append(f"{system_label(name)}: " + "; ".join(parts) + ".")
    if verdicts:
        doc.p(" ".join(verdicts))
    doc.p(
        "Reward-model scores are on held-out posts; a policy trained against a reward model is scored here by that "
        "same model too, so its score there is optimistic. ROUGE-L F1 is over lowercased word tokens, against the "
        "human reference where the post has one."
    )


def _versus(policy: dict, sft: dict) -> str:
    side = "above" if policy["mean"] > sft["mean"] else "not above"
    separate = policy["ci_low"] > sft["ci_high"] or policy["ci_high"] < sft["ci_low"]
    return f"{side} SFT; " + ("the 95% intervals do not overlap" if separate else "the 95% intervals overlap")


def samples_section(doc: Doc, cfg: PipelineConfig, rundir: RunDir, manifest: dict) -> None:
    doc.h2("Sample summaries", anchor="samples")
    d = rundir.stage_dir("evaluate")
    if manifest.get("evaluate", {}).get("status") != "done" or not (d / "posts.jsonl").exists():
        doc.not_run("samples (from stage evaluate)")
        return
    posts = read_jsonl(d / "posts.jsonl")[: cfg.report.num_samples]
    systems = [s.name for s in pipeline.policies(cfg) if (d / "generations" / f"{s.name}.jsonl").exists()]
    text = {s: {r["id"]: r["summary"] for r in read_jsonl(d / "generations" / f"{s}.jsonl")} for s in systems}
    limit = cfg.report.max_post_chars
    rows = []
    for post in posts:
        body = post["prompt"].rstrip().removesuffix("TL;DR:").rstrip()
        body = body if len(body) <= limit else body[:limit].rstrip() + " …"
        rows.append([body, post.get("reference") or "—"] + [text[s].get(post["id"], "—") or "(empty)" for s in systems])
    doc.table(["post", "human reference"] + [system_label(s) for s in systems], rows, css_class="samples")
