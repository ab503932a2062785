"""Report figures as PNG bytes (matplotlib, Agg backend: no display needed).

Each function takes plain numbers and returns the encoded PNG, which the report embeds as base64
in report.html and writes beside report.md.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless machines have no display
import matplotlib.pyplot as plt  # noqa: E402

FIGSIZE = (6.0, 3.4)
Series = tuple[Sequence[float], Sequence[float]]  # (x, y)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def line_plot(series: dict[str, Series], title: str, xlabel: str, ylabel: str = "") -> bytes:
    """One line per named series; a series with a single point is drawn as a marker."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o" if len(x) <= 20 else None, markersize=3, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def curves_grid(panels: dict[str, dict[str, Series]], title: str, xlabel: str) -> bytes:
    """Side-by-side panels (e.g. reward, KL, length), each with one or more lines."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), squeeze=False)
    for ax, (panel, series) in zip(axes[0], panels.items()):
        for name, (x, y) in series.items():
            ax.plot(x, y, marker="o" if len(x) <= 20 else None, markersize=3, label=name)
        ax.set(title=panel, xlabel=xlabel)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return _png(fig)


def histograms(
    panels: dict[str, Sequence[float]], title: str, bins: int = 20, value_range: tuple[float, float] = (0.0, 1.0)
) -> bytes:
    """One histogram per panel over a shared range, with a dashed line at its midpoint."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], panels.items()):
        ax.hist(list(values), bins=bins, range=value_range, color="#4c72b0", edgecolor="white")
        ax.axvline(sum(value_range) / 2, color="gray", linestyle="--", linewidth=1)
        ax.set(title=name, ylabel="count")
    fig.suptitle(title)
    return _png(fig)


def calibration_plot(tables: dict[str, list[dict]], title: str) -> bytes:
    """Observed vs predicted P(a > b) per bin (`predicted`, `observed`, `count`), marker size ~ count."""
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect")
    for name, rows in tables.items():
        rows = [r for r in rows if r.get("count") and r.get("predicted") is not None]
        if rows:
            ax.scatter(
                [r["predicted"] for r in rows],
                [r["observed"] for r in rows],
                s=[12 + 4 * r["count"] ** 0.5 for r in rows],
                label=name,
                alpha=0.8,
            )
            ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], alpha=0.5)
    ax.set(title=title, xlabel="predicted P(preferred)", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def win_rate_plot(rows: list[tuple[str, float, float, float]], title: str) -> bytes:
    """Forest plot: (label, win rate, ci low, ci high) per comparison, with the 50% line."""
    fig, ax = plt.subplots(figsize=(6.5, 1.4 + 0.4 * len(rows)))  # room for title and axis label
    labels = [r[0] for r in rows]
    y = list(range(len(rows)))[::-1]
    for yi, (_, wr, lo, hi) in zip(y, rows):
        ax.plot([lo, hi], [yi, yi], color="#4c72b0", linewidth=2)
        ax.plot([wr], [yi], "o", color="#c44e52")
    ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(y, labels)
    ax.set(title=title, xlabel="win rate (ties = 1/2), 95% bootstrap CI", xlim=(0, 1))
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def frontier_plot(panels: dict[str, dict[str, tuple[list, list, list]]], title: str) -> bytes:
    """Side-by-side panels of reward against KL to SFT: per method a line through its points (x, y),
    with the y intervals drawn as error bars; (x, y, (y_low, y_high)) per series."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    # the methods matrix has 12 series: matplotlib's 10-colour cycle would give two of them one colour
    colours = plt.get_cmap("tab20").colors
    for ax, (panel, series) in zip(axes[0], panels.items()):
        for i, (name, (x, y, bounds)) in enumerate(series.items()):
            low = [yi - lo if lo is not None else 0.0 for yi, (lo, _) in zip(y, bounds)]
            high = [hi - yi if hi is not None else 0.0 for yi, (_, hi) in zip(y, bounds)]
            ax.errorbar(x, y, yerr=[low, high], marker="o", markersize=4, capsize=2, linewidth=1.2, label=name,
                        color=colours[i % len(colours)])  # fmt: skip
        ax.set(title=panel, xlabel="KL to SFT (nats, held-out posts)", ylabel="mean reward-model score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _png(fig)
