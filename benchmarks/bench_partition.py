"""Would a partition (IVF) search find the neighbours? The check to run before building one.

    python benchmarks/bench_partition.py                        # 200,000 × 384, space A
    python benchmarks/bench_partition.py --n 50000 --space B --lists 512,1024

On `bench_scale.py`'s seeded spaces (cosine, k = 10): the space's unit rows are projected on
`--dims` principal directions (of a seeded sample of 50,000 rows, centred, as the `hnsw`
backend's `pca` does); k-means (`--iterations` Lloyd steps on a seeded sample of
`--sample-per-list` rows per list) cuts the projection into L lists (`--lists`), and each item
is in the list of its nearest centroid. For `--queries` seeded items, with their exact k
neighbours in the full space, it prints for each L and each number of probed lists p
(`--probes`, the item's own p nearest centroids):

- coverage: the fraction of the exact neighbours lying in the probed lists, an upper bound on
  the recall of any search that scores only those lists' items (and ranks them exactly);
- pairs: the fraction of all N² pairs such a search scores (the work, against exact search's
  N²/2 products of d multiply-adds, here of `--dims`).

It also prints what fresh memory costs this machine (first touch against reuse, ms per MB):
where first touch is slow (a VM whose memory the host backs lazily), an algorithm that
allocates pays for it and the exact search, which allocates little, does not.

Timings are of one run; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_scale import load, spaces


def unit(X: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(X, dim=1)


def project(Y: torch.Tensor, dims: int, rng: np.random.Generator) -> torch.Tensor:
    """Y's coordinates on its sample's `dims` leading centred principal directions."""
    sample = Y[torch.from_numpy(np.sort(rng.choice(len(Y), min(len(Y), 50_000), replace=False)))]
    centred = sample.double() - sample.double().mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    basis = vectors[:, -dims:].flip(1).float()
    return Y @ basis


def kmeans(
    P: torch.Tensor, lists: int, iterations: int, per_list: int, rng: np.random.Generator
) -> torch.Tensor:
    """Lloyd's k-means on a seeded sample of P: the centroids (lists × dims)."""
    m = min(len(P), per_list * lists)
    sample = P[torch.from_numpy(np.sort(rng.choice(len(P), m, replace=False)))]
    centroids = sample[torch.from_numpy(rng.choice(m, lists, replace=False))].clone()
    for _ in range(iterations):
        nearest = nearest_lists(sample, centroids, 1)[:, 0]
        sums = torch.zeros_like(centroids).index_add_(0, nearest, sample)
        counts = torch.bincount(nearest, minlength=lists)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


def nearest_lists(P: torch.Tensor, centroids: torch.Tensor, p: int) -> torch.Tensor:
    """Each row's p nearest centroids (by distance), nearest first, in row blocks."""
    half = 0.5 * (centroids * centroids).sum(1)
    return torch.cat(
        [
            torch.addmm(half, P[s : s + 8192], centroids.T, beta=-1).topk(p, dim=1).indices
            for s in range(0, len(P), 8192)
        ]
    )


def exact_neighbours(Y: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """The queries' k nearest other items by cosine (Y: unit rows), in the full space, 256
    queries at a time (a block of scores is 256 × N)."""
    found = []
    for block in queries.split(256):
        scores = Y[block] @ Y.T
        scores[torch.arange(len(block)), block] = -float("inf")
        found.append(scores.topk(k, dim=1).indices)
    return torch.cat(found)


def first_touch() -> tuple[float, float]:
    """ms per MB of writing 256 MB of fresh memory, and of writing it again."""
    t0 = time.perf_counter()
    block = np.empty(64 * 2**20, np.float32)
    block.fill(1.0)
    t1 = time.perf_counter()
    block.fill(2.0)
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3 / 256, (t2 - t1) * 1e3 / 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--space", choices=("A", "B"), default="A")
    parser.add_argument("--dims", type=int, default=64, help="principal directions")
    parser.add_argument("--lists", default="1024,2048", help="L[,L...]")
    parser.add_argument("--probes", default="1,8,16,32,64", help="p[,p...]")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--sample-per-list", type=int, default=32)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    touch, again = first_touch()
    print(f"load average {load()}; fresh memory: first touch {touch:.2f} ms/MB, "
          f"written again {again:.2f} ms/MB")  # fmt: skip
    A, B = spaces(args.n, args.dim)
    Y = unit(torch.from_numpy(A if args.space == "A" else B))
    rng = np.random.default_rng(0)
    queries = torch.from_numpy(np.sort(rng.choice(args.n, args.queries, replace=False)))
    exact = exact_neighbours(Y, queries, args.k)
    P = project(Y, args.dims, rng)
    probes = sorted({int(p) for p in args.probes.split(",")})
    print(f"{args.n:,} × {args.dim}, space {args.space}, {args.dims} directions, k = {args.k}, "
          f"{args.queries:,} queries; k-means {args.iterations} iterations, "
          f"{args.sample_per_list} rows per list")  # fmt: skip
    for lists in (int(v) for v in args.lists.split(",")):
        t0 = time.perf_counter()
        centroids = kmeans(P, lists, args.iterations, args.sample_per_list, rng)
        took = time.perf_counter() - t0
        home = nearest_lists(P, centroids, 1)[:, 0]
        sizes = torch.bincount(home, minlength=lists).double()
        probed = nearest_lists(P[queries], centroids, max(probes))
        wanted = home[exact]  # the list of each exact neighbour
        print(f"\nL = {lists:,} (k-means {took:.1f} s; list sizes {int(sizes.min())}-"
              f"{int(sizes.max())}, median {int(sizes.median())})")  # fmt: skip
        print("| probes | coverage | pairs scored |\n|---|---|---|")
        for p in probes:
            found = (wanted[:, :, None] == probed[:, None, :p]).any(-1)
            pairs = sizes[probed[:, :p]].sum(1).mean().item() / args.n
            print(f"| {p} | {found.double().mean().item():.4f} | {pairs:.4f} |")
    print(f"\nload average {load()}")


if __name__ == "__main__":
    main()
