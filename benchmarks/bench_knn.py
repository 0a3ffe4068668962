"""Benchmark xmodal's exact mNNO against the usual ways of computing it.

For each size N×d, two row-aligned random spaces A and B (B is a noisy linear image of A, so mNNO
is well above chance) and mNNO^10 under cosine, by:

  xmodal   xmodal.neighbors.mnno (blocked, upper-triangle tiles, threshold selection)
  full     the published reference implementations' approach: the N×N similarity matrix, then a
           full argsort of every row (diagonal masked, so the item is excluded by index)
  sklearn  sklearn NearestNeighbors(metric="cosine", algorithm="brute").kneighbors()
  faiss    faiss-cpu exact IndexFlatIP on normalised rows (skipped if faiss is not installed)

Every measurement runs in a fresh subprocess (methods interleaved, repeat by repeat), so one
library's idle BLAS threads never slow the next method. Peak extra memory: after loading the data
and a small warm-up run (imports, thread pools), the process's resident high-water mark is reset
(/proc/self/clear_refs); the number is the high-water mark after the run minus the resident size
before it, i.e. the most resident memory the method added at any moment (the largest of the
repeats is shown). Without clear_refs it falls back to ru_maxrss deltas, which under-count.
Speed-ups are ratios of medians from the same invocation. Effective GFLOP/s counts 2·N²·d per
space (what a full similarity matrix costs), as a fraction of the fp32 matmul peak measured in
the same invocation (best of numpy/OpenBLAS and torch sgemm, 4096³).

A size N×d:U is duplicate-heavy: the N items are drawn (with replacement) from U distinct items,
so each vector of A (and the matching vector of B) appears about N/U times, as exact copies.
xmodal computes such a space on its distinct rows only; the baselines break the many exact ties
their own way, so their mNNO may differ from xmodal's (lower index first) there.

    python benchmarks/bench_knn.py                       # every size, 3 repeats
    python benchmarks/bench_knn.py --sizes 2000x300,10000x2048 --repeats 5
    python benchmarks/bench_knn.py --sizes 20000x300:5000,10000x2048:2500
    python benchmarks/bench_knn.py --methods xmodal,faiss
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = "2000x300,2000x2048,10000x300,10000x2048,20000x300,20000x2048,20000x300:5000"
METHODS = ("xmodal", "full", "sklearn", "faiss")
K = 10


# --- the methods: each returns (neighbour lists of A, of B) ----------------------------------


def _normalise(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def run_xmodal(A: np.ndarray, B: np.ndarray) -> float:
    from xmodal.neighbors import mnno

    return mnno(A, B, K)


def _full_lists(X: np.ndarray) -> np.ndarray:
    Xn = _normalise(X)
    S = Xn @ Xn.T
    np.fill_diagonal(S, -np.inf)
    return np.argsort(-S, axis=1)[:, :K]


def _sklearn_lists(X: np.ndarray) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=K, metric="cosine", algorithm="brute").fit(X)
    return nn.kneighbors(return_distance=False)  # no X: each point is not its own neighbour


def _faiss_lists(X: np.ndarray) -> np.ndarray:
    import faiss

    Xn = np.ascontiguousarray(_normalise(X), dtype=np.float32)
    index = faiss.IndexFlatIP(Xn.shape[1])
    index.add(Xn)
    _, found = index.search(Xn, K + 1)
    # Drop the item itself by index (not "the first hit"); if it is not there, drop the last.
    is_self = found == np.arange(len(X))[:, None]
    is_self[~is_self.any(axis=1), K] = True
    return found[~is_self].reshape(len(X), K)


LISTS = {"full": _full_lists, "sklearn": _sklearn_lists, "faiss": _faiss_lists}


def run_method(method: str, A: np.ndarray, B: np.ndarray) -> float:
    if method == "xmodal":
        return run_xmodal(A, B)
    from xmodal.neighbors import overlap

    return overlap(LISTS[method](A), LISTS[method](B), K)


def worker(method: str, data: str) -> None:
    """One timed run in this (fresh) process; prints a JSON line."""
    A = np.load(f"{data}/A.npy")
    B = np.load(f"{data}/B.npy")
    run_method(method, A[:300], B[:300])  # warm-up: imports, thread pools, BLAS buffers
    peak_reset = _reset_peak_rss()
    before = (
        _status_kb("VmRSS") if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    t0 = time.perf_counter()
    value = run_method(method, A, B)
    seconds = time.perf_counter() - t0
    after = (
        _status_kb("VmHWM") if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    print(json.dumps({"seconds": seconds, "extra_mb": (after - before) / 1024, "mnno": value}))


def _reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark (Linux >= 4.0: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _status_kb(key: str) -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def peak_worker(lib: str) -> None:
    n = 4096
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if lib == "torch":
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def mm() -> object:
            return ta @ tb
    else:

        def mm() -> object:
            return a @ b

    mm()
    best = min(_timed(mm) for _ in range(5))
    print(json.dumps({"gflops": 2 * n**3 / best / 1e9}))


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


# --- the driver -------------------------------------------------------------------------------


def spawn(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_spaces(n: int, d: int, distinct: int | None, folder: str) -> None:
    """A and B = noisy linear image of A; with `distinct`, N items drawn from that many."""
    u = n if distinct is None else distinct
    rng = np.random.default_rng(n + d + (0 if distinct is None else distinct))
    A = rng.standard_normal((u, d), dtype=np.float32)
    mix = rng.standard_normal((d, d), dtype=np.float32) / np.float32(np.sqrt(d))
    B = (A @ mix + rng.standard_normal((u, d), dtype=np.float32)).astype(np.float32)
    if distinct is not None:
        pick = rng.integers(0, u, n)
        A, B = A[pick], B[pick]
    np.save(f"{folder}/A.npy", A)
    np.save(f"{folder}/B.npy", B)


def parse_size(text: str) -> tuple[int, int, int | None]:
    """'NxD' or 'NxD:U' (U distinct items) -> (N, D, U or None)."""
    shape, _, distinct = text.strip().lower().partition(":")
    n, d = (int(v) for v in shape.split("x"))
    return n, d, int(distinct) if distinct else None


def size_label(n: int, d: int, distinct: int | None) -> str:
    return f"{n}x{d}" + (f":{distinct}" if distinct else "")


def has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=SIZES, help=f"comma-separated NxD or NxD:U (default {SIZES})"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    if "faiss" in methods and not has_faiss():
        print("faiss is not installed (pip install faiss-cpu): skipping it")
        methods.remove("faiss")

    peaks = {lib: spawn("--peak", lib)["gflops"] for lib in ("numpy", "torch")}
    peak = max(peaks.values())
    print(
        f"fp32 sgemm 4096³ peak: numpy {peaks['numpy']:.0f} GFLOP/s, "
        f"torch {peaks['torch']:.0f} GFLOP/s; using {peak:.0f}"
    )
    print(f"{os.cpu_count()} CPUs, k = {K}, cosine, {args.repeats} repeats, median seconds")
    print("load average at start: {:.2f} {:.2f} {:.2f}\n".format(*os.getloadavg()))

    rows = []
    for n, d, distinct in sizes:
        with tempfile.TemporaryDirectory() as folder:
            make_spaces(n, d, distinct, folder)
            runs: dict[str, list[dict]] = {m: [] for m in methods}
            for _ in range(args.repeats):
                for m in methods:
                    runs[m].append(spawn("--worker", m, folder))
        med = {m: statistics.median(r["seconds"] for r in runs[m]) for m in methods}
        mem = {m: max(r["extra_mb"] for r in runs[m]) for m in methods}
        values = {m: runs[m][0]["mnno"] for m in methods}
        flops = 2 * (2 * n * n * d)  # two spaces
        ref = values.get("xmodal")
        for m in methods:
            same = "yes" if ref is None or values[m] == ref else f"NO ({values[m]!r} vs {ref!r})"
            speedup = med[m] / med["xmodal"] if "xmodal" in med else float("nan")
            gf = flops / med[m] / 1e9
            label = size_label(n, d, distinct)
            rows.append((label, m, med[m], speedup, gf, gf / peak, mem[m], values[m], same))
        _print_rows(rows[-len(methods) :], header=(n, d, distinct) == sizes[0])
    print("\nspeed-up = method's median / xmodal's median (>1: xmodal is faster)")
    print(
        "load average at end: {:.2f} {:.2f} {:.2f} (above ~0.5 other work shared the CPUs)".format(
            *os.getloadavg()
        )
    )


def _print_rows(rows: list[tuple], header: bool) -> None:
    if header:
        print(
            f"{'size':>16} {'method':>8} {'median s':>9} {'speed-up':>9} {'GFLOP/s':>8} "
            f"{'of peak':>8} {'peak MB':>8} {'mNNO':>8} {'same mNNO':>9}"
        )
    for size, m, sec, sp, gf, frac, mb, value, same in rows:
        print(
            f"{size:>16} {m:>8} {sec:9.3f} {sp:8.2f}x {gf:8.0f} {frac:8.0%} {mb:8.0f} "
            f"{value:8.4f} {same:>9}",
            flush=True,
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--peak":
        peak_worker(sys.argv[2])
    else:
        main()
