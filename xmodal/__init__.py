"""xmodal: do neural cross-modal mappings bridge modalities? (Collell & Moens, ACL 2018).

The public API is the names in `__all__`: everything a plugin needs, importable as
`from xmodal import Name`. Plugins (the built-in ones included) import nothing else from xmodal;
every other module is internal and may change. Names are loaded on first use (PEP 562), so
`import xmodal` and `import xmodal.errors` do not import torch or numpy.

To add a name, add one line to `_EXPORTS`: `"Name": "xmodal.module"` (the module defining it).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# numpy's OpenBLAS worker threads keep spinning after each call and starve torch's threads when
# the two alternate in one process (measured: the quickstart took 99 s instead of 7 s). xmodal's
# heavy linear algebra runs in torch, so OpenBLAS gets one thread unless the user chose otherwise.
# This must happen before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# name -> the module that defines it. One line per name; keep each group sorted.
_EXPORTS: dict[str, str] = {
    # Plugin registration.
    "hookimpl": "xmodal.hookspecs",
    "get_registry": "xmodal.plugins",
    # What plugins register.
    "DatasetSpec": "xmodal.components",
    "EncoderSpec": "xmodal.components",
    "ExecutorOptions": "xmodal.components",
    "ExecutorSpec": "xmodal.components",
    "FeatureSetInfo": "xmodal.components",
    "LossSpec": "xmodal.components",
    "MappingSpec": "xmodal.components",
    "MetricDisplay": "xmodal.components",
    "MetricSpec": "xmodal.components",
    "NeighborBackendSpec": "xmodal.components",
    "ReportSectionSpec": "xmodal.components",
    "ResultRow": "xmodal.components",
    "RunKindSpec": "xmodal.components",
    "SimilaritySpec": "xmodal.components",
    "SplitStrategySpec": "xmodal.components",
    # What a report section receives and returns.
    "ReportContext": "xmodal.report",
    "ReportFigure": "xmodal.report",
    "ReportTable": "xmodal.report",
    "ReportText": "xmodal.report",
    "error_bar": "xmodal.report",
    "error_bars_text": "xmodal.report",
    "mean_std": "xmodal.report",
    "number": "xmodal.report",
    # What an executor computes for each job (ExecutorSpec.make).
    "run_job": "xmodal.executors",
    # Why Ray cannot be reached at an address (None: it can).
    "ray_problem": "xmodal.executors",
    # Declared parameters.
    "CheckContext": "xmodal.validation",
    "Param": "xmodal.params",
    "expand": "xmodal.params",
    "validate_params": "xmodal.params",
    # Data a dataset returns; what a metric receives.
    "PairedData": "xmodal.data",
    "Probe": "xmodal.probes",
    "Spaces": "xmodal.probes",
    "check_k_fits": "xmodal.probes",
    # Neighbours and their overlap.
    "NeighborError": "xmodal.neighbors",
    "knn": "xmodal.neighbors",
    "neighbor_progress": "xmodal.neighbors",
    "mnno": "xmodal.neighbors",
    "overlap": "xmodal.neighbors",
    "overlap_per_item": "xmodal.neighbors",
    # The exact kNN's tiles, for a backend that computes them elsewhere (docs/plugins.md).
    "TileGrid": "xmodal.neighbors",
    "TileLists": "xmodal.neighbors",
    "TileSpace": "xmodal.neighbors",
    "compute_tiles": "xmodal.neighbors",
    # Uncertainty over items, paired tests, chance and permutation nulls (docs/statistics.md).
    "bootstrap_mean": "xmodal.statistics",
    "calibrate": "xmodal.statistics",
    "chance_overlap": "xmodal.statistics",
    "holm": "xmodal.statistics",
    "mean_standard_error": "xmodal.statistics",
    "neighbour_pair_ranks": "xmodal.statistics",
    "neighbour_pairs": "xmodal.statistics",
    "nested_standard_errors": "xmodal.statistics",
    "normal_interval": "xmodal.statistics",
    "normal_interval_and_p": "xmodal.statistics",
    "normal_p": "xmodal.statistics",
    "overlap_counts": "xmodal.statistics",
    "rng_for": "xmodal.statistics",
    "shuffled_pairing_null": "xmodal.statistics",
    "sign_flip_p": "xmodal.statistics",
    # Fingerprints of data (they enter run ids), and the cache directory.
    "array_digest": "xmodal.fingerprint",
    "cache_dir": "xmodal.fingerprint",
    "combine": "xmodal.fingerprint",
    "file_digest": "xmodal.fingerprint",
    "files_digest": "xmodal.fingerprint",
    "value_digest": "xmodal.fingerprint",
    # Errors and optional dependencies.
    "XmodalError": "xmodal.errors",
    "did_you_mean": "xmodal.errors",
    "require": "xmodal.optional",
    # Studies from Python and notebooks (docs/python.md).
    "connect": "xmodal.api",
    "load_study": "xmodal.api",
    "plan": "xmodal.api",
    "run": "xmodal.api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use, then keep it in this module."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xmodal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
