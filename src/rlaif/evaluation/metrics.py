"""The numbers evaluate reports: per comparison of two systems (win rate, interval, length-controlled
win rate, the judge's position bias), per system (length, EOS rate, reward-model scores, ROUGE-L
against the references), and per policy its paired difference to SFT on the same posts. Pure
functions of the cached rows; the statistics are in `stats`.
"""

from __future__ import annotations

import numpy as np

from rlaif.evaluation import stats
from rlaif.pipeline import REFERENCE


def judge_position_bias(rows: list[dict]) -> dict:
    return stats.position_bias(
        [r["preferred_position"]["ab"] for r in rows], [r["preferred_position"]["ba"] for r in rows]
    )


def comparison_metrics(rows: list[dict], n_boot: int, seed: int) -> dict:
    scores = np.array([stats.SCORE[r["outcome"]] for r in rows])
    len_a = np.array([len(r["summary_a"].split()) for r in rows], dtype=float)
    len_b = np.array([len(r["summary_b"].split()) for r in rows], dtype=float)
    lo, hi = stats.bootstrap_ci(scores, n_boot=n_boot, seed=seed)
    lc = stats.lc_win_rate(scores, len_a, len_b)
    lc_lo, lc_hi = stats.bootstrap_ci(
        np.stack([scores, len_a, len_b], axis=1),
        n_boot=n_boot,
        seed=seed,
        statistic=lambda m: stats.lc_win_rate(m[:, 0], m[:, 1], m[:, 2])["lc_win_rate"],
    )
    outcomes = [r["outcome"] for r in rows]
    undecided = sum(o["p_first"] is None for r in rows for o in r["orders"])
    return {
        "win_rate": stats.win_rate(scores),
        "ci_low": lo,
        "ci_high": hi,
        "wins": outcomes.count(stats.WIN),
        "ties": outcomes.count(stats.TIE),
        "losses": outcomes.count(stats.LOSS),
        "n": len(rows),
        "lc_win_rate": lc["lc_win_rate"],
        "lc_ci_low": lc_lo,
        "lc_ci_high": lc_hi,
        "length_coef": lc["length_coef"],
        "mean_words_a": float(len_a.mean()),
        "mean_words_b": float(len_b.mean()),
        "undecided_orders": undecided,
        "position_bias": judge_position_bias(rows),
    }


def system_metrics(system, rows, references, rm_scores, tokenizer, n_boot, seed) -> dict:
    """Judge-free checks of one system: length, EOS rate, reward-model scores, ROUGE-L. [E06]"""
    texts = [r["summary"] for r in rows.values()]
    metrics = {
        "n": len(texts),
        "mean_words": float(np.mean([len(t.split()) for t in texts])),
        "mean_tokens": float(np.mean([len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts])),
        "empty": sum(not t.strip() for t in texts),
    }
    eos = [r["ended_with_eos"] for r in rows.values() if r["ended_with_eos"] is not None]
    if eos:
        metrics["eos_rate"] = float(np.mean(eos))
    for rm, by_system in rm_scores.items():
        values = np.array([by_system[system][i] for i in rows])
        lo, hi = stats.bootstrap_ci(values, n_boot=n_boot, seed=seed)
        metrics[f"rm_score/{rm}"] = {"mean": float(values.mean()), "ci_low": lo, "ci_high": hi}
    if system != REFERENCE and references:
        rouge = np.array([stats.rouge_l(rows[i]["summary"], ref) for i, ref in references.items() if i in rows])
        lo, hi = stats.bootstrap_ci(rouge, n_boot=n_boot, seed=seed)
        metrics["rouge_l"] = {"mean": float(rouge.mean()), "ci_low": lo, "ci_high": hi, "n": len(rouge)}
    return metrics


def versus_baseline(system, baseline, rows, references, rm_scores, n_boot, seed) -> dict:
    """Paired differences `system - baseline` on the posts both summarised: the mean per-post
    difference of each reward model's score and of ROUGE-L, with a paired bootstrap interval [E10].
    `rows`: system -> id -> summary row; `rm_scores`: rm -> system -> id -> score."""
    ids = [i for i in rows[system] if i in rows[baseline]]
    out = {"n": len(ids)}
    if not ids:
        return out
    for rm, by_system in rm_scores.items():
        x = [by_system[system][i] for i in ids]
        y = [by_system[baseline][i] for i in ids]
        out[f"rm_score/{rm}"] = stats.paired_bootstrap_ci(x, y, n_boot=n_boot, seed=seed)
    with_ref = [i for i in ids if i in references]
    if with_ref:
        x = [stats.rouge_l(rows[system][i]["summary"], references[i]) for i in with_ref]
        y = [stats.rouge_l(rows[baseline][i]["summary"], references[i]) for i in with_ref]
        out["rouge_l"] = stats.paired_bootstrap_ci(x, y, n_boot=n_boot, seed=seed)
    return out
