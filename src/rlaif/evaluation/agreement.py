"""Agreement with people: how often a judge (a reward model, the AI labeler, or "the longer summary
wins") picks the summary a person chose, on held-out human comparisons, with what length alone
explains set beside it. Pure functions of per-comparison arrays; numpy only, no I/O. [H03]

Every judge is reduced to `p_chosen`, the probability it gives the human-chosen summary: for a
reward model sigmoid(score(chosen) - score(rejected)), for the labeler its soft label toward the
chosen summary, NaN where it gave no answer (undecided). A row scores 1 when p_chosen > 0.5, 1/2 at
exactly 0.5, 0 below (Lee et al. 2023's "AI Labeler Alignment" for the labeler; accuracy for a
reward model). Lengths are in characters, a unit every judge shares (no tokenizer).

In TL;DR comparisons the longer summary usually wins (batch 13: 70.9% of rows), so an accuracy
means little alone. Beside it stand, on the same rows: the length baseline; the accuracy on
length-matched pairs; a length-balanced accuracy (the mean of the accuracy where the longer summary
won and where the shorter one did: 0.5 for a judge that only follows length); the paired difference
to the length baseline; and how often the judge prefers the longer summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from rlaif.evaluation import stats


def correct_scores(p_chosen: np.ndarray) -> np.ndarray:
    """1 where the judge prefers the chosen summary, 1/2 at exactly 0.5, 0 where it prefers the other;
    NaN where it did not answer."""
    p = np.asarray(p_chosen, dtype=float)
    return np.where(np.isnan(p), np.nan, (p > 0.5) + 0.5 * (p == 0.5))


def longer_wins(len_chosen: np.ndarray, len_rejected: np.ndarray) -> np.ndarray:
    """The length baseline's score per row: 1 if the chosen summary is the longer, 1/2 if equal, else 0."""
    delta = np.asarray(len_chosen, dtype=float) - np.asarray(len_rejected, dtype=float)
    return (delta > 0) + 0.5 * (delta == 0)


def interval(values: np.ndarray, groups: np.ndarray, n_boot: int, seed: int, statistic=np.mean) -> dict:
    """{value, ci_low, ci_high, n}: the statistic with its 95% post-clustered bootstrap interval [H04];
    value None on no rows."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    lo, hi = stats.cluster_bootstrap_ci(values, groups, statistic=statistic, n_boot=n_boot, seed=seed)
    return {"value": float(statistic(values)), "ci_low": lo, "ci_high": hi, "n": int(len(values))}


def length_balanced(correct: np.ndarray, delta: np.ndarray) -> float:
    """The accuracy as if the longer summary won half the time: the mean of the accuracy on the pairs
    where the chosen summary is the longer one and on those where it is the shorter one (equal lengths
    left out; NaN when either kind is missing). A judge that only follows length gets 1 and 0 there,
    hence 0.5; a judge blind to length keeps its accuracy. [H03]

    (A logistic fit of being right on the length difference, read at equal length, is the other
    usual control; it is unstable here: a judge that follows length separates the data perfectly and
    leaves the intercept undetermined.)"""
    correct, delta = np.asarray(correct, dtype=float), np.asarray(delta, dtype=float)
    longer, shorter = correct[delta > 0], correct[delta < 0]
    if len(longer) == 0 or len(shorter) == 0:
        return float("nan")
    return float((longer.mean() + shorter.mean()) / 2)


def calibration(p_chosen: np.ndarray, bins: int = 10) -> dict:
    """The judge's probabilities against how often people chose that summary: each row is counted from
    both sides, (p_chosen, chosen) and (1 - p_chosen, not chosen), in equal-width bins, so the table
    does not depend on which summary is called chosen. Also the expected calibration error (count-
    weighted |predicted - observed|) and the Brier score mean((1 - p_chosen)^2). NaN rows are left out."""
    p = np.asarray(p_chosen, dtype=float)
    p = p[~np.isnan(p)]
    if len(p) == 0:
        return {"table": [], "expected_calibration_error": None, "brier": None, "n": 0}
    pred, label = np.concatenate([p, 1 - p]), np.concatenate([np.ones_like(p), np.zeros_like(p)])
    index = np.minimum((pred * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for i in range(bins):
        sel = index == i
        n = int(sel.sum())
        predicted = float(pred[sel].mean()) if n else None
        observed = float(label[sel].mean()) if n else None
        table.append({"bin": [i / bins, (i + 1) / bins], "count": n, "predicted": predicted, "observed": observed})
        if n:
            ece += n * abs(predicted - observed)
    return {
        "table": table,
        "expected_calibration_error": ece / len(pred),
        "brier": float(np.mean((1 - p) ** 2)),
        "n": int(len(p)),
    }


def agreement(
    p_chosen: Sequence[float],
    len_chosen: Sequence[float],
    len_rejected: Sequence[float],
    groups: Sequence,
    subsets: dict[str, Sequence[bool]] | None = None,
    length_match: float = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """A judge's agreement with people on N comparisons, each figure with its 95% interval [H03].

    p_chosen (N,): the judge's probability for the human-chosen summary, NaN where it gave none.
    len_chosen, len_rejected (N,): the two summaries' lengths. groups (N,): the post of each row
    (intervals resample posts [H04]). subsets: name -> (N,) mask of further row sets (e.g. the
    high-confidence comparisons), each reported with its own length baseline. length_match: the
    largest length difference of a length-matched pair.

    `accuracy` and everything beside it are on the rows where the judge answered; `all_rows` counts
    a missing answer as 1/2, on every row, and has the length baseline's figures on every row (the
    same for every judge measured on these rows).
    """
    p = np.asarray(p_chosen, dtype=float)
    len_c, len_r = np.asarray(len_chosen, dtype=float), np.asarray(len_rejected, dtype=float)
    groups = np.asarray(groups, dtype=object).astype(str)
    if not (len(p) == len(len_c) == len(len_r) == len(groups)):
        raise ValueError(f"agreement: lengths differ ({len(p)}, {len(len_c)}, {len(len_r)}, {len(groups)})")
    correct, baseline = correct_scores(p), longer_wins(len_c, len_r)
    delta = len_c - len_r
    answered = ~np.isnan(p)
    c, base, d, g = correct[answered], baseline[answered], delta[answered], groups[answered]
    matched = np.abs(d) <= length_match
    unequal = d != 0
    prefers = np.where(d[unequal] > 0, c[unequal], 1 - c[unequal])  # 1: the judge picked the longer one
    result = {
        "rows": int(len(p)),
        "posts": int(len(set(groups))),
        "answered": int(answered.sum()),
        "accuracy": interval(c, g, n_boot, seed),
        "length_baseline": interval(base, g, n_boot, seed),
        "minus_length_baseline": interval(c - base, g, n_boot, seed),
        "length_matched": {
            "max_length_difference": length_match,
            "accuracy": interval(c[matched], g[matched], n_boot, seed),
            "length_baseline": interval(base[matched], g[matched], n_boot, seed),
        },
        "length_balanced": interval(
            np.stack([c, d], axis=1), g, n_boot, seed, statistic=lambda m: length_balanced(m[:, 0], m[:, 1])
        )
        if len(c)
        else interval(c, g, n_boot, seed),
        "prefers_longer": interval(prefers, g[unequal], n_boot, seed),
        "all_rows": {
            "accuracy": interval(np.where(answered, correct, 0.5), groups, n_boot, seed),
            "length_baseline": interval(baseline, groups, n_boot, seed),
            "length_matched_baseline": interval(
                baseline[np.abs(delta) <= length_match], groups[np.abs(delta) <= length_match], n_boot, seed
            ),
            "subset_length_baselines": {},
        },
        "subsets": {},
    }
    for name, mask in (subsets or {}).items():
        full = np.asarray(mask, dtype=bool)
        m = full[answered]
        result["subsets"][name] = {
            "accuracy": interval(c[m], g[m], n_boot, seed),
            "length_baseline": interval(base[m], g[m], n_boot, seed),
        }
        result["all_rows"]["subset_length_baselines"][name] = interval(baseline[full], groups[full], n_boot, seed)
    return result


def reward_model_extras(
    score_chosen: Sequence[float], score_rejected: Sequence[float], len_chosen: Sequence[float], len_rejected
) -> dict:
    """What a reward model adds to `agreement`: its score scale (std of every held-out summary's
    score; a soft-label RM trained on clamped labels has a smaller one, [D17]) and the correlation of
    score with length over those summaries."""
    scores = np.concatenate([np.asarray(score_chosen, dtype=float), np.asarray(score_rejected, dtype=float)])
    lengths = np.concatenate([np.asarray(len_chosen, dtype=float), np.asarray(len_rejected, dtype=float)])
    return {
        "score_std": float(scores.std(ddof=1)) if len(scores) > 1 else None,
        "score_mean": float(scores.mean()) if len(scores) else None,
        "score_length_correlation": stats.pearson(scores, lengths),
    }


def agreement_on_comparisons(
    rows: list[dict],
    p_chosen: Sequence[float],
    high_confidence_strength: int,
    one_sided_min_confidence: int | None,
    length_match: float,
    n_boot: int,
    seed: int,
) -> dict:
    """`agreement` on comparison records (rlaif.data.comparisons: chosen, rejected, post_id,
    strength, confidence), with the high-confidence subset (strength >= high_confidence_strength
    [H01]) and, when asked, the seed's one-sided subset (raw confidence >= one_sided_min_confidence)."""
    subsets = {
        "high_confidence": [r["strength"] is not None and r["strength"] >= high_confidence_strength for r in rows]
    }
    if one_sided_min_confidence is not None:
        subsets["one_sided"] = [
            r["confidence"] is not None and r["confidence"] >= one_sided_min_confidence for r in rows
        ]
    result = agreement(
        p_chosen,
        [len(r["chosen"]) for r in rows],
        [len(r["rejected"]) for r in rows],
        [r["post_id"] for r in rows],
        subsets,
        length_match,
        n_boot,
        seed,
    )
    result["subsets"]["high_confidence"]["min_strength"] = high_confidence_strength
    if one_sided_min_confidence is not None:
        result["subsets"]["one_sided"]["min_confidence"] = one_sided_min_confidence
    result["rows_id"] = rows_id(rows)
    return result


def rows_id(rows: list[dict]) -> str:
    """A hash of the comparison ids, so the report can check that two judges were measured on the same rows."""
    return hashlib.sha256("\n".join(sorted(r["id"] for r in rows)).encode()).hexdigest()[:12]
