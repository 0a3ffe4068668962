"""The paper's figures (matplotlib, Agg backend) for the `paper_report` plugin's sections.

Each function takes rows (dicts, as read from the `paper_*` views), draws one figure and writes it
to `path`. Rows of runs without a depth are left out by the caller. Nothing here touches the
database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

# The bars of `paper_depth` rows are the report's (results_summary rows have the same columns).
from xmodal import error_bar

Row = Mapping[str, Any]

COLOURS = {"pred-input": "#1f77b4", "pred-target": "#d62728", "input-target": "#555555"}
LABELS = {
    "pred-input": "mNNO(f(X), X): prediction vs input",
    "pred-target": "mNNO(f(X), Y): prediction vs target",
    "input-target": "mNNO(X, Y): input vs target (baseline)",
}
DPI = 110


def _pair(row: Row) -> str:
    return f"{row['input_features']} → {row['target_features']}"


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _err(value: Any) -> float:
    v = _num(value)
    return 0.0 if math.isnan(v) else v


def _bars_short(rows: Sequence[Row]) -> str:
    """`xmodal.error_bars_text` in a few words, for a figure's title."""
    kinds = {error_bar(r)[2] for r in rows}
    if kinds == {True}:
        return "interval over items"
    return "± std" if kinds == {False} else "interval over items, else ± std"


def _points(rows: Sequence[Row]) -> tuple[list[int], list[float], list[list[float]]]:
    """Depths, means and matplotlib's 2 × n `yerr` (below, above) of rows sorted by depth."""
    ordered = sorted(rows, key=lambda r: r["depth"])
    bars = [(_err(below), _err(above)) for below, above, _ in map(error_bar, ordered)]
    return (
        [r["depth"] for r in ordered],
        [_num(r["mean"]) for r in ordered],
        [[b[0] for b in bars], [b[1] for b in bars]],
    )


def _grid(n_rows: int, n_cols: int, width: float = 4.2, height: float = 3.2) -> tuple[Any, Any]:
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        # At least 11 inches wide, so the title and the one-line legend always fit.
        figsize=(max(11.0, 0.6 + width * n_cols), 1.3 + height * n_rows),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    return fig, axes


def _legend_room(fig: Any, inches: float = 0.45) -> float:
    """The share of the figure's height that a one-line legend at the bottom needs."""
    return inches / fig.get_figheight()


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def depth_figure(rows: Sequence[Row], path: Path, *, study: str, k: int) -> Path:
    """mNNO pred-input, pred-target and the input-target baseline by depth; one panel per
    input→target pair (rows) and loss (columns). Rows: `paper_depth`, trained, one k/split."""
    pairs = sorted({_pair(r) for r in rows})
    losses = sorted({r["loss"] for r in rows})
    fig, axes = _grid(len(pairs), len(losses))
    top = max((_num(r["mean"]) + _err(error_bar(r)[1]) for r in rows), default=1.0)
    for i, pair in enumerate(pairs):
        for j, loss in enumerate(losses):
            ax = axes[i][j]
            for comparison in ("pred-input", "pred-target", "input-target"):
                mine = [
                    r
                    for r in rows
                    if _pair(r) == pair and r["loss"] == loss and r["comparison"] == comparison
                ]
                if not mine:
                    continue
                xs, ys, es = _points(mine)
                ax.errorbar(
                    xs,
                    ys,
                    yerr=es,
                    color=COLOURS[comparison],
                    marker="o" if comparison != "input-target" else None,
                    linestyle="--" if comparison == "input-target" else "-",
                    linewidth=2,
                    capsize=3,
                )
            ax.set_title(f"{pair}\nloss: {loss}", fontsize=10)
            ax.set_ylim(0, min(1.0, top * 1.1 + 0.02))
            ax.grid(alpha=0.3)
            if i == len(pairs) - 1:
                ax.set_xlabel("hidden layers (0 = linear map)")
            if j == 0:
                ax.set_ylabel(f"mNNO@{k} on held-out items (0–1)")
    depths = sorted({r["depth"] for r in rows})
    for ax in axes.flat:
        ax.set_xticks(depths)
    handles = [
        Line2D([], [], color=COLOURS[c], linestyle="--" if c == "input-target" else "-",
               marker=None if c == "input-target" else "o", linewidth=2, label=LABELS[c])
        for c in ("pred-input", "pred-target", "input-target")
    ]  # fmt: skip
    n = max((r["n"] for r in rows), default=0)
    fig.suptitle(
        f"{study}: mNNO@{k} of trained mappings on held-out items, by depth\n"
        f"(mean over n = {n} runs: folds × seeds; bars: {_bars_short(rows)})",
        fontsize=12,
    )
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, _legend_room(fig), 1, 1))
    return _save(fig, path)


def curves_figure(rows: Sequence[Row], path: Path, *, study: str, k: int) -> Path:
    """mNNO(f(X), Y) on training vs held-out items over epochs, one line per depth, with each
    split's mNNO(X, Y) baseline; one panel per pair (rows) and loss (columns).
    Rows: `paper_curves`, metric mnno at one k, comparisons pred-target and input-target."""
    pairs = sorted({_pair(r) for r in rows})
    losses = sorted({r["loss"] for r in rows})
    every = sorted({r["depth"] for r in rows})
    # At most three depths stay legible: the shallowest, one hidden layer, the deepest.
    depths = sorted({every[0], every[-1], *(d for d in every if d == 1)})
    cmap = plt.get_cmap("viridis")
    colour = {d: cmap(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}
    style = {"train": "-", "test": "--"}
    fig, axes = _grid(len(pairs), len(losses))
    for i, pair in enumerate(pairs):
        for j, loss in enumerate(losses):
            ax = axes[i][j]
            here = [r for r in rows if _pair(r) == pair and r["loss"] == loss]
            for split in ("train", "test"):
                base = [_num(r["mean"]) for r in here
                        if r["comparison"] == "input-target" and r["split"] == split]  # fmt: skip
                if base:
                    ax.axhline(sum(base) / len(base), color="grey", linestyle=style[split],
                               linewidth=1.2)  # fmt: skip
                for d in depths:
                    points = sorted(
                        (r["epoch"], _num(r["mean"]))
                        for r in here
                        if r["comparison"] == "pred-target"
                        and r["split"] == split
                        and r["depth"] == d
                    )
                    if points:
                        xs, ys = zip(*points, strict=True)
                        ax.plot(xs, ys, color=colour[d], linestyle=style[split], linewidth=1.8,
                                marker="o", markersize=3)  # fmt: skip
            ax.set_title(f"{pair}\nloss: {loss}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if i == len(pairs) - 1:
                ax.set_xlabel("training epoch")
            if j == 0:
                ax.set_ylabel(f"mNNO@{k}(f(X), Y) (0–1)")
    handles = [Line2D([], [], color=colour[d], linewidth=2,
                      label="linear" if d == 0 else f"{d} hidden layer{'s' if d > 1 else ''}")
               for d in depths]  # fmt: skip
    handles += [
        Line2D([], [], color="black", linestyle="-", label="training items"),
        Line2D([], [], color="black", linestyle="--", label="held-out items"),
        Line2D([], [], color="grey", label="mNNO(X, Y) of the split"),
    ]
    fig.suptitle(
        f"{study}: mNNO(f(X), Y) over training epochs — training vs held-out items\n"
        f"(mean over folds × seeds; depths {', '.join(map(str, depths))} of {', '.join(map(str, every))} "
        "shown; grey: each split's mNNO(X, Y))",
        fontsize=12,
    )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9,
               frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, _legend_room(fig), 1, 1))
    return _save(fig, path)


def untrained_figure(rows: Sequence[Row], path: Path, *, study: str, k: int) -> Path:
    """mNNO(f(X), X) of untrained networks by depth, one line per input→output pair.
    Rows: `paper_depth`, state untrained, comparison pred-input, one k/split."""
    pairs = sorted({_pair(r) for r in rows})
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    cmap = plt.get_cmap("tab10")
    for i, pair in enumerate(pairs):
        xs, ys, es = _points([r for r in rows if _pair(r) == pair])
        ax.errorbar(xs, ys, yerr=es, color=cmap(i), marker="o", linewidth=2, capsize=3,
                    label=f"X = {pair.split(' → ')[0]}  (output size of {pair.split(' → ')[1]})")  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_xticks(sorted({r["depth"] for r in rows}))
    ax.set_xlabel("hidden layers of the untrained network (0 = linear map)")
    ax.set_ylabel(f"mNNO@{k}(f(X), X) (0–1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower left")
    n = max((r["n"] for r in rows), default=0)
    ax.set_title(
        f"{study}: untrained networks, mNNO@{k}(f(X), X) by depth\n"
        f"(mean over n = {n} runs: seeds × folds; bars: {_bars_short(rows)})",
        fontsize=11,
    )
    fig.tight_layout()
    return _save(fig, path)


def ratings_figure(rows: Sequence[Row], path: Path, *, study: str) -> Path:
    """Spearman correlation with human ratings before (X, dashed) and after (f(X), solid) an
    untrained mapping, by depth; one panel per ratings source. Rows: `paper_ratings`."""
    sources = sorted({r["source"] for r in rows})
    inputs = sorted({r["input_features"] for r in rows})
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(sources), figsize=(max(11.0, 0.6 + 4.4 * len(sources)), 4.6),
                             squeeze=False, sharey=True)  # fmt: skip
    for j, source in enumerate(sources):
        ax = axes[0][j]
        here = [r for r in rows if r["source"] == source]
        for i, feats in enumerate(inputs):
            mine = sorted(
                (r for r in here if r["input_features"] == feats), key=lambda r: r["depth"]
            )
            if not mine:
                continue
            xs = [r["depth"] for r in mine]
            before = [_num(r["rho_before"]) for r in mine]
            ax.plot(xs, before, color=cmap(i), linestyle="--", linewidth=1.5)
            ax.errorbar(xs, [_num(r["rho_after"]) for r in mine],
                        yerr=[_err(r["rho_after_std"]) for r in mine], color=cmap(i), marker="o",
                        linewidth=2, capsize=3)  # fmt: skip
        coverage = [_num(r["coverage"]) for r in here if r["coverage"] is not None]
        cov = f" (covered pairs: {100 * sum(coverage) / len(coverage):.0f}%)" if coverage else ""
        ax.set_title(f"{source}{cov}", fontsize=10)
        ax.set_xlabel("hidden layers of the untrained network")
        ax.set_xticks(sorted({r["depth"] for r in here}))
        ax.grid(alpha=0.3)
        if j == 0:
            ax.set_ylabel("Spearman ρ with human similarity ratings")
    handles = [Line2D([], [], color=cmap(i), linewidth=2, label=f"X = {f}")
               for i, f in enumerate(inputs)]  # fmt: skip
    handles += [
        Line2D([], [], color="black", linestyle="--", label="before: ρ of X"),
        Line2D([], [], color="black", marker="o", label="after: ρ of untrained f(X) (± std)"),
    ]
    fig.suptitle(
        f"{study}: agreement with human similarity ratings before and after an untrained network",
        fontsize=12,
    )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, path)
