"""Bigger than RAM (issue 14): peak memory of a real study on memory-mapped vs loaded .npy files.

    python benchmarks/bench_memory.py                          # 200,000 × 384, both modes once
    python benchmarks/bench_memory.py --n 20000 --repeats 3    # a quick look, interleaved repeats
    python benchmarks/bench_memory.py --limit-data 1100        # also under an RLIMIT_DATA
    python benchmarks/bench_memory.py --repeats 0 --limit-data 1100   # only that

Data: two seeded synthetic float32 spaces of N items × d written as .npy files in row blocks
(never whole in this process): row-aligned views of one clustered latent space, so items have
real neighbourhoods (text = Z·W_t + noise, image = tanh(Z·W_i) + noise).

The study: the `files` dataset on the two files, a seeded random split (--test-fraction 0.2), one
trained linear mapping (1 epoch, batch 1024), mNNO at k = 10 on the test items: every stage of a
run (load and check the files, split, train, predict, exact neighbour lists, metric) at scale.

Each run is `xmodal run` in its own process, with the `files` dataset memory-mapping the files
(`mmap`, the default) or reading them into memory (`load`: `featurefiles.MEMORY_MAP = False`, the
behaviour before). Its memory is sampled from /proc/<pid>/status every 20 ms: peak RSS (VmHWM),
and its two parts, anonymous memory (RssAnon: the process's own arrays, which must fit in RAM)
and file-backed pages (RssFile: pages of mapped files the kernel keeps while it has room and
drops under memory pressure, re-reading them from disk when touched again). A `baseline` process
only imports xmodal and torch, so "beyond baseline" is what the study itself holds.

`--limit-data MB` also runs each mode under RLIMIT_DATA = MB (Linux counts a process's private
writable memory against it, not read-only file mappings): the loaded study fails to allocate,
the mapped one finishes, showing a study whose input exceeds the memory it may use.

Timings are wall-clock seconds; the load average is printed with every run (the machine is
shared), and with --repeats > 1 the medians of interleaved repeats are quoted.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

LATENT = 64
BLOCK = 20_000  # rows generated and written at a time

# A run in its own process: argv = mode (mmap | load | baseline), study, database.
CHILD = textwrap.dedent(
    """
    import sys
    mode = sys.argv[1]
    from xmodal_plugins.support import featurefiles
    featurefiles.MEMORY_MAP = mode != "load"
    import torch  # noqa: F401  (the baseline holds what every run holds before its data)
    from xmodal.cli import main
    if mode != "baseline":
        main(["run", sys.argv[2], "--db", sys.argv[3]])
    """
)

STUDY = """\
[study]
name = "bench-memory"
seeds = [0]

[data]
dataset = "files"
split_strategy = "random"
test_fraction = {test_fraction}
directions = ["forward"]

[data.params]
features = ["text=text.npy", "image=image.npy"]
base_dir = "{base}"

[[mapping]]
name = "linear"

[train]
epochs = {epochs}
batch_size = 1024

[[metric]]
name = "mnno"
k = [{k}]
"""

FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "VmData")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def write_data(directory: Path, n: int, d: int, seed: int = 0) -> None:
    """text.npy and image.npy: (n, d) float32, written in blocks of rows."""
    from numpy.lib.format import open_memmap

    rng = np.random.default_rng(seed)
    clusters = max(2, n // 100)
    centres = rng.standard_normal((clusters, LATENT)).astype(np.float32)
    w_text = rng.standard_normal((LATENT, d)).astype(np.float32) / np.sqrt(LATENT)
    w_image = rng.standard_normal((LATENT, d)).astype(np.float32) / np.sqrt(LATENT)
    text = open_memmap(directory / "text.npy", mode="w+", dtype=np.float32, shape=(n, d))
    image = open_memmap(directory / "image.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, BLOCK):
        rows = min(BLOCK, n - start)
        z = centres[rng.integers(0, clusters, rows)] + 0.5 * rng.standard_normal(
            (rows, LATENT), dtype=np.float32
        )
        text[start : start + rows] = z @ w_text + 0.3 * rng.standard_normal((rows, d), np.float32)
        image[start : start + rows] = np.tanh(z @ w_image) + 0.3 * rng.standard_normal(
            (rows, d), np.float32
        )
    text.flush()
    image.flush()
    del text, image


def status(pid: int) -> dict[str, int]:
    """The memory fields of /proc/<pid>/status, in bytes ({} once the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in FIELDS:
                    out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return out


def run(mode: str, study: Path, db: Path, env: dict[str, str], limit_mb: int = 0) -> dict:
    """One `xmodal run` (or the baseline) in a child process: wall time, exit code, peaks."""
    db.unlink(missing_ok=True)

    def limit() -> None:
        if limit_mb:
            resource.setrlimit(resource.RLIMIT_DATA, (limit_mb << 20, limit_mb << 20))

    t0 = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(study), str(db)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=limit,
    )
    peaks: dict[str, int] = {}

    def sample() -> None:
        while child.poll() is None:
            for key, value in status(child.pid).items():
                peaks[key] = max(peaks.get(key, 0), value)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    seconds = time.perf_counter() - t0
    sampler.join()
    return {"mode": mode, "code": child.returncode, "seconds": seconds, "output": output, **peaks}


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="items (default 200,000)")
    parser.add_argument("--d", type=int, default=384, help="dimensions (default 384)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--test-fraction", type=float, default=0.2, help="items probed (0.2)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of each mode")
    parser.add_argument("--modes", default="mmap,load", help="comma-separated: mmap, load")
    parser.add_argument("--limit-data", type=int, default=0, metavar="MB",
                        help="also run each mode under RLIMIT_DATA = MB")  # fmt: skip
    parser.add_argument("--dir", type=Path, default=None, help="working directory (kept)")
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="xmodal-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        env = {**os.environ, "XMODAL_CACHE_DIR": str(work / "cache"), "COLUMNS": "100"}
        os.environ["XMODAL_CACHE_DIR"] = env["XMODAL_CACHE_DIR"]
        input_bytes = 2 * args.n * args.d * 4
        t0 = time.perf_counter()
        write_data(work, args.n, args.d)
        print(f"data: 2 × {args.n:,} × {args.d} float32 .npy = {mb(input_bytes)} "
              f"(written in {time.perf_counter() - t0:.0f} s) in {work}")  # fmt: skip
        study = work / "study.toml"
        study.write_text(
            STUDY.format(base=work, epochs=args.epochs, k=args.k, test_fraction=args.test_fraction)
        )
        # Hash the files once now (remembered in the cache), so no run pays for it.
        time.sleep(2.5)  # files younger than fingerprint.RACY_SECONDS are not remembered
        from xmodal.fingerprint import files_digest

        files_digest([work / "text.npy", work / "image.npy"])

        print(load())
        base = run("baseline", study, work / "results.duckdb", env)
        print(f"baseline (imports only): RSS {mb(base['VmHWM'])}, anonymous "
              f"{mb(base['RssAnon'])}, VmData {mb(base['VmData'])}")  # fmt: skip
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for repeat in range(args.repeats):
            for mode in modes:
                r = run(mode, study, work / "results.duckdb", env)
                results[mode].append(r)
                if r["code"] != 0:
                    print(r["output"][-3000:])
                    raise SystemExit(f"{mode}: xmodal run exited with {r['code']}")
                print(
                    f"[{repeat + 1}/{args.repeats}] {mode:4}: {r['seconds']:6.1f} s, peak RSS "
                    f"{mb(r['VmHWM'])} = anonymous ≤ {mb(r['RssAnon'])} + file-backed ≤ "
                    f"{mb(r['RssFile'])}; beyond baseline: anonymous "
                    f"{mb(r['RssAnon'] - base['RssAnon'])}; peak VmData {mb(r['VmData'])}; "
                    f"{load()}"
                )
        median = {
            m: {f: statistics.median(r[f] for r in rs) for f in ("seconds", "VmHWM", "RssAnon")}
            for m, rs in results.items()
            if rs  # --repeats 0: only the RLIMIT_DATA runs
        }
        if median:
            print(f"\nmedians of {args.repeats} interleaved repeat(s), input {mb(input_bytes)}:")
        for m, v in median.items():
            print(f"  {m:4}: {v['seconds']:6.1f} s, peak RSS {mb(v['VmHWM'])}, peak anonymous "
                  f"{mb(v['RssAnon'])} ({mb(v['RssAnon'] - base['RssAnon'])} beyond baseline)")  # fmt: skip
        if {"mmap", "load"} <= set(median):
            saved = median["load"]["RssAnon"] - median["mmap"]["RssAnon"]
            ratio = (median["mmap"]["RssAnon"] - base["RssAnon"]) / max(
                1, median["load"]["RssAnon"] - base["RssAnon"]
            )
            print(f"  mmap holds {mb(saved)} less anonymous memory ({saved / input_bytes:.2f} × "
                  f"the input); beyond baseline mmap/load = {ratio:.2f}; time mmap/load = "
                  f"{median['mmap']['seconds'] / median['load']['seconds']:.2f}")  # fmt: skip
        if args.limit_data:
            print(f"\nunder RLIMIT_DATA = {args.limit_data:,} MB ({load()}):")
            for mode in modes:
                r = run(mode, study, work / "results.duckdb", env, args.limit_data)
                lines = [line.strip() for line in r["output"].splitlines() if line.strip()]
                print(f"  {mode:4}: exit {r['code']} after {r['seconds']:.0f} s, peak anonymous "
                      f"{mb(r.get('RssAnon', 0))}; last line: {lines[-1][:150] if lines else ''}")  # fmt: skip
                for line in [line for line in lines if "rror" in line][:3]:
                    print(f"        {line[:200]}")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
