"""What the statistics of `mnno` add to a run: the neighbourhood intervals and tests (the
default), B = 1,000 bootstrap intervals and sign flips (uncertainty = 'items') and the
shuffled-pairing null, against the kNN search of the run's predicted space.

    python benchmarks/bench_stats.py [--items 10000] [--dim 300] [--resamples 1000] [--repeats 7]

One run's measurement with the default parameters (k = 1, 5, 10; cosine) on N items: the kNN of
the predicted space (the input and target lists are cached across a study's runs, so a run pays
for this one) against (a) the nine bootstrap intervals of mNNO, (b) the two differences with
bootstrap intervals and 10,000 sign flips each, (c) the whole `mnno` compute after the lists
exist, with each `uncertainty` (the default's neighbourhood intervals and tests are measured
there), and (d) one shuffled pairing (the cost of each `null_permutations`). Prints wall-clock
and CPU seconds (CPU counts the kNN's BLAS threads), each as a share of the kNN's on the same
clock, and the machine's load average (other work on a shared machine slows everything; ratios
from one run are what to compare). Every measurement is repeated
`--repeats` times, interleaved with the kNN search (kNN, then each part, then kNN again, ...), and
the medians are compared, so a burst of load on a shared machine moves both sides.

The added cost of the statistics is (c) minus the compute with uncertainty = 'none' (the overlaps
alone); both are printed, with the ratio to the kNN time (issue 15: "≤ 10 % of the kNN time").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from xmodal import knn
from xmodal.probes import NeighborCache, Probe, Spaces
from xmodal.statistics import (
    bootstrap_mean,
    overlap_counts,
    rng_for,
    shuffled_pairing_null,
    sign_flip_p,
)
from xmodal_plugins.metrics import MNNO_PARAMS, mnno


def seconds(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of one call; CPU counts every thread of the process (the kNN's
    BLAS threads too) and is moved less than wall-clock time by other work on the machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(
    parts: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each part over `repeats` rounds; each round runs every
    part once, in order, so that load on the machine falls on all of them alike."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            times[name].append(seconds(fn))
    return {
        name: (statistics.median(w for w, _ in pairs), statistics.median(c for _, c in pairs))
        for name, pairs in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (medians)")
    args = parser.parse_args()
    n, d, b = args.items, args.dim, args.resamples
    rng = np.random.default_rng(0)
    target = rng.normal(size=(n, d)).astype(np.float32)
    inputs = (target + rng.normal(size=(n, d))).astype(np.float32)
    predicted = (inputs + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    ks = [1, 5, 10]
    print(f"N = {n} items, d = {d}, k = {ks}, B = {b}; load average {os.getloadavg()}")

    lists: dict[str, np.ndarray] = {}

    def search() -> None:
        lists["predicted"] = knn(predicted, 10, similarity="cosine").indices

    search()
    lists["input"] = knn(inputs, 10, similarity="cosine").indices
    lists["target"] = knn(target, 10, similarity="cosine").indices
    pairs = {"pi": ("predicted", "input"), "pt": ("predicted", "target"), "it": ("input", "target")}
    counts = {c: overlap_counts(lists[a], lists[x], ks) for c, (a, x) in pairs.items()}

    def intervals() -> None:
        for c in pairs:
            for j, k in enumerate(ks):
                bootstrap_mean(counts[c][:, j], b, 0.95, rng_for(0, c, k))

    def paired() -> None:
        for left, right in (("pi", "pt"), ("pt", "it")):
            for j, k in enumerate(ks):
                diff = counts[left][:, j] - counts[right][:, j]
                bootstrap_mean(diff, b, 0.95, rng_for(0, left, k))
                sign_flip_p(diff, 10_000, rng_for(1, left, k))

    spaces = Spaces("test", inputs, target, predicted, ("x",), ("y",))
    cache = NeighborCache()
    probe = Probe({"test": spaces}, cache, include_self=False, seed=0)
    for role in ("input", "target", "predicted"):
        probe.neighbors("test", role, 10, "cosine")  # lists exist, as in a study's run
    params = {key: p.default for key, p in MNNO_PARAMS.items()}
    params["bootstrap"] = b

    def whole() -> None:
        list(mnno(probe, params))

    def items() -> None:
        list(mnno(probe, {**params, "uncertainty": "items"}))

    def params_off() -> None:
        list(mnno(probe, {**params, "uncertainty": "none"}))

    def one_null() -> None:
        shuffled_pairing_null(lists["predicted"], lists["target"], ks, 1, rng_for(2))

    parts = {
        "kNN of the predicted space": search,
        f"9 bootstrap intervals (B = {b})": intervals,
        "2 paired differences: bootstrap + 10,000 sign flips": paired,
        "mnno compute, default (neighbourhood)": whole,
        f"mnno compute, uncertainty = items (B = {b})": items,
        "mnno compute, uncertainty = none": params_off,
        "one shuffled pairing, 3 k (per null_permutations)": one_null,
    }
    median = interleaved(parts, args.repeats)
    knn_wall, knn_cpu = median["kNN of the predicted space"]
    print(f"medians of {args.repeats} interleaved rounds; share = part / kNN of the same clock")
    print(f"{'':<58} {'wall s':>8} {'share':>7}   {'CPU s':>8} {'share':>7}")

    def line(name: str, wall: float, cpu: float) -> None:
        print(
            f"{name:<58} {wall:8.4f} {100 * wall / knn_wall:6.2f}%   "
            f"{cpu:8.4f} {100 * cpu / knn_cpu:6.2f}%"
        )

    for name, (wall, cpu) in median.items():
        line(name, wall, cpu)
    base_wall, base_cpu = median["mnno compute, uncertainty = none"]
    for name in (
        "mnno compute, default (neighbourhood)",
        f"mnno compute, uncertainty = items (B = {b})",
    ):
        wall, cpu = median[name]
        line(f"added by the statistics: {name[14:]}", wall - base_wall, cpu - base_cpu)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
