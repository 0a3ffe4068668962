"""Human word-similarity ratings: `load_ratings(name)` -> [(word1, word2, score), ...].

Benchmarks are read from data files that packages ship; nothing is downloaded and no heavy
package is imported (files are located with `importlib.util.find_spec`):

| name                    | pairs | source                                                  |
| ----------------------- | ----- | ------------------------------------------------------- |
| simlex999               | 999   | gensim's test data (`pip install 'xmodal[ratings]'`)    |
| wordsim353 (ws353)      | 353   | gensim's test data                                      |
| wordsim353_similarity   | 202   | hyperhyper's data files (`pip install --no-deps hyperhyper`) |
| wordsim353_relatedness  | 250   | hyperhyper                                              |
| men                     | 3000  | hyperhyper (MEN, Bruni et al.; scores 0-50)             |
| mturk287 (mturk)        | 285   | hyperhyper (Radinsky et al.; 2 pairs dropped by it)     |
| rw                      | 2032  | hyperhyper (Stanford Rare Words, cleaned by hyperhyper) |

`name` may also be a path to your own file: one pair per line, word1, word2 and score separated
by tabs (or commas, or whitespace); blank lines, '#' comments and one header line are skipped.
Scores are returned as given (scales differ between benchmarks; Spearman correlation does not
care). Words keep their case as in the file.

`read_ratings` is the one parser of ratings files: the `ratings` dataset (its `benchmarks` and
`files`) and the `similarity_correlation` metric (its `ratings` and `ratings_file`) both read
through it, so a file that works in one works in the other. (This module was `xmodal.ratings`;
it is named `word_ratings` so as not to be confused with the `ratings` dataset plugin.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from xmodal import XmodalError

Rating = tuple[str, str, float]

# name -> (package, path inside the package)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "simlex999": ("gensim", "test/test_data/simlex999.txt"),
    "wordsim353": ("gensim", "test/test_data/wordsim353.tsv"),
    "wordsim353_similarity": ("hyperhyper", "evaluation_datasets/en/ws/ws353_similarity.tsv"),
    "wordsim353_relatedness": ("hyperhyper", "evaluation_datasets/en/ws/ws353_relatedness.tsv"),
    "men": ("hyperhyper", "evaluation_datasets/en/ws/bruni_men.tsv"),
    "mturk287": ("hyperhyper", "evaluation_datasets/en/ws/radinsky_mturk.tsv"),
    "rw": ("hyperhyper", "evaluation_datasets/en/ws/luong_rare.tsv"),
}
ALIASES = {
    "ws353": "wordsim353",
    "ws353_sim": "wordsim353_similarity",
    "ws353_rel": "wordsim353_relatedness",
    "mturk": "mturk287",
    "simlex": "simlex999",
}
INSTALL = {
    "gensim": "pip install 'xmodal[ratings]'",
    "hyperhyper": "pip install --no-deps hyperhyper",
}


class RatingsError(XmodalError):
    """A ratings benchmark is unknown, not installed, or its file is malformed."""


def known_benchmarks() -> list[str]:
    return sorted(BENCHMARKS)


def benchmark_path(name: str) -> Path:
    """The data file of a named benchmark, or an error saying what to install."""
    name = ALIASES.get(name, name)
    if name not in BENCHMARKS:
        raise RatingsError(
            f"{name!r} is not a known ratings benchmark (known: {', '.join(known_benchmarks())}, "
            "or give a path to a word1<TAB>word2<TAB>score file)"
        )
    package, inner = BENCHMARKS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RatingsError(f"ratings benchmark {name!r} comes with {package!r}: {INSTALL[package]}")
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.is_file():
        raise RatingsError(
            f"ratings benchmark {name!r}: {path} is missing from the {package!r} install"
        )
    return path


def read_ratings(path: str | Path) -> list[Rating]:
    """Parse a ratings file: word1, word2, score per line (tab, comma or whitespace separated)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RatingsError(f"{path}: cannot read ratings ({exc})") from None
    out: list[Rating] = []
    header_seen = False
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for sep in ("\t", ",", None):
            fields = [f.strip() for f in line.split(sep)]
            if len(fields) >= 3:
                break
        try:
            if len(fields) < 3 or not fields[0] or not fields[1]:
                raise ValueError
            out.append((fields[0], fields[1], float(fields[2])))
        except ValueError:
            if not out and not header_seen:
                header_seen = True  # one header line before the data
                continue
            raise RatingsError(
                f"{path}:{number}: expected word1, word2, score; got {line!r}"
            ) from None
    if not out:
        raise RatingsError(f"{path}: holds no ratings")
    return out


def load_ratings(name: str) -> list[Rating]:
    """The (word1, word2, score) pairs of a named benchmark, or of the ratings file at `name`."""
    key = ALIASES.get(name, name)
    if key in BENCHMARKS:
        return read_ratings(benchmark_path(key))
    if Path(name).expanduser().is_file():
        return read_ratings(Path(name).expanduser())
    return read_ratings(benchmark_path(name))  # raises the "unknown benchmark" error
