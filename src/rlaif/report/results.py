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
    _judge_free(doc, metrics.get("systems", {}), metrics.get("versus_sft", {}))


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


def _judge_free(doc: Doc, systems: dict, versus_sft: dict) -> None:
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
        policy, sft, paired = systems.get(name, {}), systems.get("sft", {}), versus_sft.get(name, {})
        parts = [
            f"{label} {fmt(policy[k]['mean'])} vs {fmt(sft[k]['mean'])} ({_versus(paired.get(k))})"
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


def _versus(paired: dict | None) -> str:
    """The verdict from the paired per-post difference to SFT (eval/metrics.json `versus_sft`) [E10]:
    two intervals of the same posts overlap even when every post moved the same way."""
    if not paired:
        return "no paired difference in eval/metrics.json; rerun `rlaif evaluate`"
    diff, lo, hi = paired["mean_diff"], paired["ci_low"], paired["ci_high"]
    verdict = "above SFT" if lo > 0 else "below SFT" if hi < 0 else "not distinguishable from SFT"
    return f"{verdict}: per-post difference {fmt(diff)}, paired 95% CI [{fmt(lo)}, {fmt(hi)}], {paired['n']} posts"


# ----------------------------------------------------------------------------------------------
# Agreement with people [H03]


TRAINED_ON = {
    "ai_labels": "RLAIF: AI labels",
    "human": "RLHF: human comparisons",
    "reference_preferred": "RLHF proxy: reference preferred",
}


def _judges(cfg: PipelineConfig, rundir: RunDir, manifest: dict) -> list[tuple[str, dict, dict]]:
    """(name, agreement block, the stage's metrics) of every judge measured on the held-out human
    comparisons: the AI labeler, then each reward model, in pipeline order."""
    found = []
    if manifest.get("label_alignment", {}).get("status") == "done":
        m = rundir.metrics("label_alignment").get("human_heldout") or {}
        if m.get("agreement_with_people"):
            found.append((f"AI labeler ({m.get('model')})", m["agreement_with_people"], m))
    for rm in pipeline.reward_models(cfg):
        if manifest.get(rm.name, {}).get("status") != "done":
            continue
        m = rundir.metrics(rm.name)
        if m.get("agreement_with_people"):
            trained_on = TRAINED_ON.get(m.get("source"), m.get("source"))
            found.append((f"reward model `{rm.name}` ({trained_on})", m["agreement_with_people"], m))
    return found


def _figure(m: dict | None, with_n: bool = False) -> str:
    """`value [low, high]` (and n) of an interval dict of rlaif.evaluation.agreement."""
    if not m or m.get("value") is None:
        return "—"
    n = f" (n={m['n']})" if with_n else ""
    return f"{fmt(m['value'])} [{fmt(m['ci_low'])}, {fmt(m['ci_high'])}]{n}"


def agreement_section(doc: Doc, cfg: PipelineConfig, rundir: RunDir, manifest: dict) -> None:
    """Every judge of the run against people on the same held-out human comparisons, with the length
    baseline and chance beside them, each with its 95% interval and its length-matched figure."""
    doc.h2("Agreement with people", anchor="agreement")
    judges = _judges(cfg, rundir, manifest)
    if not cfg.human.comparisons:
        doc.not_run("agreement with people", "no human comparisons configured (set human.comparisons)")
        return
    if not judges:
        doc.not_run("agreement with people", "no judge measured yet (stages label_alignment, reward, reward_rlhf)")
        return
    first = judges[0][1]
    human = cfg.human
    one_sided = "one_sided" in first.get("subsets", {})
    doc.p(
        f"{first['rows']} held-out human comparisons of {first['posts']} posts (human.comparisons, split by post: "
        "nothing here was trained on by the RLHF reward model). A judge is right when it prefers the summary the "
        "person chose (an exact tie counts 1/2). In these comparisons the longer summary usually wins, so each "
        "figure stands next to what length alone gets: the length baseline (the longer summary wins) on the same "
        f"rows; the accuracy on length-matched pairs (lengths within {human.length_match_chars} characters); a "
        "length-balanced accuracy (the mean of its accuracy where the longer summary won and where the shorter one "
        "won: 0.5 for a judge that only follows length); and the paired difference to the length baseline. High "
        f"confidence: strength |confidence - 5| >= {human.high_confidence_strength} (the 9-point preference scale "
        "read symmetrically, see the README). 95% intervals: bootstrap over posts."
    )
    headers = [
        "judge",
        f"accuracy, all {first['rows']} rows [95% CI]",
        "high confidence",
        f"length-matched (≤ {human.length_match_chars} chars)",
        "length-balanced",
        "minus length baseline",
        "prefers the longer summary",
    ] + (["seed's one-sided filter"] if one_sided else [])
    rows, notes = [], []
    for name, a, _ in judges:
        sub = a.get("subsets", {})
        row = [
            name,
            _figure(a["all_rows"]["accuracy"]),
            _figure((sub.get("high_confidence") or {}).get("accuracy"), with_n=True),
            _figure(a["length_matched"]["accuracy"], with_n=True),
            _figure(a["length_balanced"]),
            _figure(a["minus_length_baseline"]),
            _figure(a["prefers_longer"]),
        ] + ([_figure((sub.get("one_sided") or {}).get("accuracy"), with_n=True)] if one_sided else [])
        rows.append(row)
        if a["answered"] < a["rows"]:
            notes.append(
                f"{name}: {a['rows'] - a['answered']} of {a['rows']} comparisons undecided, counted 1/2 in the "
                f"all-rows accuracy; the other columns are on the {a['answered']} decided ones, where its alignment "
                f"(Lee et al.) is {_figure(a['accuracy'])} and the length baseline {_figure(a['length_baseline'])}."
            )
        if a.get("rows_id") != first.get("rows_id"):
            notes.append(f"{name} was measured on other rows than {judges[0][0]}: rerun its stage (`rlaif run`).")
    base = first["all_rows"]
    rows.append(
        [
            "length baseline: the longer summary wins",
            _figure(base["length_baseline"]),
            _figure(base["subset_length_baselines"].get("high_confidence"), with_n=True),
            _figure(base["length_matched_baseline"], with_n=True),
            "0.500 (by construction)",
            "0.000",
            "1.000",
        ]
        + ([_figure(base["subset_length_baselines"].get("one_sided"), with_n=True)] if one_sided else [])
    )
    rows.append(["chance", "0.500", "0.500", "0.500", "0.500", "—", "0.500"] + (["0.500"] if one_sided else []))
    doc.table(headers, rows)
    if one_sided:
        doc.p(
            f"The seed's filter (raw confidence >= {human.one_sided_min_confidence}) keeps only comparisons the "
            "second summary won: a judge that always prefers summaries[1] scores 1.0 there. It is shown only to set "
            "these figures beside the seed's; the high-confidence column is the symmetric one."
        )
    for note in notes:
        doc.note(note, warn="other rows" in note)
    for name, _, m in judges:
        wide = m.get("agreement_on_labeler_rows")
        if wide:  # human.labeler_max_heldout: the labeler alone on more held-out rows
            bias = wide.get("position_bias") or {}
            doc.p(
                f"{name} on {wide['rows']} held-out comparisons ({wide['posts']} posts; the rows above and further "
                f"ones, human.labeler_max_heldout): accuracy {_figure(wide['all_rows']['accuracy'])} (alignment on "
                f"the {wide['answered']} decided: {_figure(wide['accuracy'])}), length baseline on the same rows "
                f"{_figure(wide['all_rows']['length_baseline'])}; length-matched "
                f"{_figure(wide['length_matched']['accuracy'], with_n=True)} against "
                f"{_figure(wide['length_matched']['length_baseline'])}; length-balanced "
                f"{_figure(wide['length_balanced'])}; high confidence "
                f"{_figure(wide['subsets']['high_confidence']['accuracy'], with_n=True)}; verdict flips when the order "
                f"is swapped {fmt(bias.get('flip_rate'))}, answers choosing the first slot {fmt(bias.get('first_rate'))}."
            )
    extra = []
    for name, a, m in judges:
        if "score_std" in a:
            extra.append(
                [
                    name,
                    f"score std {fmt(a['score_std'])}; correlation of score with length {fmt(a.get('score_length_correlation'))}",
                    f"loss {m.get('loss')}, "
                    + (f"label clamp {m['label_clamp']}" if m.get("label_clamp") else "no label clamp"),
                ]
            )
        else:
            bias, cal = a.get("position_bias") or {}, a.get("calibration") or {}
            extra.append(
                [
                    name,
                    f"verdict flips when the order is swapped {fmt(bias.get('flip_rate'))}; answers choosing the first "
                    f"slot {fmt(bias.get('first_rate'))}",
                    f"soft label vs human choice: ECE {fmt(cal.get('expected_calibration_error'))}, "
                    f"Brier {fmt(cal.get('brier'))} (0.25 = always 0.5)",
                ]
            )
    doc.table(["judge", "scale / position bias", "training / calibration"], extra)
    doc.p(
        "Score std is the spread of a reward model's scores over the held-out summaries: the PPO stage adds the score "
        "to a KL penalty with one kl_coef, so a narrower reward model (soft labels clamped to [0.4, 0.6], [D17]) is "
        "regularised more than a wider one."
    )


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
