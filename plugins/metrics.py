"""Built-in probe metrics: `mnno` (the paper's measure) and `regression` (MSE and R²)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from xmodal import (
    MetricDisplay,
    MetricSpec,
    Param,
    Probe,
    ResultRow,
    check_k_fits,
    hookimpl,
    overlap,
)

COMPARISONS = {
    "pred-input": ("predicted", "input"),
    "pred-target": ("predicted", "target"),
    "input-target": ("input", "target"),
}

MNNO_PARAMS = {
    "k": Param(int, default=[1, 5, 10], many=True, min=1, doc="neighbourhood sizes"),
    "similarity": Param(str, default=["cosine"], many=True, choices_from="similarities"),
}


def mnno(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """mNNO^k of predicted vs input, predicted vs target and input vs target, per split."""
    ks = sorted(set(params["k"]))
    for split in probe.splits:
        for similarity in params["similarity"]:
            lists = {
                role: probe.neighbors(split, role, ks[-1], similarity)
                for role in ("predicted", "input", "target")
            }
            for comparison, (a, b) in COMPARISONS.items():
                for k in ks:
                    value = overlap(lists[a], lists[b], k)
                    yield ResultRow(split, "mnno", comparison, value, k=k, similarity=similarity)


def regression(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """The paper's MSE (mean over items of the per-dimension mean squared error) and R²."""
    for split in probe.splits:
        spaces = probe.spaces[split]
        if spaces.predicted.shape != spaces.target.shape:
            return  # e.g. the identity probe: its predictions are not in the target space
        pred, target = spaces.predicted.astype(np.float64), spaces.target.astype(np.float64)
        residual = ((pred - target) ** 2).sum()
        total = ((target - target.mean(axis=0)) ** 2).sum()
        yield ResultRow(split, "mse", "pred-target", float(((pred - target) ** 2).mean()))
        yield ResultRow(
            split, "r2", "pred-target", float(1 - residual / total) if total > 0 else float("nan")
        )


@hookimpl
def register_metrics(register: Callable[[MetricSpec], None]) -> None:
    register(
        MetricSpec(
            name="mnno",
            compute=mnno,
            params=MNNO_PARAMS,
            description="mean nearest-neighbour overlap (Collell & Moens 2018)",
            compares=tuple(COMPARISONS),
            value_range=(0.0, 1.0),
            check=check_k_fits,
            uses_neighbors=True,
            default=True,  # the paper's measure: a study without [[metric]] measures it
            # A measure of shared neighbourhood structure, not a score: neither direction is
            # better (the paper compares mNNO(f(X), X) with mNNO(f(X), Y)).
            label="mNNO",
            higher_is_better=None,
        )
    )
    register(
        MetricSpec(
            name="regression",
            compute=regression,
            description="mean squared error and R² of predicted vs target vectors",
            compares=("pred-target",),
            outputs={
                "mse": MetricDisplay("MSE", digits=4, higher_is_better=False),
                "r2": MetricDisplay("R²", digits=3, higher_is_better=True),
            },
        )
    )
