"""Pure statistics for the evaluation: outcomes from two-order judgements, win rates with bootstrap
confidence intervals (plain, paired, and clustered by post), the length-controlled win rate, ROUGE-L,
correlation. numpy only, no I/O, no config objects.

Outcomes are scored from the point of view of system A: 1.0 win, 0.5 tie, 0.0 loss.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

WIN, TIE, LOSS = "win", "tie", "loss"
SCORE = {WIN: 1.0, TIE: 0.5, LOSS: 0.0}


def mean_or_none(values: Sequence[float]) -> float | None:
    """Plain mean of a list of numbers (booleans count 0/1); None for an empty list, so a metric over
    nothing is shown as missing rather than as 0."""
    values = list(values)
    return float(sum(values) / len(values)) if values else None


# ----------------------------------------------------------------------------------------------
# Judgements -> outcomes


def preferred_position(p_first: float | None, p_second: float | None) -> str | None:
    """'first' or 'second' for one judged order; None when the judge gave no usable answer or an exact tie."""
    if p_first is None or p_second is None or p_first == p_second:
        return None
    return "first" if p_first > p_second else "second"


def outcome(ab: str | None, ba: str | None) -> str:
    """Outcome for A from the position the judge preferred with A shown first (`ab`) and with B
    shown first (`ba`). A win needs A chosen in both orders; orders that disagree, or an order with
    no answer, make a tie (Lee et al. 2023 count a pair only when it survives the swap). [E03]"""
    a_in_ab = {"first": True, "second": False}.get(ab)
    a_in_ba = {"second": True, "first": False}.get(ba)
    if a_in_ab is None or a_in_ba is None or a_in_ab != a_in_ba:
        return TIE
    return WIN if a_in_ab else LOSS


def position_bias(ab_positions: Sequence[str | None], ba_positions: Sequence[str | None]) -> dict:
    """How much the judge follows the slot instead of the summary, over pairs judged in both orders.

    `flip_rate`: share of pairs whose verdict changes when the order is swapped (the judge chose the
    same slot both times); 0 for a consistent judge, 1 for one that only reads positions.
    `first_rate`: share of single answers that chose the first slot (0.5 when unbiased). [E03]
    """
    both = [(x, y) for x, y in zip(ab_positions, ba_positions, strict=True) if x is not None and y is not None]
    answers = [p for p in (*ab_positions, *ba_positions) if p is not None]
    return {
        "flip_rate": float(np.mean([x == y for x, y in both])) if both else None,
        "first_rate": float(np.mean([p == "first" for p in answers])) if answers else None,
        "answered_pairs": len(both),
    }


# ----------------------------------------------------------------------------------------------
# Win rate and bootstrap


def win_rate(scores: Sequence[float]) -> float:
    """Mean outcome score: wins count 1, ties 1/2."""
    if len(scores) == 0:
        raise ValueError("win_rate of no outcomes")
    return float(np.mean(scores))


def bootstrap_ci(
    values: Sequence[float], statistic=np.mean, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over items resampled with replacement.

    `values` is 1-D (one number per item) or 2-D (one row per item); `statistic` gets the resampled
    array of the same rank. The interval is the (alpha/2, 1 - alpha/2) quantiles of the replicates. [E04]
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("bootstrap of no items")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # (n_boot, n)
    replicates = np.array([statistic(values[row]) for row in idx])
    lo, hi = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap_ci(
    x: Sequence[float], y: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict:
    """Mean of the per-item difference x_i - y_i (two systems measured on the same items, e.g. the
    same posts) with its percentile bootstrap interval, the items resampled as pairs. Pairing removes
    what the items share (a hard post is hard for both), so the interval is narrower than comparing
    two independent intervals, and it is the interval of the difference itself. [E10]"""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired values of different shapes: {x.shape} and {y.shape}")
    diff = x - y
    lo, hi = bootstrap_ci(diff, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"mean_diff": float(diff.mean()), "ci_low": lo, "ci_high": hi, "n": len(diff)}


def cluster_bootstrap_ci(
    values: Sequence[float],
    groups: Sequence,
    statistic=np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` with whole groups resampled (all rows of a post
    together), for rows that are not independent: comparisons of one post share its difficulty.
    `values` is 1-D or 2-D (one row per item). With one item per group, in order, it draws exactly
    what bootstrap_ci draws. [H04]"""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("bootstrap of no items")
    if len(groups) != len(values):
        raise ValueError(f"{len(values)} values but {len(groups)} group labels")
    _, first, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_index=True, return_inverse=True)
    order = np.argsort(first)  # groups in order of first appearance, so singletons reproduce bootstrap_ci
    members = [np.flatnonzero(inverse == g) for g in order]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(members), size=(n_boot, len(members)))  # (n_boot, groups)
    replicates = np.array([statistic(values[np.concatenate([members[g] for g in row])]) for row in idx])
    # A statistic undefined on some resample (NaN, e.g. a stratum drawn empty) leaves that replicate out.
    lo, hi = np.nanquantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side is constant or there are fewer than 2 items."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


# ----------------------------------------------------------------------------------------------
# Length-controlled win rate (AlpacaEval 2, Dubois et al. 2024, arXiv 2404.04475)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Weights w of p = sigmoid(X @ w), X = [1, x...], by Newton's method on the Bernoulli
    log-likelihood with soft targets y in [0, 1] and a small ridge (not on the intercept) that keeps
    separable data finite."""
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    y = np.asarray(y, dtype=float)
    X = np.hstack([np.ones((len(y), 1)), x])  # (N, 1 + F)
    ridge = np.full(X.shape[1], l2)
    ridge[0] = 0.0
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))  # (N,)
        grad = X.T @ (p - y) + ridge * w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + np.diag(ridge) + 1e-9 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def length_features(len_a: Sequence[float], len_b: Sequence[float]) -> np.ndarray:
    """tanh of the length difference A - B over its standard deviation, AlpacaEval 2's length term."""
    delta = np.asarray(len_a, dtype=float) - np.asarray(len_b, dtype=float)
    std = delta.std()
    return np.tanh(delta / std) if std > 0 else np.zeros_like(delta)


def lc_win_rate(scores: Sequence[float], len_a: Sequence[float], len_b: Sequence[float]) -> dict:
    """Length-controlled win rate: fit logit P(A wins) = b + w * tanh(dlen / std) on the outcomes
    (ties as 1/2) and report sigmoid(b), the predicted win rate at equal length. This is AlpacaEval
    2's GLM with one model pair, so the per-model and instruction-difficulty terms collapse into b. [E05]"""
    y = np.asarray(scores, dtype=float)
    feats = length_features(len_a, len_b)
    if not np.any(feats):  # no length variation: nothing to control for
        return {"lc_win_rate": float(y.mean()), "intercept": None, "length_coef": 0.0}
    b, w = fit_logistic(feats, y)
    return {"lc_win_rate": float(1.0 / (1.0 + np.exp(-b))), "intercept": float(b), "length_coef": float(w)}


# ----------------------------------------------------------------------------------------------
# ROUGE-L (Lin 2004), as rouge_score computes it without stemming


_TOKEN = re.compile(r"[a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """Lowercased alphanumeric word tokens (rouge_score's default tokenizer, no stemming)."""
    return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, by the two-row dynamic programme."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 = 2PR / (P + R), P = LCS / |candidate|, R = LCS / |reference|; 0 if either is empty. [E06]"""
    cand, ref = rouge_tokens(candidate), rouge_tokens(reference)
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)
