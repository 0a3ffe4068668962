"""The `ratings` dataset: the words of human similarity-rating benchmarks, as encoded vectors.

Items are the distinct words of the named benchmarks (`xmodal.ratings`: simlex999, wordsim353,
men, …) or of your own ratings file; ids are the words (lower-cased unless `lowercase = false`).
Each text encoder named in `text_encoders` gives one feature set. Made for experiment 2 of
Collell & Moens (2018): apply untrained networks to word vectors, then compare the Spearman
correlation of their similarities with the human ratings before and after (the
`similarity_correlation` metric reads the same benchmarks). Words an encoder cannot represent are
dropped and reported. No split of its own: use split = "kfold" or "random".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from xmodal import encoded, hookimpl
from xmodal.components import DatasetSpec, FeatureSetInfo
from xmodal.data import PairedData
from xmodal.params import Param
from xmodal.ratings import RatingsError, load_ratings

PARAMS = {
    "benchmarks": Param(str, default=["simlex999"], many=True, doc="names known to xmodal.ratings"),
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


def _plan(params: Mapping[str, Any]) -> encoded.EncodingPlan:
    return encoded.plan({"text": params["text_encoders"]}, params["encoder_options"])


def feature_sets(params: Mapping[str, Any]) -> list[str]:
    return _plan(params).names


def load(params: Mapping[str, Any]) -> PairedData:
    items = words(params)
    keep, features = encoded.encode_all(_plan(params), {"text": items}, items, "ratings")
    sources = ", ".join([*params["benchmarks"], *params["files"]])
    return PairedData(
        ids=tuple(items[i] for i in keep),
        features=features,
        source=f"ratings: words of {sources}",
    )


def describe(params: Mapping[str, Any]) -> list[FeatureSetInfo]:
    sources = ", ".join([*params["benchmarks"], *params["files"]])
    return encoded.describe(_plan(params), {"text": words(params)}, f"words of {sources}")


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="ratings",
            load=load,
            feature_sets=feature_sets,
            describe=describe,
            params=PARAMS,
            description="words of similarity benchmarks (SimLex-999, WS-353, MEN, …), encoded",
        )
    )
