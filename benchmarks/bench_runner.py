"""The same 48-run study run sequentially, with a 2-process pool, and on a local Ray instance.

    python benchmarks/bench_runner.py [--repeats 1] [--executors local,process,ray]

Each configuration runs the study from scratch into its own temporary database, as a user would
(`xmodal run ...` in a subprocess, so start-up costs count). Prints wall time, runs per minute and
speed-up over the sequential run measured in the same invocation, and checks that every
executor produced the same numbers.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from xmodal.testing import to_toml

# 2 directions x (linear + mlp depth 1..3) x (trained + untrained) x 3 seeds = 48 runs.
STUDY = to_toml({
    "study": {"name": "bench-runner", "seeds": [0, 1, 2]},
    "data": {"dataset": "synthetic", "pairs": [["text", "image"]],
             "params": {"n_items": 2000, "dim_text": 100, "dim_image": 300}},
    "mapping": [{"name": "linear"}, {"name": "mlp", "depth": [1, 2, 3], "hidden": 256}],
    "train": {"epochs": 40, "batch_size": 64},
    "metric": [{"name": "mnno", "k": [1, 5, 10]}],
})  # fmt: skip

CONFIGS = {
    "local": ["--workers", "1"],
    "process": ["--workers", "2"],
    "ray": ["--executor", "ray", "--workers", "2"],
}


def run_once(args: list[str]) -> tuple[float, list[tuple]]:
    with tempfile.TemporaryDirectory() as tmp:
        study, db = Path(tmp) / "study.toml", Path(tmp) / "bench.duckdb"
        study.write_text(STUDY)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "xmodal", "run", str(study), "--db", str(db), *args],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - start
        with duckdb.connect(str(db), read_only=True) as con:
            results = con.execute(
                "SELECT run_id, metric, comparison, k, value FROM results ORDER BY ALL"
            ).fetchall()
    return wall, results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--executors", default="local,process,ray")
    args = parser.parse_args()
    names = args.executors.split(",")
    walls: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, list[tuple]] = {}
    for _ in range(args.repeats):
        for name in names:  # interleaved, so machine noise hits every executor alike
            wall, results = run_once(CONFIGS[name])
            walls[name].append(wall)
            outputs[name] = results
    runs = len({r[0] for r in next(iter(outputs.values()))})
    base = statistics.median(walls[names[0]])
    print(f"{runs} runs; median of {args.repeats} repeat(s); speed-up vs {names[0]}")
    print(f"{'executor':<10} {'wall s':>8} {'runs/min':>9} {'speed-up':>9}  same numbers")
    reference = outputs[names[0]]
    for name in names:
        wall = statistics.median(walls[name])
        print(
            f"{name:<10} {wall:8.1f} {runs / wall * 60:9.1f} {base / wall:8.2f}x  {outputs[name] == reference}"
        )


if __name__ == "__main__":
    main()
