"""The `ratings` dataset: the words of human similarity-rating benchmarks, as encoded vectors.

Items are the distinct words of the named benchmarks (`xmodal_plugins.support.word_ratings`:
simlex999, wordsim353, men, …) or of your own ratings file; ids are the words (lower-cased
unless `lowercase = false`). Each text encoder named in `text_encoders` gives one feature set.
Made for experiment 2 of Collell & Moens (2018): apply untrained networks to word vectors, then
compare the Spearman correlation of their similarities with the human ratings before and after
(the `similarity_correlation` metric reads the same benchmarks, with the same parser). Words an
encoder cannot represent are dropped and reported. No split of its own: use split_strategy = "kfold" or
"random".

Its fingerprint covers the bytes of every ratings file read (the benchmarks' files inside their
packages, and your own files), `lowercase`, and each encoder's name, version, parameters and
weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from xmodal import (
    DatasetSpec,
    FeatureSetInfo,
    PairedData,
    Param,
    combine,
    files_digest,
    hookimpl,
    value_digest,
)
from xmodal_plugins.support import encoded_datasets
from xmodal_plugins.support.word_ratings import (
    ALIASES,
    BENCHMARKS,
    RatingsError,
    benchmark_path,
    load_ratings,
)

READER_VERSION = "1"  # bump when the same files would give other items
PARAMS = {
    "benchmarks": Param(str, default=["simlex999"], many=True, doc="e.g. simlex999, men, rw"),
    "files": Param(str, default=[], many=True, doc="your own word1<TAB>word2<TAB>score files"),
    "text_encoders": Param(str, default=["glove", "minilm"], many=True, doc="one feature set each"),
    "encoder_options": Param(str, default=[], many=True, doc='"encoder.key=value"'),
    "lowercase": Param(bool, default=True, doc="lower-case the words (GloVe 6B is uncased)"),
}


def words(params: Mapping[str, Any]) -> list[str]:
    """The distinct words of every named benchmark and file, sorted."""
    found: set[str] = set()
    for source in [*params["benchmarks"], *params["files"]]:
        for a, b, _ in load_ratings(source):
            found.update((a.lower(), b.lower()) if params["lowercase"] else (a, b))
    if not found:
        raise RatingsError("ratings: name at least one benchmark or file")
    return sorted(found)


def source_path(source: str) -> Path:
    """The file `load_ratings(source)` reads (a benchmark's file, or your own file)."""
    key = ALIASES.get(source, source)
    if key in BENCHMARKS:
        return benchmark_path(key)
    path = Path(source).expanduser()
    return path if path.is_file() else benchmark_path(source)  # raises "unknown benchmark"


def fingerprint(params: Mapping[str, Any]) -> str:
    """A digest of the ratings files read, the word handling and the encoders."""
    sources = [*params["benchmarks"], *params["files"]]
    if not sources:
        raise RatingsError("ratings: name at least one benchmark or file")
    return combine(
        "ratings",
        READER_VERSION,
        files_digest(source_path(s) for s in sources),
        value_digest({"lowercase": params["lowercase"]}),
        _encoders(params).identity(),
    )


def _encoders(params: Mapping[str, Any]) -> encoded_datasets.EncoderSelection:
    return encoded_datasets.select_encoders(
        {"text": params["text_encoders"]}, params["encoder_options"]
    )


def feature_sets(params: Mapping[str, Any]) -> list[str]:
    return _encoders(params).names


def load(params: Mapping[str, Any]) -> PairedData:
    items = words(params)
    keep, features = encoded_datasets.encode_all(
        _encoders(params), {"text": items}, items, "ratings"
    )
    sources = ", ".join([*params["benchmarks"], *params["files"]])
    return PairedData(
        ids=tuple(items[i] for i in keep),
        features=features,
        source=f"ratings: words of {sources}",
    )


def describe(params: Mapping[str, Any]) -> list[FeatureSetInfo]:
    sources = ", ".join([*params["benchmarks"], *params["files"]])
    return encoded_datasets.describe(
        _encoders(params), {"text": words(params)}, f"words of {sources}"
    )


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="ratings",
            load=load,
            feature_sets=feature_sets,
            describe=describe,
            params=PARAMS,
            fingerprint=fingerprint,
            description="words of similarity benchmarks (SimLex-999, WS-353, MEN, …), encoded",
        )
    )
