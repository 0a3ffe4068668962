"""Training speed on this machine: seconds per epoch, and where a study's time goes.

    python benchmarks/bench_train.py                 # the issue's sizes: 20,000 pairs, 300 -> 2,048
    python benchmarks/bench_train.py --n 5000 --epochs 2

Prints median seconds per epoch for a linear map and a 2-hidden-layer MLP (1,024 wide) at batch
sizes 64, 512 and full, with each time as a ratio of the linear / batch-512 baseline measured in the
same run; then runs the quickstart study into a temporary database and reports the share of its
time spent training versus probing (from the runs table).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import torch

from xmodal.params import expand
from xmodal.plugins import get_registry
from xmodal.study import TRAIN_PARAMS
from xmodal.train import seeded_model, train

REPO = Path(__file__).resolve().parent.parent


def seconds_per_epoch(
    mapping: str, params: dict, batch: int | str, x: np.ndarray, y: np.ndarray, epochs: int
) -> float:
    registry = get_registry()
    spec = registry.mappings[mapping]
    model = seeded_model(spec, expand(spec.params, params)[0], x.shape[1], y.shape[1], 0)
    stamps: list[float] = [time.perf_counter()]
    settings = {**expand(TRAIN_PARAMS, {})[0], "epochs": epochs, "batch_size": batch}
    train(
        model,
        registry.losses["mse"],
        {},
        x,
        y,
        settings,
        0,
        on_epoch=lambda e, m: stamps.append(time.perf_counter()),
    )
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


def study_time_shares() -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "xmodal", "run", str(REPO / "studies" / "quickstart.toml"), "--db", str(db)],
                       check=True, capture_output=True)  # fmt: skip
        wall = time.perf_counter() - t0
        with duckdb.connect(str(db), read_only=True) as con:
            train_s, probe_s = con.execute(
                "SELECT sum(train_seconds), sum(measure_seconds) FROM runs"
            ).fetchone()
    return wall, train_s, probe_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d-in", type=int, default=300)
    parser.add_argument("--d-out", type=int, default=2048)
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs timed per configuration (median)"
    )
    parser.add_argument("--skip-study", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.d_in)).astype(np.float32)
    y = rng.standard_normal((args.n, args.d_out)).astype(np.float32)
    print(
        f"{args.n} pairs {args.d_in} -> {args.d_out}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    configs = [("linear", {}, "linear"), ("mlp", {"depth": 2, "hidden": 1024}, "mlp 2x1024")]
    results = {}
    for mapping, params, label in configs:
        for batch in (64, 512, "full"):
            results[(label, batch)] = seconds_per_epoch(mapping, params, batch, x, y, args.epochs)
    baseline = results[("linear", 512)]
    print(f"\n{'mapping':<12} {'batch':>6} {'s/epoch':>9} {'vs linear@512':>14} {'pairs/s':>10}")
    for (label, batch), seconds in results.items():
        print(
            f"{label:<12} {batch!s:>6} {seconds:9.3f} {seconds / baseline:13.2f}x {args.n / seconds:10.0f}"
        )

    if not args.skip_study:
        wall, train_s, probe_s = study_time_shares()
        total = train_s + probe_s
        print(f"\nquickstart study: {wall:.1f} s wall; of the time inside runs, training {train_s / total:.0%}, "
              f"probing {probe_s / total:.0%} ({train_s:.1f} s / {probe_s:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
