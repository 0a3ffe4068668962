"""Neighbourhoods at scale (issue 14): an approximate backend (`hnsw` or `ivf`) against exact search.

    python benchmarks/bench_scale.py                       # 200,000 × 384 check, then 1,000,000
    python benchmarks/bench_scale.py --check 20000 --large 0          # a quick look
    python benchmarks/bench_scale.py --check 0 --large 1000000        # only the large run

Data: two seeded synthetic spaces A and B of N items × d (float32), row-aligned views of one
clustered latent space (64 dimensions, N/100 clusters): A = Z·W_A + noise, B = tanh(Z·W_B) +
noise, so items have real neighbourhoods and A and B share part of them (mNNO well above
chance), unlike uniform noise, where every neighbour is a near-tie.

`--check N`: exact `xmodal.knn` and the approximate backend on both spaces; prints recall@k of the
approximate lists (over all items, and as sampled by the backend), mNNO exact and approximate,
the worst-case bound (1 − recall_A) + (1 − recall_B) and the speed-up. Targets: recall@10 ≥
0.95, |ΔmNNO| ≤ 0.005, ≥ 10× faster.

`--large N`: the approximate mNNO between A and B alone: time, peak memory, sampled recall
(`--large-M`, `--large-ef-construction`, `--large-ef-search`, `--large-probes`: its own
settings, since holding a recall takes a denser graph or a wider search as N grows; 0: the
check's).

`--pca m` (and `--candidates c`): the hnsw backend's projected search, m principal directions,
c candidates per item ranked exactly (docs/performance.md, "Projected search").

`--backend ivf` (with `--lists`, `--probes`, `--iterations`, `--pca`, `--candidates`): the `ivf`
backend instead, k-means lists searched in m principal directions (docs/performance.md,
"Partition search"); `--large-probes` is its setting for the large run (0: `--probes`).

`--sweep N[,N...]`: how `ef_search` buys recall. For each N, one HNSW graph of space A (`--M`,
`--ef-construction`, `--threads`), then the seeded `--recall-sample` items searched at each
`--sweep-ef` value: recall@k against their exact lists, and the CPU seconds of that search
scaled to all N items (build + that = the backend's cost at that setting).

Each computation runs in its own process (`--case`), so that its peak resident memory is its
own: VmHWM, reset once the data are made (their temporaries would otherwise set the peak);
tracemalloc is not used because faiss allocates outside Python.
Timings are wall-clock seconds of one run; the load average is printed before and after
(the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LATENT = 64


def spaces(n: int, d: int, seed: int = 0, block: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Two row-aligned views (n × d float32) of one clustered latent space, made in blocks."""
    rng = np.random.default_rng(seed)
    clusters = max(n // 100, 10)
    centres = rng.standard_normal((clusters, LATENT)).astype(np.float32)
    w_a = (rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)).astype(np.float32)
    w_b = (rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)).astype(np.float32)
    A = np.empty((n, d), np.float32)
    B = np.empty((n, d), np.float32)
    for start in range(0, n, block):
        m = min(block, n - start)
        z = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, LATENT)).astype(
            np.float32
        )
        A[start : start + m] = z @ w_a + 0.1 * rng.standard_normal((m, d)).astype(np.float32)
        B[start : start + m] = np.tanh(z @ w_b) + 0.1 * rng.standard_normal((m, d)).astype(
            np.float32
        )
    return A, B


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def reset_peak() -> float:
    """Start this process's peak resident memory afresh (Linux: VmHWM, through clear_refs), so
    that the data's making does not count; the resident memory now, in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    now = _status_mb("VmRSS")
    return peak_mb() if now is None else now


def peak_mb() -> float:
    """Peak resident memory (MB) since the last reset_peak (ru_maxrss where /proc has none)."""
    peak = _status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if peak is None else peak


def run_case(args: argparse.Namespace) -> dict:
    """One computation in this process: exact or approximate lists of A and B, saved to --out."""
    from xmodal.plugins import get_registry

    registry = get_registry()
    cosine = registry.similarities["cosine"]
    A, B = spaces(args.n, args.dim, args.seed)
    # Imports (torch for knn, faiss for hnsw) and first calls are not timed.
    if args.case == "exact":
        from xmodal import knn

        knn(A[:500], 5, cosine)
    else:
        registry.neighbor_backends[args.backend].search(A[:500], 5, cosine, False, params_of(args))
    base = reset_peak()
    out = {"n": args.n, "case": args.case, "input_mb": (A.nbytes + B.nbytes) / 2**20}
    lists = {}
    for name, X in (("A", A), ("B", B)):
        t0, c0 = time.perf_counter(), time.process_time()
        if args.case == "exact":
            from xmodal import knn

            lists[name] = knn(X, args.k, cosine).indices
            out[f"seconds_{name}"] = time.perf_counter() - t0
            out[f"cpu_{name}"] = time.process_time() - c0
        else:
            from xmodal.neighbor_search import Backend, exact_rows

            spec = registry.neighbor_backends[args.backend]
            params = params_of(args)
            lists[name] = spec.search(X, args.k, cosine, False, params)
            out[f"seconds_{name}"] = time.perf_counter() - t0
            out[f"cpu_{name}"] = time.process_time() - c0
            t1, c1 = time.perf_counter(), time.process_time()
            backend = Backend(spec, params, args.recall_sample, 0)
            rows = np.sort(
                np.random.default_rng(backend.recall_seed).choice(
                    len(X), min(backend.recall_sample, len(X)), replace=False
                )
            )
            exact = exact_rows(X, rows, args.k, cosine, False)
            both = np.sort(np.hstack([lists[name][rows], exact]), axis=1)
            per_item = (both[:, 1:] == both[:, :-1]).sum(axis=1) / args.k
            out[f"sampled_recall_{name}"] = float(per_item.mean())
            out[f"sampled_recall_se_{name}"] = float(per_item.std(ddof=1) / np.sqrt(len(rows)))
            out[f"recall_seconds_{name}"] = time.perf_counter() - t1
            out[f"recall_cpu_{name}"] = time.process_time() - c1
        np.save(Path(args.out) / f"{args.case}-{name}.npy", lists[name])
    from xmodal import overlap

    out["mnno"] = overlap(lists["A"], lists["B"], args.k)
    out["peak_mb"] = peak_mb()
    out["peak_extra_mb"] = peak_mb() - base
    return out


def params_of(args: argparse.Namespace) -> dict:
    """The approximate backend's parameters from the command line; the backend's own defaults
    for those not given (`--pca`, `--threads`)."""
    from xmodal.plugins import get_registry

    spec = get_registry().neighbor_backends[args.backend]
    if args.backend == "ivf":
        keys = ("lists", "probes", "iterations", "threads", "pca", "candidates")
    else:
        keys = ("M", "ef_construction", "ef_search", "threads", "pca", "candidates")
    given = {key: getattr(args, key) for key in keys}
    return {key: spec.params[key].default if v is None else v for key, v in given.items()}


def settings(args: argparse.Namespace) -> str:
    return f"{args.backend} " + " ".join(f"{k}={v}" for k, v in params_of(args).items())


def child(args: argparse.Namespace, case: str, n: int, out: str) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--n", str(n), "--out", out]
    for key in (
        "backend",
        "lists",
        "probes",
        "iterations",
        "dim",
        "k",
        "seed",
        "M",
        "ef_construction",
        "ef_search",
        "threads",
        "pca",
        "candidates",
        "recall_sample",
        "sweep_ef",
    ):
        if getattr(args, key) is not None:  # None: the backend's default
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{case} at N = {n} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def full_recall(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    both = np.sort(np.hstack([approx[:, :k], exact[:, :k]]), axis=1)
    return float((both[:, 1:] == both[:, :-1]).sum() / (len(approx) * k))


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=int, default=200_000, help="N of the exact check; 0 skips")
    parser.add_argument("--large", type=int, default=1_000_000, help="N of the large run; 0 skips")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("hnsw", "ivf"), default="hnsw", help="approximate")
    parser.add_argument("--lists", type=int, default=0, help="ivf's lists (0: one per 64 items)")
    parser.add_argument("--probes", type=int, default=12, help="ivf's probes")
    parser.add_argument("--iterations", type=int, default=8, help="ivf's k-means steps")
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--ef-search", type=int, default=32)
    for key in ("M", "ef-construction", "ef-search", "probes"):
        parser.add_argument(f"--large-{key}", type=int, default=0, help=f"{key} of the large run")
    parser.add_argument("--threads", type=int, help="faiss threads (default: the backend's)")
    parser.add_argument("--pca", type=int, help="pca (0: the space itself; default: the backend's)")
    parser.add_argument("--candidates", type=int, default=0, help="candidates (0: 2·k)")
    parser.add_argument("--recall-sample", type=int, default=1000)
    parser.add_argument("--ray", type=int, default=50_000, help="N of the ray check; 0 skips")
    parser.add_argument("--ray-repeats", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--ray-tasks-per-cpu", type=int, default=2)
    parser.add_argument("--mmap", type=int, default=0, help="N of the memory-map check; 0 skips")
    parser.add_argument("--sweep", default="", help="N[,N...] of the ef_search sweep; '' skips")
    parser.add_argument("--sweep-ef", default="32,64,128,256", help="ef_search values swept")
    parser.add_argument("--case", choices=("exact", "approx", "sweep"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(sweep_case(args) if args.case == "sweep" else run_case(args)))
        return

    print(f"{settings(args)}, k={args.k}, d={args.dim}, recall sample {args.recall_sample}")
    if args.ray:
        ray_part(args)
    if args.mmap:
        mmap_part(args)
    if args.sweep:
        sweep_part(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.check:
            n = args.check
            print(f"\n== approximate vs exact at {n:,} × {args.dim} (load {load()})", flush=True)
            approx = child(args, "approx", n, tmp)
            print(f"approx done (load {load()})", flush=True)
            exact = child(args, "exact", n, tmp)
            print(f"exact done (load {load()})", flush=True)
            t_approx = approx["seconds_A"] + approx["seconds_B"]
            t_recall = approx["recall_seconds_A"] + approx["recall_seconds_B"]
            t_exact = exact["seconds_A"] + exact["seconds_B"]
            recalls = {}
            for s in ("A", "B"):
                a = np.load(Path(tmp) / f"approx-{s}.npy")
                e = np.load(Path(tmp) / f"exact-{s}.npy")
                recalls[s] = full_recall(a, e, args.k)
                print(f"space {s}: recall@{args.k} {recalls[s]:.4f} over all items, sampled "
                      f"{approx[f'sampled_recall_{s}']:.4f} ± {approx[f'sampled_recall_se_{s}']:.4f}; "
                      f"{args.backend} {approx[f'seconds_{s}']:.1f} s, exact {exact[f'seconds_{s}']:.1f} s")  # fmt: skip
            delta = approx["mnno"] - exact["mnno"]
            worst = (1 - recalls["A"]) + (1 - recalls["B"])
            print(f"mNNO@{args.k}: exact {exact['mnno']:.5f}, approximate {approx['mnno']:.5f}, "
                  f"|Δ| {abs(delta):.5f} (worst-case bound {worst:.4f}, "
                  f"bound × mNNO {worst * exact['mnno']:.4f})")  # fmt: skip
            print(f"time for both spaces: exact {t_exact:.1f} s, {args.backend} {t_approx:.1f} s "
                  f"({t_exact / t_approx:.1f}× faster), recall sampling {t_recall:.1f} s "
                  f"({t_exact / (t_approx + t_recall):.1f}× faster with it)")  # fmt: skip
            c_exact = exact["cpu_A"] + exact["cpu_B"]
            c_approx = approx["cpu_A"] + approx["cpu_B"]
            c_recall = approx["recall_cpu_A"] + approx["recall_cpu_B"]
            print(f"CPU seconds (all threads; robust to the load): exact {c_exact:.1f}, {args.backend} "
                  f"{c_approx:.1f} ({c_exact / c_approx:.1f}×), recall sampling {c_recall:.1f} "
                  f"({c_exact / (c_approx + c_recall):.1f}× with it)")  # fmt: skip
            print(f"peak memory beyond the input: exact {exact['peak_extra_mb']:.0f} MB, "
                  f"{args.backend} {approx['peak_extra_mb']:.0f} MB (input {approx['input_mb']:.0f} MB)")  # fmt: skip
            ok = recalls["A"] >= 0.95 and recalls["B"] >= 0.95
            print(f"targets: recall ≥ 0.95 {'met' if ok else 'MISSED'}; |ΔmNNO| ≤ 0.005 "
                  f"{'met' if abs(delta) <= 0.005 else 'MISSED'}; ≥ 10× faster "
                  f"{'met' if t_exact >= 10 * t_approx else 'MISSED'}")  # fmt: skip
        if args.large:
            n = args.large
            print(f"\n== approximate mNNO at {n:,} × {args.dim} (load {load()})", flush=True)
            large = argparse.Namespace(**vars(args))
            large.M = args.large_M or args.M
            large.ef_construction = args.large_ef_construction or args.ef_construction
            large.ef_search = args.large_ef_search or args.ef_search
            large.probes = args.large_probes or args.probes
            print(f"{settings(large)} at this size", flush=True)
            big = child(large, "approx", n, tmp)
            t = big["seconds_A"] + big["seconds_B"]
            t_recall = big["recall_seconds_A"] + big["recall_seconds_B"]
            print(f"mNNO@{args.k} {big['mnno']:.5f}; {args.backend} {t:.1f} s for both spaces "
                  f"(A {big['seconds_A']:.1f} s, B {big['seconds_B']:.1f} s) + recall sampling "
                  f"{t_recall:.1f} s; sampled recall A {big['sampled_recall_A']:.4f} ± "
                  f"{big['sampled_recall_se_A']:.4f}, B {big['sampled_recall_B']:.4f} ± "
                  f"{big['sampled_recall_se_B']:.4f}")  # fmt: skip
            print(f"CPU seconds: {args.backend} {big['cpu_A'] + big['cpu_B']:.1f}, recall sampling "
                  f"{big['recall_cpu_A'] + big['recall_cpu_B']:.1f}")  # fmt: skip
            print(f"peak resident memory {big['peak_mb']:.0f} MB (input {big['input_mb']:.0f} MB, "
                  f"{big['peak_extra_mb']:.0f} MB beyond it); load {load()}")  # fmt: skip


# --- hnsw: recall against ef_search from one graph ---------------------------------------------------


def sweep_case(args: argparse.Namespace) -> dict:
    """One graph of space A (N = args.n), its seeded sample searched at each ef_search."""
    from xmodal.neighbor_search import exact_rows
    from xmodal.plugins import get_registry
    from xmodal_plugins.ann import _faiss

    faiss = _faiss()
    cosine = get_registry().similarities["cosine"]
    A, B = spaces(args.n, args.dim, args.seed)
    del B
    n, k = len(A), args.k
    rows = np.sort(np.random.default_rng(0).choice(n, min(args.recall_sample, n), replace=False))
    t0, c0 = time.perf_counter(), time.process_time()
    exact = exact_rows(A, rows, k, cosine, False)
    out: dict = {"n": n, "exact_seconds": time.perf_counter() - t0}
    out["exact_cpu"] = time.process_time() - c0
    faiss.omp_set_num_threads(args.threads or faiss.omp_get_max_threads())
    Y = A / np.linalg.norm(A, axis=1, keepdims=True)
    del A
    t0, c0 = time.perf_counter(), time.process_time()
    index = faiss.IndexHNSWFlat(args.dim, args.M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    index.add(Y)
    out["build_seconds"] = time.perf_counter() - t0
    out["build_cpu"] = time.process_time() - c0
    out["ef"] = []
    for ef in (int(x) for x in args.sweep_ef.split(",")):
        index.hnsw.efSearch = max(ef, k + 1)
        t0, c0 = time.perf_counter(), time.process_time()
        _, found = index.search(Y[rows], k + 1)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        found = np.where(found == rows[:, None], -1, found)  # the item itself is not a neighbour
        found = np.array([row[row >= 0][:k] for row in found])
        both = np.sort(np.hstack([found, exact]), axis=1)
        per_item = (both[:, 1:] == both[:, :-1]).sum(axis=1) / k
        out["ef"].append(
            {
                "ef_search": ef,
                "recall": float(per_item.mean()),
                "se": float(per_item.std(ddof=1) / np.sqrt(len(rows))),
                "sample_seconds": seconds,
                "all_cpu": cpu * n / len(rows),
            }
        )
    out["peak_mb"] = peak_mb()
    return out


def sweep_part(args: argparse.Namespace) -> None:
    """`--sweep N[,N...]`: recall@k of the hnsw graph at each ef_search, from one build per N."""
    for n in (int(x) for x in args.sweep.split(",")):
        print(f"\n== hnsw ef_search sweep at {n:,} × {args.dim}, space A, M={args.M} "
              f"ef_construction={args.ef_construction} threads={args.threads} "
              f"(load {load()})", flush=True)  # fmt: skip
        r = child(args, "sweep", n, "")
        print(f"build {r['build_seconds']:.1f} s wall, {r['build_cpu']:.1f} CPU s; exact lists of "
              f"the {args.recall_sample:,} sampled items {r['exact_cpu']:.1f} CPU s; peak "
              f"{r['peak_mb']:.0f} MB")  # fmt: skip
        print(
            "| ef_search | recall@k ± se | search CPU s, all items (est.) | build + search CPU s |"
        )
        print("|---|---|---|---|")
        for e in r["ef"]:
            print(f"| {e['ef_search']} | {e['recall']:.4f} ± {e['se']:.4f} | {e['all_cpu']:.0f} | "
                  f"{r['build_cpu'] + e['all_cpu']:.0f} |")  # fmt: skip
        print(f"(load {load()})", flush=True)


# --- the `ray` backend: exact kNN as Ray tasks against the single process ---------------------------


def ray_part(args: argparse.Namespace) -> None:
    """`--ray N`: exact `knn` in this process (2 torch threads) against the `ray` backend's tiles
    on a local 2-worker Ray instance (1 thread per task), on space A (N × dim), repeats
    interleaved: identical lists (asserted), Ray's overhead (median wall time ratio), the
    per-tile cost, and the bytes moved to and from the workers."""
    import ray
    import torch

    from xmodal import knn
    from xmodal.neighbors import TileGrid
    from xmodal_plugins.ray_neighbors import RayTiles

    n, workers = args.ray, 2
    A, _ = spaces(n, args.dim, args.seed)
    grid = TileGrid.of(n)
    print(f"\n== exact kNN: one process vs the ray backend at {n:,} × {args.dim}, k = {args.k} "
          f"({len(grid.tiles())} tiles of {grid.b}², {workers} workers × "
          f"{args.ray_tasks_per_cpu} tasks; load {load()})", flush=True)  # fmt: skip
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        runner = RayTiles(ray, workers * args.ray_tasks_per_cpu, threads=1)
        torch.set_num_threads(workers)  # the single process gets the same 2 cores
        knn(A[:4000], args.k)  # imports, first calls, Ray's workers started and warm
        knn(A[:4000], args.k, runner=runner)
        seconds: dict[str, list[float]] = {"exact": [], "ray": []}
        cpu: dict[str, list[float]] = {"exact": [], "ray": []}
        found = {}
        stats = []
        for r in range(args.ray_repeats):
            for case in ("exact", "ray") if r % 2 == 0 else ("ray", "exact"):
                t0, c0 = time.perf_counter(), time.process_time()
                found[case] = knn(A, args.k, runner=runner if case == "ray" else None)
                seconds[case].append(time.perf_counter() - t0)
                cpu[case].append(time.process_time() - c0)  # this process: all its threads
                if case == "ray":
                    stats.append(runner.stats)
                    cpu[case][-1] += sum(runner.stats["task_cpu"])  # and the workers'
                print(f"  {case:5} {seconds[case][-1]:6.1f} s, {cpu[case][-1]:6.1f} CPU s "
                      f"(load {load()})", flush=True)  # fmt: skip
            assert np.array_equal(found["exact"].indices, found["ray"].indices)
            assert np.array_equal(found["exact"].similarities, found["ray"].similarities)
    finally:
        ray.shutdown()
    t_exact, t_ray = (float(np.median(seconds[c])) for c in ("exact", "ray"))
    per_tile = [
        s / t for st in stats for s, t in zip(st["task_seconds"], st["task_tiles"], strict=True)
    ]
    st = stats[-1]
    tile_ms = 1000 * float(np.median(per_tile))
    print(f"identical lists (indices and similarities): yes, in all {args.ray_repeats} repeats")
    print(f"median wall time: exact {t_exact:.1f} s, ray {t_ray:.1f} s: overhead "
          f"{100 * (t_ray / t_exact - 1):+.1f} % (target ≤ 15 %)")  # fmt: skip
    c_exact, c_ray = (float(np.median(cpu[c])) for c in ("exact", "ray"))
    print(f"median CPU seconds (driver and workers; less sensitive to the load): exact "
          f"{c_exact:.1f}, ray {c_ray:.1f}: {100 * (c_ray / c_exact - 1):+.1f} % more work")  # fmt: skip
    print(f"per-tile cost inside a task (1 thread): median {tile_ms:.1f} ms; one process "
          f"(2 threads): {1000 * t_exact / len(grid.tiles()):.1f} ms per tile of wall time")  # fmt: skip
    rows_mb = st["bytes_in"] / 2**20
    out_mb = st["bytes_out"] / 2**20
    print(f"bytes moved: {rows_mb:.0f} MB of prepared rows, offsets and floors into the object store "
          f"(once; read by every worker of a node), {out_mb:.1f} MB of partial lists back "
          f"({out_mb / st['tasks']:.1f} MB per task, {out_mb / workers:.1f} MB per worker); "
          f"load {load()}")  # fmt: skip


# --- exact kNN of a memory-mapped space ------------------------------------------------------------


def mmap_case(path: str, mapped: bool, k: int) -> dict:
    """In a process of its own: exact kNN of the .npy at `path`, memory-mapped or loaded: its
    seconds, the peak of the arrays it allocated (tracemalloc: numpy's allocations, not the
    file's pages, which the page cache holds and may drop) and the peak resident memory beyond
    the process's before the call (mapped pages count while resident)."""
    import tracemalloc

    import torch

    from xmodal import knn

    torch.set_num_threads(2)
    X = np.load(path, mmap_mode="r" if mapped else None)
    knn(np.array(X[:2000]), k)  # imports and first calls
    base = reset_peak()
    tracemalloc.start()
    t0 = time.perf_counter()
    lists = knn(X, k)
    seconds = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    np.save(path + (".mapped" if mapped else ".loaded") + ".npy", lists.indices)
    return {"seconds": seconds, "traced_mb": traced, "peak_extra_mb": peak_mb() - base}


def mmap_part(args: argparse.Namespace) -> None:
    """`--mmap N`: exact kNN of space A (N × dim) from a memory-mapped .npy against the same
    file loaded: identical lists (asserted), time, and peak resident memory beyond the process's
    own before the call (mapped pages of the file count while they are resident)."""
    n = args.mmap
    print(f"\n== exact kNN of a memory-mapped .npy at {n:,} × {args.dim} (load {load()})")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "a.npy")
        np.save(path, spaces(n, args.dim, args.seed)[0])
        out = {}
        for mapped in (True, False):
            code = (
                "import json, sys; sys.path.insert(0, sys.argv[1]); import bench_scale as b; "
                "print(json.dumps(b.mmap_case(sys.argv[2], sys.argv[3] == '1', int(sys.argv[4]))))"
            )
            cmd = [sys.executable, "-c", code, str(Path(__file__).parent), path, str(int(mapped))]
            done = subprocess.run([*cmd, str(args.k)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"mmap case failed:\n{done.stderr}")
            out[mapped] = json.loads(done.stdout.strip().splitlines()[-1])
        same = np.array_equal(np.load(path + ".mapped.npy"), np.load(path + ".loaded.npy"))
        assert same, "a memory-mapped space gave other lists"
        size = n * args.dim * 4 / 2**20
        print(f"identical lists: yes (the input is {size:.0f} MB; load {load()})")
        for mapped, label in ((True, "memory-mapped"), (False, "loaded")):
            o = out[mapped]
            print(f"  {label:13} {o['seconds']:6.1f} s; arrays allocated by knn: peak "
                  f"{o['traced_mb']:.0f} MB; resident memory: peak +{o['peak_extra_mb']:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
