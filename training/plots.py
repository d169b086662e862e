"""Evaluation plots as PNG files (matplotlib's Agg canvas; no pyplot, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training import metrics

MODE_COLORS = {"fused": "#1f77b4", "event": "#ff7f0e", "rgb": "#2ca02c"}


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(out))
    return out


def plot_ced(
    nmes: Mapping[str, np.ndarray],
    path: str | Path,
    threshold: float = 0.1,
    title: str = "Cumulative error distribution",
) -> Path:
    """CED curves (fraction of samples vs NME up to ``threshold``), one per mode.

    Args:
        nmes: Mode (or any label) -> (M,) per-sample NMEs.
        path: PNG file to write.
        threshold: Right end of the x axis (and of the AUC in the legend).
        title: Figure title.

    Returns:
        The written path.
    """
    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    ax = fig.add_subplot()
    for label, values in nmes.items():
        x, y = metrics.ced_curve(values, threshold)
        a, fr = metrics.auc(values, threshold), metrics.failure_rate(values, threshold)
        ax.plot(
            100 * x,
            y,
            color=MODE_COLORS.get(label),
            label=f"{label}: AUC {a:.3f}, FR {100 * fr:.1f}%",
        )
    ax.set_xlim(0, 100 * threshold)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("fraction of samples")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_by_condition(
    by_condition: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    modes: Sequence[str] = ("fused", "event", "rgb"),
    metric_keys: Sequence[str] = ("nme", "fr10"),
) -> Path:
    """Grouped bars per condition (x) and mode (colour), one panel per metric.

    Args:
        by_condition: The ``by_condition`` table of an evaluation report.
        path: PNG file to write.
        modes: Modes to draw (those missing from the table are skipped).
        metric_keys: Metrics, one panel each (fractions, drawn in %).

    Returns:
        The written path.
    """
    conds = [c for c, e in by_condition.items() if e.get("count", 0)]
    modes = [m for m in modes if any(m in by_condition[c] for c in conds)]
    fig = Figure(figsize=(max(6.0, 1.3 * len(conds) + 2), 3.2 * len(metric_keys)), dpi=100)
    width = 0.8 / max(1, len(modes))
    x = np.arange(len(conds))
    for row, key in enumerate(metric_keys):
        ax = fig.add_subplot(len(metric_keys), 1, row + 1)
        for i, mode in enumerate(modes):
            vals = [by_condition[c].get(mode, {}).get(key) for c in conds]
            heights = [100 * v if v is not None else 0.0 for v in vals]
            bars = ax.bar(x + (i - (len(modes) - 1) / 2) * width, heights, width, label=mode)
            for bar in bars:
                bar.set_color(MODE_COLORS.get(mode, bar.get_facecolor()))
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(x, [f"{c}\n(n={int(by_condition[c]['count'])})" for c in conds])
        ax.set_ylabel(f"{key.upper()} (%)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Accuracy by condition and input mode")
    fig.tight_layout()
    return _save(fig, path)
