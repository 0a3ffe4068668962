"""A small study (seconds to run) as a dict, for tests of plugins and hooks via xmodal.testing."""

from __future__ import annotations

import copy
from typing import Any

# One forward pairing of synthetic data, a linear mapping trained for two epochs with MSE, and
# mNNO: two runs (trained and untrained).
SMALL = {
    "study": {"name": "small", "seeds": [0]},
    "data": {
        "dataset": "synthetic",
        "pairs": [["text", "image"]],
        "directions": "forward",
        "params": {"n_items": 120, "dim_text": 16, "dim_image": 24},
    },
    "mapping": [{"name": "linear"}],
    "loss": [{"name": "mse"}],
    "train": {"epochs": 2, "batch_size": 32},
    "metric": [{"name": "mnno", "k": [1, 5]}],
}


def small_study(**tables: Any) -> dict[str, Any]:
    """`SMALL` with whole tables replaced (`metric=[{"name": "mine"}]`); None removes a table.
    `data_params={...}` replaces `[data.params]` and `dataset="x"` the dataset's name."""
    study = copy.deepcopy(SMALL)
    if "dataset" in tables:
        study["data"]["dataset"] = tables.pop("dataset")
    if "data_params" in tables:
        study["data"]["params"] = tables.pop("data_params")
    if "pairs" in tables:
        study["data"]["pairs"] = tables.pop("pairs")
    for name, table in tables.items():
        if table is None:
            study.pop(name, None)
        else:
            study[name] = table
    return study
