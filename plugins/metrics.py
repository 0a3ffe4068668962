"""Built-in metrics: `mnno` (the paper's measure) and `regression` (MSE and R²)."""

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
    bootstrap_mean,
    calibrate,
    chance_overlap,
    check_k_fits,
    hookimpl,
    neighbour_pair_ranks,
    nested_standard_errors,
    normal_interval_and_p,
    overlap_counts,
    rng_for,
    shuffled_pairing_null,
    sign_flip_p,
)

COMPARISONS = {
    "pred-input": ("predicted", "input"),
    "pred-target": ("predicted", "target"),
    "input-target": ("input", "target"),
}

# Paired differences of two comparisons, item by item: "left:right" is left minus right.
PAIRS = ("pred-input:pred-target", "pred-target:input-target", "pred-input:input-target")

# How `mnno` computes intervals and p-values (docs/statistics.md, "Intervals and tests").
UNCERTAINTY = ("neighbourhood", "items", "none")

# The neighbour metrics' similarity: any registered one (mnno here, mutual and cycle k-NN in
# alignment_metrics).
SIMILARITY = Param(
    str,
    default=["cosine"],
    many=True,
    choices_from="similarities",
    doc="registered similarities that rank the neighbours; rows for each",
)

MNNO_PARAMS = {
    "k": Param(int, default=[1, 5, 10], many=True, min=1, doc="neighbourhood sizes"),
    "similarity": SIMILARITY,
    "uncertainty": Param(
        str,
        default="neighbourhood",
        choices=UNCERTAINTY,
        doc="intervals and p-values: 'neighbourhood' (normal, with the covariance of "
        "neighbouring items: covers a new sample of items), 'items' (percentile bootstrap and "
        "sign flips: items independent, neighbour lists held fixed), 'none'",
    ),
    "bootstrap": Param(
        int,
        default=1000,
        min=0,
        max=1_000_000,
        doc="with uncertainty = 'items': bootstrap resamples for each interval (0: none)",
    ),
    "confidence": Param(
        float,
        default=0.95,
        min=0.5,
        max=0.999,
        doc="coverage of the confidence intervals; 1 - confidence is the calibration's alpha",
    ),
    "paired": Param(
        str,
        default=["pred-input:pred-target", "pred-target:input-target"],
        many=True,
        choices=PAIRS,
        doc="paired differences 'a:b' (comparison a minus comparison b, item by item)",
    ),
    "permutations": Param(
        int,
        default=10_000,
        min=0,
        max=10_000_000,
        doc="with uncertainty = 'items': sign flips for each difference's p-value (0: none)",
    ),
    "null_permutations": Param(
        int,
        default=0,
        min=0,
        max=100_000,
        doc="shuffled pairings for the permutation null and calibrated score (0: none)",
    ),
}


def mnno(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """mNNO^k of predicted vs input, predicted vs target and input vs target, per split, with
    intervals over items, the analytic chance level, paired differences with their p-values and,
    when asked, the shuffled-pairing null (docs/statistics.md)."""
    ks = sorted(set(params["k"]))
    method = params["uncertainty"]
    for split in probe.splits:
        n = len(probe.spaces[split].input)
        for similarity in params["similarity"]:
            lists = {
                role: probe.neighbors(split, role, ks[-1], similarity)
                for role in ("predicted", "input", "target")
            }
            # Per item and k: |NN^k(a_i) ∩ NN^k(b_i)|, an N × len(ks) integer array.
            counts = {
                c: overlap_counts(lists[a], lists[b], ks) for c, (a, b) in COMPARISONS.items()
            }
            where = (probe.seed, split, similarity)
            errors = {}
            if method == "neighbourhood":
                errors = _neighbourhood_errors(lists, counts, ks, params["paired"])
            for comparison in COMPARISONS:
                for j, k in enumerate(ks):
                    chance = chance_overlap(n, k, probe.include_self)
                    yield _mean_row(
                        split, "mnno", comparison, counts[comparison][:, j], k, similarity,
                        params, where, errors.get((comparison, k)), (0, k),
                    )[0]  # fmt: skip
                    yield ResultRow(split, "mnno_chance", comparison, chance, k, similarity)
            for pair in params["paired"]:
                left, right = pair.split(":")
                for j, k in enumerate(ks):
                    diff = counts[left][:, j] - counts[right][:, j]
                    row, p = _mean_row(
                        split, "mnno_diff", pair, diff, k, similarity, params, where,
                        errors.get((pair, k)), (-k, k),
                    )  # fmt: skip
                    yield row
                    if method == "items" and params["permutations"] > 0:
                        rng = rng_for(*where, k, pair, "sign-flip")
                        p = sign_flip_p(diff, params["permutations"], rng)
                    if p is not None:
                        yield ResultRow(split, "mnno_diff_p", pair, p, k, similarity)
            if params["null_permutations"] > 0:
                yield from _null_rows(split, similarity, lists, counts, ks, params, where)


class _NeighbourGraphs:
    """The pairs of items that are k-neighbours in one of some roles' spaces: the pairs whose
    covariance the neighbourhood intervals count (`neighbour_pairs`, docs/statistics.md). One
    sort of all three roles' lists (`neighbour_pair_ranks`) serves every k and set of roles: per
    set of roles the pairs are ordered by the smallest k at which they are neighbours, so the
    pairs of each k are a prefix (a view, not a copy). Only their order differs from
    `neighbour_pairs`; the standard errors of integer values are exact sums, order-free."""

    def __init__(self, lists: Mapping[str, np.ndarray], depth: int) -> None:
        self.roles = list(lists)
        pairs, ranks = neighbour_pair_ranks([lists[r][:, :depth] for r in self.roles])
        n = len(next(iter(lists.values())))
        self.pairs = pairs.astype(np.int32) if n < 2**31 else pairs
        self.ranks = ranks.astype(np.uint8) if depth < 255 else ranks
        self.ordered: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, roles: set[str], ks: list[int]) -> tuple[np.ndarray, list[int]]:
        """The pairs of `roles`' spaces ordered by the smallest k at which they are neighbours,
        and for each of `ks` how many of them (the first) are k-neighbours."""
        key = tuple(sorted(roles))
        if key not in self.ordered:
            columns = [self.ranks[:, self.roles.index(r)] for r in key]
            smallest = columns[0] if len(columns) == 1 else np.minimum.reduce(columns)
            order = np.argsort(smallest, kind="stable")
            self.ordered[key] = (np.take(self.pairs, order, axis=0), smallest[order])
        pairs, smallest = self.ordered[key]
        return pairs, [int(np.searchsorted(smallest, k, side="right")) for k in ks]


def _neighbourhood_errors(
    lists: Mapping[str, np.ndarray],
    counts: Mapping[str, np.ndarray],
    ks: list[int],
    paired: list[str],
) -> dict[tuple[str, int], float]:
    """The neighbourhood standard error of every mnno and mnno_diff row of a split and
    similarity, keyed (comparison or pair, k): the per-item overlaps (or differences) that use
    the same spaces' graph are computed together (`nested_standard_errors`)."""
    graphs = _NeighbourGraphs(lists, ks[-1])
    columns: dict[frozenset[str], list[tuple[str, int, np.ndarray]]] = {}
    for comparison, roles in COMPARISONS.items():
        for j, k in enumerate(ks):
            columns.setdefault(frozenset(roles), []).append(
                (comparison, k, counts[comparison][:, j])
            )
    for pair in paired:
        left, right = pair.split(":")
        roles = frozenset({*COMPARISONS[left], *COMPARISONS[right]})
        for j, k in enumerate(ks):
            columns.setdefault(roles, []).append(
                (pair, k, counts[left][:, j] - counts[right][:, j])
            )
    errors: dict[tuple[str, int], float] = {}
    for roles, wanted in columns.items():
        pairs, ends = graphs(set(roles), [k for _, k, _ in wanted])
        values = np.stack([v for _, _, v in wanted], axis=1)
        for (name, k, _), se in zip(
            wanted, nested_standard_errors(values, pairs, ends), strict=True
        ):
            errors[name, k] = float(se)
    return errors


def _mean_row(
    split: str,
    metric: str,
    comparison: str,
    per_item: np.ndarray,
    k: int,
    similarity: str,
    params: Mapping[str, Any],
    where: tuple[Any, ...],
    standard_error: float | None,
    bounds: tuple[int, int],
) -> tuple[ResultRow, float | None]:
    """The mean over items of integer `per_item` overlaps (or their differences) divided by k,
    with its interval: normal with the neighbour-graph `standard_error`, or the
    percentile bootstrap over items when uncertainty = 'items' and `bootstrap` > 0; and the
    neighbourhood test's two-sided p-value of "expected mean 0" (None with other methods)."""
    value = float(per_item.sum() / (per_item.size * k))  # as xmodal.overlap computes it
    low = high = p = None
    if params["uncertainty"] == "neighbourhood":
        low, high, p = normal_interval_and_p(
            per_item, None, params["confidence"], bounds, standard_error=standard_error
        )
        low, high = low / k, high / k
    elif params["uncertainty"] == "items" and params["bootstrap"] > 0:
        rng = rng_for(*where, k, comparison, "bootstrap")
        low, high = bootstrap_mean(per_item, params["bootstrap"], params["confidence"], rng)
        low, high = low / k, high / k
    row = ResultRow(split, metric, comparison, value, k, similarity, ci_low=low, ci_high=high)
    return row, p


def _null_rows(
    split: str,
    similarity: str,
    lists: Mapping[str, np.ndarray],
    counts: Mapping[str, np.ndarray],
    ks: list[int],
    params: Mapping[str, Any],
    where: tuple[Any, ...],
) -> Iterator[ResultRow]:
    """Per comparison and k: the shuffled-pairing null's mean, the calibrated score and its
    add-one p-value (Gröger, Wen & Brbić 2026, Algorithm 1, smax = 1)."""
    alpha = 1.0 - params["confidence"]
    for comparison, (a, b) in COMPARISONS.items():
        rng = rng_for(*where, comparison, "pairing-null")
        null = shuffled_pairing_null(lists[a], lists[b], ks, params["null_permutations"], rng)
        for j, k in enumerate(ks):
            observed = float(counts[comparison][:, j].sum() / (len(counts[comparison]) * k))
            score, p, _ = calibrate(observed, null[:, j], alpha=alpha, smax=1.0)
            mean = float(null[:, j].mean())
            yield ResultRow(split, "mnno_null_mean", comparison, mean, k, similarity)
            yield ResultRow(split, "mnno_calibrated", comparison, score, k, similarity)
            yield ResultRow(split, "mnno_null_p", comparison, p, k, similarity)


REGRESSION_PARAMS = {
    "bootstrap": Param(
        int,
        default=1000,
        min=0,
        max=1_000_000,
        doc="bootstrap resamples of the items for the MSE's confidence interval (0: none)",
    ),
    "confidence": Param(
        float, default=0.95, min=0.5, max=0.999, doc="coverage of the confidence interval"
    ),
}


def regression(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """The paper's MSE (mean over items of the per-dimension mean squared error) with its
    bootstrap interval over items, and R² (no interval: it is a ratio of sums around a mean that
    resampling moves)."""
    for split in probe.splits:
        spaces = probe.spaces[split]
        if spaces.predicted.shape != spaces.target.shape:
            return  # e.g. the identity run: its predictions are not in the target space
        pred, target = spaces.predicted.astype(np.float64), spaces.target.astype(np.float64)
        squared = (pred - target) ** 2
        residual = squared.sum()
        total = ((target - target.mean(axis=0)) ** 2).sum()
        low = high = None
        if params["bootstrap"] > 0 and len(squared):
            rng = rng_for(probe.seed, split, "mse", "bootstrap")
            per_item = squared.mean(axis=1)
            low, high = bootstrap_mean(per_item, params["bootstrap"], params["confidence"], rng)
        mse = float(squared.mean())
        yield ResultRow(split, "mse", "pred-target", mse, ci_low=low, ci_high=high)
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
            compares=(*COMPARISONS, *PAIRS),
            value_range=(0.0, 1.0),
            check=check_k_fits,
            uses_neighbors=True,
            default=True,  # the paper's measure: a study without [[metric]] measures it
            # A measure of shared neighbourhood structure, not a score: neither direction is
            # better (the paper compares mNNO(f(X), X) with mNNO(f(X), Y)).
            label="mNNO",
            higher_is_better=None,
            # Reference levels and p-values are read in tables, not drawn (plot=False); the
            # paired difference is drawn: by depth with its interval it is the paper's claim.
            outputs={
                "mnno_chance": MetricDisplay(
                    "Chance level (mNNO)", value_range=(0.0, 1.0), plot=False
                ),
                "mnno_diff": MetricDisplay("Paired difference (mNNO)", value_range=(-1.0, 1.0)),
                "mnno_diff_p": MetricDisplay(
                    "p (mNNO difference)", digits=4, value_range=(0.0, 1.0), plot=False
                ),
                "mnno_null_mean": MetricDisplay(
                    "Shuffled-pairing null mean (mNNO)", value_range=(0.0, 1.0), plot=False
                ),
                "mnno_calibrated": MetricDisplay("Calibrated score (mNNO)", value_range=(0.0, 1.0)),
                "mnno_null_p": MetricDisplay(
                    "p, shuffled pairing (mNNO)", digits=4, value_range=(0.0, 1.0), plot=False
                ),
            },
        )
    )
    register(
        MetricSpec(
            name="regression",
            compute=regression,
            params=REGRESSION_PARAMS,
            description="mean squared error and R² of predicted vs target vectors",
            compares=("pred-target",),
            outputs={
                "mse": MetricDisplay("MSE", digits=4, higher_is_better=False),
                "r2": MetricDisplay("R²", digits=3, higher_is_better=True),
            },
        )
    )
