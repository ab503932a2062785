"""Best-of-n picks and their KL to the sampling policy, as pure functions. [P11][P12]"""

from __future__ import annotations

import math


def kl_bound(n: int) -> float:
    """log n - (n - 1) / n: the KL(best-of-n || base policy) in nats that Stiennon et al. 2020 and
    Gao et al. 2022 report, which Beirami et al. 2024 (arXiv 2401.01879, Theorem 1) prove is an upper
    bound (equal only when no two samples can tie). 0 at n = 1. [P12]"""
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def n_ladder(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself when it is not a power of two."""
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got {n}")
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return out + [n]


def pick(scores: list[float], n: int) -> int:
    """Index of the best of the first n scores; the earliest wins a tie (a pick never depends on
    samples after the n-th, so the pick at n is the best-of-n of the first n samples). [P11]"""
    if not 1 <= n <= len(scores):
        raise ValueError(f"n={n} outside 1..{len(scores)} samples")
    best = 0
    for i in range(1, n):
        if scores[i] > scores[best]:
            best = i
    return best
