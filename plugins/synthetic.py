"""The `synthetic` dataset: two views of items generated from one shared latent structure.

Items fall into clusters in a latent space; each view is a different random projection of the
latent vector, bent by a tanh non-linearity and blurred by noise. Instant and seeded: made for the
quickstart and the tests, and for checking that a mapping can in principle recover the structure.

Its fingerprint is `GENERATOR_VERSION` plus the parameters: the data is a pure function of them
and of this code (numpy's seeded `Generator` streams are taken as stable). Bump
`GENERATOR_VERSION` whenever a change here makes the same parameters give other data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from xmodal import DatasetSpec, FeatureSetInfo, PairedData, Param, combine, hookimpl, value_digest

GENERATOR_VERSION = "1"
PARAMS = {
    "n_items": Param(int, default=1000, min=4, max=1_000_000, doc="items generated"),
    "latent_dim": Param(
        int, default=16, min=1, max=4096, doc="dimensions of the shared latent space"
    ),
    "dim_text": Param(int, default=64, min=1, max=100_000, doc="dimensions of the text view"),
    "dim_image": Param(int, default=128, min=1, max=100_000, doc="dimensions of the image view"),
    "clusters": Param(int, default=10, min=1, max=100_000, doc="latent clusters (item labels)"),
    "noise": Param(float, default=0.1, min=0.0, doc="std of the view-specific noise"),
    "nonlinearity": Param(float, default=0.5, min=0.0, max=1.0, doc="0 linear views, 1 fully tanh"),
    "test_fraction": Param(
        float,
        default=0.2,
        min=0.01,
        max=0.99,
        doc="chance that an item is marked test in the dataset's own split (seeded)",
    ),
    "seed": Param(int, default=0, min=0, doc="seed of the generator: same seed, same data"),
}


def _view(
    rng: np.random.Generator, z: np.ndarray, dim: int, params: Mapping[str, Any]
) -> np.ndarray:
    projection = rng.standard_normal((z.shape[1], dim)) / np.sqrt(z.shape[1])
    linear = z @ projection
    a = params["nonlinearity"]
    view = (1 - a) * linear + a * np.tanh(linear)
    return (view + params["noise"] * rng.standard_normal(view.shape)).astype(np.float32)


def fingerprint(params: Mapping[str, Any]) -> str:
    """The generator's version and the parameters (the data is a pure function of both)."""
    return combine("synthetic", GENERATOR_VERSION, value_digest(dict(params)))


def load(params: Mapping[str, Any]) -> PairedData:
    rng = np.random.default_rng(params["seed"])
    n, latent = params["n_items"], params["latent_dim"]
    centers = rng.standard_normal((params["clusters"], latent)) * 2.0
    cluster = rng.integers(0, params["clusters"], size=n)
    z = centers[cluster] + rng.standard_normal((n, latent))
    text = _view(rng, z, params["dim_text"], params)
    image = _view(rng, z, params["dim_image"], params)
    split = np.where(rng.random(n) < params["test_fraction"], "test", "train")
    return PairedData(
        ids=tuple(f"item{i}" for i in range(n)),
        features={"text": text, "image": image},
        split_marks=split,
        labels=tuple(frozenset([int(c)]) for c in cluster),
        source="synthetic",
    )


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="synthetic",
            load=load,
            feature_sets=lambda params: ["text", "image"],
            describe=lambda params: [
                FeatureSetInfo(name, params["n_items"], params[f"dim_{name}"], "generated (seeded)")
                for name in ("text", "image")
            ],
            params=PARAMS,
            fingerprint=fingerprint,
            description="two views (text, image) of clustered latent items; seeded, instant",
        )
    )
