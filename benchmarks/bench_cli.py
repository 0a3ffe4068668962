"""Benchmark how fast the `xmodal` commands that load no model start and answer.

Each command runs as `python -m xmodal ...` in a fresh interpreter (a subprocess, as a user's
shell starts it), in a temporary directory holding a small results database that the CLI itself
prepared once (`xmodal run` of a tiny synthetic study). The baseline is `python -c "import
duckdb"` timed in the same invocation: the commands are interleaved with it repeat by repeat, so
a change in the machine's load moves both. The figure is each command's median wall time divided
by the baseline's median; the issue's target is at most 3x.

Bytecode: the child processes may write .pyc files, into a temporary PYTHONPYCACHEPREFIX (the
working tree is not touched), and one untimed warm-up round fills that cache, as a pip install's
compiled bytecode or a second run of an editable install would. PYTHONDONTWRITEBYTECODE, if set
in the calling environment, is dropped for the children: recompiling xmodal's sources in every
process is a sandbox's cost, not a user's.

    python benchmarks/bench_cli.py                 # 7 repeats
    python benchmarks/bench_cli.py --repeats 15
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 3.0  # the bound: each command within 3x the bare `import duckdb`

# A study small enough to run in seconds; it fills the database that status and query read.
TINY_STUDY = """\
[study]
name = "bench-cli"
description = "a tiny synthetic study for the CLI start-up benchmark"
seeds = [0]

[data]
dataset = "synthetic"
pairs = [["text", "image"]]
directions = ["forward"]
split_strategy = "dataset"

[data.params]
n_items = 200
dim_text = 16
dim_image = 16

[[mapping]]
name = "linear"

[train]
epochs = 2

[runs]
trained = true
untrained = false

[measure]
splits = ["test"]

[[metric]]
name = "mnno"
k = [5]
"""


def commands(db: Path) -> dict[str, list[str]]:
    """Label -> argument list after `python`: the baseline first, then the xmodal commands."""
    xmodal = ["-m", "xmodal"]
    return {
        "python -c 'import duckdb'": ["-c", "import duckdb"],
        "xmodal --help": [*xmodal, "--help"],
        "xmodal --version": [*xmodal, "--version"],
        "xmodal query 'SELECT 1'": [*xmodal, "query", "SELECT 1", "--db", str(db)],
        "xmodal status": [*xmodal, "status", "--db", str(db)],
        "xmodal plugins": [*xmodal, "plugins"],
        "xmodal validate quickstart.toml": [
            *xmodal,
            "validate",
            str(ROOT / "studies" / "quickstart.toml"),
        ],
    }


def child_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    env["XMODAL_DB"] = str(tmp / "bench.duckdb")
    env["COLUMNS"] = "100"
    return env


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one `python ARGS` in a fresh interpreter; a failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"`python {' '.join(args)}` failed ({done.returncode}):\n{done.stderr}")
    return seconds


def prepare(tmp: Path, env: dict[str, str]) -> Path:
    """The database status and query read, written by the CLI itself (not timed)."""
    study = tmp / "bench-cli.toml"
    study.write_text(TINY_STUDY, encoding="utf-8")
    db = tmp / "bench.duckdb"
    timed(["-m", "xmodal", "run", str(study), "--db", str(db)], tmp, env)
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="xmodal-bench-cli-") as name:
        tmp = Path(name)
        env = child_env(tmp)
        load_start = os.getloadavg()
        db = prepare(tmp, env)
        listed = commands(db)
        for argv in listed.values():  # warm-up: bytecode cache, page cache
            timed(argv, tmp, env)
        times: dict[str, list[float]] = {label: [] for label in listed}
        for _ in range(args.repeats):
            for label, argv in listed.items():
                times[label].append(timed(argv, tmp, env))
        load_end = os.getloadavg()

    versions = ", ".join(
        f"{p} {metadata.version(p)}" for p in ("xmodal", "typer", "rich", "duckdb", "pluggy")
    )
    print(f"Python {platform.python_version()}, {versions}; {os.cpu_count()} CPUs")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*load_start))
    print(f"{args.repeats} repeats, interleaved; median and min wall seconds of a fresh process\n")
    baseline_label = next(iter(times))
    baseline = statistics.median(times[baseline_label])
    width = max(map(len, times))
    print(f"{'command':<{width}}  median s  min s  ratio  within {TARGET:g}x")
    for label, values in times.items():
        median = statistics.median(values)
        ratio = median / baseline
        verdict = "baseline" if label == baseline_label else "yes" if ratio <= TARGET else "NO"
        print(f"{label:<{width}}  {median:8.3f}  {min(values):5.3f}  {ratio:4.2f}x  {verdict}")
    print("\nratio = the command's median / the baseline's median, from this invocation")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*load_end))


if __name__ == "__main__":
    main()
