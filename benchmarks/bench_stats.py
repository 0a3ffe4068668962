"""What the statistics of `mnno` add to a run: the neighbourhood intervals and tests (the
default), B = 1,000 bootstrap intervals and sign flips (uncertainty = 'items') and the
shuffled-pairing null, against the kNN search of the run's predicted space.

    python benchmarks/bench_stats.py [--items 10000] [--dim 300] [--resamples 1000]

One run's measurement with the default parameters (k = 1, 5, 10; cosine) on N items: the kNN of
the predicted space (the input and target lists are cached across a study's runs, so a run pays
for this one) against (a) the nine bootstrap intervals of mNNO, (b) the two differences with
bootstrap intervals and 10,000 sign flips each, (c) the whole `mnno` compute after the lists
exist, with each `uncertainty` (the default's neighbourhood intervals and tests are measured
there), and (d) one shuffled pairing (the cost of each `null_permutations`). Prints seconds, the
ratio to the kNN time, and the machine's load average (other work on a shared machine slows
everything; ratios from one run are what to compare).
"""

from __future__ import annotations

import argparse
import os
import time

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


def seconds(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--resamples", type=int, default=1000)
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

    t_knn = seconds(search, repeats=2)
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

    rows = [
        ("kNN of the predicted space", t_knn),
        (f"9 bootstrap intervals (B = {b})", seconds(intervals)),
        ("2 paired differences: bootstrap + 10,000 sign flips", seconds(paired)),
        ("mnno compute, default (neighbourhood)", seconds(whole)),
        (f"mnno compute, uncertainty = items (B = {b})", seconds(items)),
        ("mnno compute, uncertainty = none", seconds(params_off)),
        ("one shuffled pairing, 3 k (per null_permutations)", seconds(one_null)),
    ]
    for name, t in rows:
        print(f"{name:<55} {t:8.4f} s  {100 * t / t_knn:6.2f} % of the kNN")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
