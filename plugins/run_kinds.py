"""Built-in run kinds: trained, untrained, identity, and the shuffled-pairs control.

A run kind says what is done to a mapping before its predictions are measured; its name is the
run's kind (`runs.kind`) and the key that turns it on in a study's `[runs]` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xmodal import RunKindSpec, hookimpl


def shuffled_pairs(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, params: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """The training pairs with their targets permuted: item i is trained towards the target of a
    random other item (a uniform permutation, seeded by the run's seed, so a few items may keep
    their own target, about one on average). The inputs and the set of targets are unchanged:
    only the pairing is destroyed."""
    return x, y[rng.permutation(len(y))]


KINDS = (
    RunKindSpec(
        name="trained",
        trains=True,
        default=True,
        description="the mapping trained on the training pairs, then probed",
    ),
    RunKindSpec(
        name="untrained",
        trains=False,
        default=True,
        description="the same architecture at its seeded initialisation (no loss, no training)",
    ),
    RunKindSpec(
        name="identity",
        trains=False,
        maps=False,
        description="a reference with no mapping: the prediction is the input itself",
    ),
    RunKindSpec(
        name="shuffled",
        trains=True,
        pairs=shuffled_pairs,
        description=(
            "control: the mapping trained on pairs whose targets are permuted (seeded by the "
            "run's seed); its mNNO(f(X), Y) is the level a mapping reaches without the pairing"
        ),
    ),
)


@hookimpl
def register_run_kinds(register: Any) -> None:
    for kind in KINDS:
        register(kind)
