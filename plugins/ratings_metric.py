"""The `similarity_correlation` metric: do a space's similarities agree with human word-pair ratings?

For every rated pair (w1, w2, score) whose two words are both items of the split (matched against
`Spaces.ids`), the metric takes the cosine similarity (or negative Euclidean distance) of the two
items' vectors in a space and reports Spearman's rho between those similarities and the human
scores, as in Collell & Moens (2018) and the word-embedding literature.

Rows, per split, ratings source and space (comparison "<space>-<source>", e.g. "pred-simlex999";
spaces are abbreviated input, pred, target):

- `spearman`: Spearman's rho (scipy.stats.spearmanr, average ranks for ties) over the covered
  pairs; NaN when fewer than 2 pairs are covered or either side is constant. With
  `interval = "fisher"` (the default) its ci_low/ci_high are the 95% Fisher z interval over the
  n covered pairs, tanh(atanh(rho) ± 1.96 · sqrt(1.06 / (n - 3))) (Fieller, Hartley & Pearson
  1957); NULL when n <= 3 or rho is NaN, and with `interval = "none"`.
- `coverage`: covered pairs / rated pairs (the same for every space of a split; written once per
  comparison so each spearman row has its coverage next to it).

Matching: ids and words are compared after `str.casefold()` (unless `casefold = false`); when an
id occurs more than once in a split, its first row is used. Pairs whose two words are the same
item are kept (similarity 1).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmodal import (
    CheckContext,
    MetricDisplay,
    MetricSpec,
    Param,
    Probe,
    ResultRow,
    XmodalError,
    hookimpl,
)
from xmodal_plugins.support.word_ratings import Rating, benchmark_path, load_ratings, read_ratings

SHORT = {"input": "input", "predicted": "pred", "target": "target"}

PARAMS = {
    "ratings": Param(
        str,
        default=[],
        many=True,
        doc="known benchmarks (xmodal_plugins.support.word_ratings), e.g. simlex999, men",
    ),
    "ratings_file": Param(
        str,
        default=[],
        many=True,
        doc="files of word1, word2, score lines (tab, comma or space separated)",
    ),
    "spaces": Param(
        str,
        default=["input", "predicted", "target"],
        many=True,
        choices=tuple(SHORT),
        doc="the spaces whose word-pair similarities are correlated with the ratings",
    ),
    "similarity": Param(
        str,
        default=["cosine"],
        many=True,
        choices=("cosine", "euclidean"),
        doc="word-pair similarity: cosine, or negative Euclidean distance",
    ),
    "casefold": Param(bool, default=True, doc="match words to item ids case-insensitively"),
    "interval": Param(
        str,
        default="fisher",
        choices=("fisher", "none"),
        doc="spearman's 95% interval over rated pairs: 'fisher' (Fisher z with the "
        "Fieller-Hartley-Pearson standard error sqrt(1.06/(n-3)), n covered pairs) or 'none'",
    ),
}

# The 97.5% normal quantile: the Fisher interval's coverage is 95%.
Z_975 = 1.959963984540054

# Files and benchmarks are read by the parser the `ratings` dataset uses (one format, one set of
# error messages): xmodal_plugins.support.word_ratings.


@functools.lru_cache(maxsize=32)
def _cached_file(path: str, mtime: float) -> tuple[Rating, ...]:
    return tuple(read_ratings(path))


@functools.lru_cache(maxsize=32)
def _cached_benchmark(name: str) -> tuple[Rating, ...]:
    return tuple(load_ratings(name))


def ratings_sources(
    params: Mapping[str, Any],
) -> list[tuple[str, Sequence[tuple[str, str, float]]]]:
    """(source name, ratings) for every benchmark and file the parameters name."""
    sources: list[tuple[str, Sequence[tuple[str, str, float]]]] = []
    for name in params["ratings"]:
        sources.append((name, _cached_benchmark(name)))
    for file in params["ratings_file"]:
        path = Path(file)
        sources.append((path.stem, _cached_file(str(path.resolve()), path.stat().st_mtime)))
    return sources


def covered_pairs(
    ids: Sequence[str], ratings: Sequence[tuple[str, str, float]], casefold: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (i, j) and human scores of the rated pairs whose words are both items."""
    norm = str.casefold if casefold else (lambda s: s)
    index: dict[str, int] = {}
    for row, item in enumerate(ids):
        index.setdefault(norm(item), row)
    found = [
        (index[norm(a)], index[norm(b)], s)
        for a, b, s in ratings
        if norm(a) in index and norm(b) in index
    ]
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    i, j, s = zip(*found, strict=True)
    return np.asarray(i), np.asarray(j), np.asarray(s, dtype=np.float64)


def pair_scores(
    x: np.ndarray, i: np.ndarray, j: np.ndarray, similarity: str = "cosine"
) -> np.ndarray:
    """Cosine similarity (or negative Euclidean distance) of rows i[p] and j[p] of x."""
    a, b = np.asarray(x[i], dtype=np.float64), np.asarray(x[j], dtype=np.float64)
    if similarity == "euclidean":
        return -np.linalg.norm(a - b, axis=1)
    tiny = np.finfo(np.float64).tiny
    return (a * b).sum(axis=1) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), tiny
    )


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    from scipy import stats  # on first use: registering this plugin must not import scipy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a, b).statistic)


def fisher_interval(rho: float, n: int) -> tuple[float | None, float | None]:
    """The 95% interval for Spearman's rho over n pairs: tanh(atanh(rho) ± 1.96 · se) with the
    Fieller, Hartley & Pearson (1957) se = sqrt(1.06 / (n - 3)); (None, None) when n <= 3 or rho
    is NaN. |rho| = 1 gives the degenerate interval [rho, rho]."""
    if n <= 3 or not np.isfinite(rho):
        return None, None
    if abs(rho) >= 1.0:
        return rho, rho
    z, half = float(np.arctanh(rho)), Z_975 * float(np.sqrt(1.06 / (n - 3)))
    low, high = float(np.tanh(z - half)), float(np.tanh(z + half))
    return min(low, rho), max(high, rho)


def similarity_correlation(probe: Probe, params: Mapping[str, Any]) -> Iterator[ResultRow]:
    """Spearman's rho of each space's pair similarities with human ratings, and coverage."""
    sources = ratings_sources(params)
    for split in probe.splits:
        spaces = probe.spaces[split]
        for source, ratings in sources:
            i, j, human = covered_pairs(spaces.ids, ratings, params["casefold"])
            coverage = len(human) / len(ratings) if ratings else float("nan")
            for role in params["spaces"]:
                comparison = f"{SHORT[role]}-{source}"
                for similarity in params["similarity"]:
                    rho = _spearman(pair_scores(spaces.of(role), i, j, similarity), human)
                    low = high = None
                    if params["interval"] == "fisher":
                        low, high = fisher_interval(rho, len(human))
                    yield ResultRow(
                        split,
                        "spearman",
                        comparison,
                        rho,
                        similarity=similarity,
                        ci_low=low,
                        ci_high=high,
                    )
                yield ResultRow(split, "coverage", comparison, coverage)


def _check_benchmark(name: str) -> Iterator[tuple[str, str]]:
    """Is the benchmark known and installed? (Locates its file without reading it.)"""
    if Path(name).expanduser().is_file():
        return
    try:
        benchmark_path(name)
    except XmodalError as exc:
        yield "ratings", str(exc)


def check_similarity_correlation(
    params: Mapping[str, Any], context: CheckContext
) -> Iterator[tuple[str, str]]:
    if not params["ratings"] and not params["ratings_file"]:
        yield (
            "ratings",
            'name human ratings: ratings = ["simlex999"] or ratings_file = ["pairs.tsv"]',
        )
    for name in params["ratings"]:
        yield from _check_benchmark(name)
    for file in params["ratings_file"]:
        if not Path(file).is_file():
            yield "ratings_file", f"{file!r} is not a file (paths are relative to {Path.cwd()})"
            continue
        try:  # a malformed file is named before any run starts, not inside one
            _cached_file(str(Path(file).resolve()), Path(file).stat().st_mtime)
        except XmodalError as exc:
            yield "ratings_file", str(exc)
    names = [*params["ratings"], *(Path(f).stem for f in params["ratings_file"])]
    if len(set(names)) < len(names):
        yield (
            "ratings_file",
            f"two ratings sources share a name ({', '.join(names)}); their rows would mix",
        )


@hookimpl
def register_metrics(register: Callable[[MetricSpec], None]) -> None:
    register(
        MetricSpec(
            name="similarity_correlation",
            compute=similarity_correlation,
            params=PARAMS,
            description="Spearman correlation of a space's word-pair similarities with human ratings",
            compares=("input-<ratings>", "pred-<ratings>", "target-<ratings>"),
            value_range=(-1.0, 1.0),
            check=check_similarity_correlation,
            outputs={
                # Agreement with human judgements: higher is closer to them.
                "spearman": MetricDisplay("Spearman ρ", digits=3, higher_is_better=True),
                # The share of rated pairs whose items are in the split: a fact of the data.
                "coverage": MetricDisplay("Coverage", digits=3, higher_is_better=None),
            },
        )
    )
