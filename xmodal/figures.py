"""The core report's PNG figures (matplotlib, Agg backend), drawn from values it is given.

Nothing here knows a metric, mapping or comparison by name: every label comes from the caller
(from the specs' labels or the data). Nothing here touches the database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DPI = 110

# panel title -> line label -> points (depth, mean, below, above): the error bar runs from
# mean − below to mean + above (an interval's bounds, or ± std; NaN: no bar).
Panels = Mapping[str, Mapping[str, Sequence[tuple[int, float, float, float]]]]


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def depth_figure(
    panels: Panels,
    path: Path,
    *,
    title: str,
    ylabel: str,
    legend_title: str = "",
    limits: tuple[float, float] | None = None,
) -> Path:
    """One panel per key of `panels`, side by side; in each, one line per label: the mean by
    depth with its error bar (the caller chooses what the bar is: see `Panels`). Only integer depths are given: runs without a depth stay off the
    axis (the caller leaves them out). `limits` fixes the y axis (a metric's value range)."""
    names = list(panels)
    labels = sorted({line for lines in panels.values() for line in lines})
    cmap = plt.get_cmap("tab10")
    colour = {line: cmap(i % 10) for i, line in enumerate(labels)}
    fig, axes = plt.subplots(
        1,
        max(1, len(names)),
        figsize=(max(7.5, 0.6 + 4.2 * len(names)), 4.4 + 0.25 * len(labels)),
        squeeze=False,
        sharey=True,
    )
    depths: set[int] = set()
    for ax, name in zip(axes[0], names, strict=False):
        for line in labels:
            points = sorted(panels[name].get(line, ()))
            if not points:
                continue
            xs, ys, below, above = zip(*points, strict=True)
            depths.update(xs)
            bars = [
                [0.0 if math.isnan(e) else max(e, 0.0) for e in side] for side in (below, above)
            ]
            ax.errorbar(xs, ys, yerr=bars, color=colour[line], marker="o", linewidth=2,
                        capsize=3)  # fmt: skip
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("depth (hidden layers)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    for ax in axes[0]:
        ax.set_xticks(sorted(depths))
        if limits is not None:
            low, high = limits
            ax.set_ylim(low - 0.02 * (high - low), high + 0.02 * (high - low))
    handles = [
        plt.Line2D([], [], color=colour[line], marker="o", linewidth=2, label=line)
        for line in labels
    ]
    fig.suptitle(title, fontsize=12)
    room = (0.35 + 0.25 * len(labels)) / fig.get_figheight()
    fig.legend(handles=handles, loc="lower center", ncol=1, fontsize=9, frameon=False,
               title=legend_title or None)  # fmt: skip
    fig.tight_layout(rect=(0, min(0.6, room + 0.05), 1, 1))
    return _save(fig, path)
