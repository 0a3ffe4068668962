"""What adding a metric and a k to a finished study costs: measuring stored predictions, not
retraining.

    python benchmarks/bench_incremental.py [--full] [-j 2]

1. runs a slice of studies/collell2018-exp1-iaprtc12.toml from scratch (the whole study with
   --full: 240 runs, ~7 min on 2 cores), as a user would (`xmodal run` in a subprocess);
2. runs the same study extended by one more metric (`cka`) and one more k (mNNO at k = 50) on the
   same database: only measurements, from the stored predictions;
3. runs the extended study from scratch into a second database;
and prints the wall times, the ratio of (2) to (1), and whether the numbers of (2) equal those
of (3) exactly. Start-up of the command (imports, data, fingerprints) counts in every time.
Needs the IAPR TC-12 features in ../shared/data/iaprtc12.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "studies" / "collell2018-exp1-iaprtc12.toml"


def sliced(text: str) -> str:
    """Depth 0 and 2, two of the three losses: 5 folds x 2 directions x 2 depths x 3 = 60 runs."""
    text = text.replace("depth = [0, 1, 2, 3, 4, 5]", "depth = [0, 2]")
    return text.replace('[[loss]]\nname = "cosine"\n', "")


def extended(text: str) -> str:
    text = text.replace("k = [1, 5, 10, 20]", "k = [1, 5, 10, 20, 50]")
    return text + '\n[[metric]]\nname = "cka"\n'


def run(study: Path, db: Path, workers: int) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "xmodal", "run", str(study), "--db", str(db), "-j", str(workers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"xmodal run failed:\n{done.stdout}\n{done.stderr}")
    summary = [line for line in done.stdout.splitlines() if " failed in " in line]
    return seconds, summary[-1] if summary else done.stdout.strip()


def results(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT run_id, split, metric, comparison, k, similarity, value "
            "FROM study_results ORDER BY ALL"
        ).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole 240-run study")
    parser.add_argument("-j", "--workers", type=int, default=2)
    args = parser.parse_args()
    if not (ROOT.parent / "shared" / "data" / "iaprtc12").is_dir():
        sys.exit("needs ../shared/data/iaprtc12 (the IAPR TC-12 features)")

    base_text = STUDY.read_text() if args.full else sliced(STUDY.read_text())
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        tmp_path = Path(tmp)
        base, more = tmp_path / "base.toml", tmp_path / "extended.toml"
        base.write_text(base_text)
        more.write_text(extended(base_text))
        db, scratch = tmp_path / "a.duckdb", tmp_path / "b.duckdb"

        first, first_line = run(base, db, args.workers)
        second, second_line = run(more, db, args.workers)
        third, third_line = run(more, scratch, args.workers)
        incremental, from_scratch = results(db), results(scratch)

    print(f"study: {STUDY.name}{' (whole)' if args.full else ' (60-run slice)'}, -j {args.workers}")
    print(f"load average (1 min) at start: {load:.2f} on {os.cpu_count()} cores")
    print(f"1. from scratch            {first:8.1f} s   {first_line}")
    print(f"2. + cka, + k=50 (measure) {second:8.1f} s   {second_line}")
    print(f"3. extended, from scratch  {third:8.1f} s   {third_line}")
    print(f"ratio 2/1: {second / first:.3f} (target <= 0.05); 2/3: {second / third:.3f}")
    same = incremental == from_scratch
    if not same and len(incremental) == len(from_scratch):
        worst = max(abs(a[-1] - b[-1]) for a, b in zip(incremental, from_scratch, strict=True))
        print(f"numbers of 2 and 3: {len(incremental)} rows, max |difference| {worst:.3g}")
    else:
        print(f"numbers of 2 and 3: {len(incremental)} rows, identical: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
