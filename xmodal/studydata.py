"""The data of one study, loaded once: datasets, train/test indices and fixed neighbour lists.

The runner loads it in the driving process. For worker processes it is exported once (feature
matrices and neighbour lists as .npy files that workers memory-map, or as arrays handed to Ray's
object store) and attached in each worker, so no worker reloads or recomputes any of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from xmodal.data import PairedData
from xmodal.errors import XmodalError, not_registered
from xmodal.planning import Run, canonical_hash, data_key
from xmodal.plugins import Registry
from xmodal.probes import NeighborCache
from xmodal.splits import make_folds


def split_key(run: Run) -> tuple[Any, ...]:
    """Identifies a run's item split: same data, same split settings, same fold."""
    return (run.data_key, canonical_hash(dict(run.split_strategy)), run.fold)


def probed_splits(run: Run) -> list[str]:
    """The item splits a run probes: its final probes, plus train and test for probe curves."""
    curves = bool(run.train and run.train.get("probe_every"))
    return sorted(set(run.measure["splits"]) | ({"train", "test"} if curves else set()))


def similarities(run: Run, registry: Registry) -> list[str]:
    """The similarities for which the run's neighbour-based metrics ask for neighbour lists."""
    found = {
        s
        for name, params in run.metrics
        if registry.metrics[name].uses_neighbors
        for s in params.get("similarity", [])
    }
    return sorted(found)


@attrs.frozen
class DataHandle:
    """A picklable description of a StudyData whose arrays are files (or in-memory arrays)."""

    k_hint: int
    data: dict[str, dict[str, Any]]
    splits: dict[tuple[Any, ...], tuple[Any, Any]]
    neighbors: dict[tuple[Any, ...], Any]


def _load_array(ref: Any) -> np.ndarray:
    return np.load(ref, mmap_mode="r") if isinstance(ref, str | Path) else ref


def _mapped_npy(array: np.ndarray) -> str | None:
    """The .npy file `array` memory-maps as a whole (as the `files` dataset hands over a float32
    .npy file), so that workers map that file too instead of a copy; None for any other array."""
    filename = getattr(array, "filename", None)
    if not isinstance(array, np.memmap) or not str(filename or "").endswith(".npy"):
        return None
    try:
        whole = np.load(str(filename), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    same = (whole.shape, whole.dtype) == (array.shape, array.dtype)
    return str(filename) if same and whole.flags.c_contiguous and array.flags.c_contiguous else None


class StudyData:
    """The datasets, splits and neighbour lists of one study, loaded once and shared by its runs."""

    def __init__(self, registry: Registry, k_hint: int = 10) -> None:
        self.registry = registry
        self._data: dict[str, PairedData] = {}
        self._fingerprints: dict[str, str] = {}
        self._splits: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.neighbors = NeighborCache(
            k_hint=k_hint,
            similarities=registry.similarities,
            backends=registry.neighbor_backends,
        )

    def data(self, run: Run) -> PairedData:
        return self._load(run.dataset, run.dataset_params)

    def _load(self, dataset: str, params: Mapping[str, Any]) -> PairedData:
        key = data_key(dataset, params)
        if key not in self._data:
            self._data[key] = self.registry.datasets[dataset].load(params)
        return self._data[key]

    def fingerprint(self, dataset: str, params: Mapping[str, Any]) -> str:
        """A digest of the data `dataset` loads with `params`: the dataset's own fingerprint, or
        (for a dataset that declares none) a digest of the loaded arrays, kept for the runs."""
        key = data_key(dataset, params)
        if key not in self._fingerprints:
            spec = self.registry.datasets[dataset]
            if spec.fingerprint is not None:
                digest = f"{dataset}:{spec.fingerprint(params)}"
            else:
                from xmodal.fingerprint import paired_data_digest

                digest = f"arrays:{paired_data_digest(self._load(dataset, params))}"
            self._fingerprints[key] = digest
        return self._fingerprints[key]

    def split(self, run: Run) -> tuple[np.ndarray, np.ndarray]:
        """The run's (train, test) item indices, sorted: its fold of the study's split strategy
        (every fold of one dataset configuration is computed at once, and kept)."""
        key = split_key(run)
        if key not in self._splits:
            kind = run.split_strategy["kind"]
            spec = self.registry.split_strategies.get(kind)
            if spec is None:
                known = self.registry.split_strategies
                raise XmodalError(not_registered("split strategy", kind, known))
            for fold, indices in make_folds(spec, self.data(run), run.split_strategy).items():
                self._splits[(*key[:2], fold)] = indices
        return self._splits[key]

    def precompute(self, runs: Iterable[Run]) -> None:
        """Compute every input/target neighbour list the runs will ask for, once, up front."""
        for run in runs:
            data = self.data(run)
            train_idx, test_idx = self.split(run)
            for split, name, similarity in itertools.product(
                probed_splits(run),
                (run.input_features, run.target_features),
                similarities(run, self.registry),
            ):
                index = train_idx if split == "train" else test_idx
                key = (*split_key(run), split, name)
                include_self = run.measure["include_self"]
                # Through the study's neighbour backend (`Run.neighbors`; empty: exact).
                if self.neighbors.has(key, similarity, include_self, run.neighbors):
                    continue
                try:
                    self.neighbors.get(
                        key, data.features[name][index], 1, similarity, include_self, run.neighbors
                    )
                except Exception:  # e.g. zero rows under a similarity that refuses them
                    # Left to the runs that need these lists: each then fails with this error,
                    # recorded in the store, while runs that do not need them go on.
                    continue

    def export(self, directory: Path | None) -> DataHandle:
        """Describe this data for workers: arrays as .npy files in `directory`, or inline if None."""

        def put(array: np.ndarray, name: str) -> Any:
            if directory is None:
                return array
            if (mapped := _mapped_npy(array)) is not None:
                return mapped  # a feature file already mapped: workers map it too
            path = directory / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array))
            return str(path)

        data = {}
        for key, paired in self._data.items():
            data[key] = {
                "ids": paired.ids,
                "split_marks": paired.split_marks,
                "labels": paired.labels,
                "source": paired.source,
                "fold": paired.fold,
                "features": {
                    f: put(m, f"{key}-{i}") for i, (f, m) in enumerate(paired.features.items())
                },
            }
        neighbors = {k: put(v, f"nn-{i}") for i, (k, v) in enumerate(self.neighbors.items())}
        return DataHandle(self.neighbors.k_hint, data, dict(self._splits), neighbors)

    @classmethod
    def attach(cls, handle: DataHandle, registry: Registry) -> StudyData:
        """Rebuild the study's data in a worker from an exported handle, without reloading."""
        shared = cls(registry, k_hint=handle.k_hint)
        for key, d in handle.data.items():
            features = {name: _load_array(ref) for name, ref in d["features"].items()}
            shared._data[key] = PairedData(
                ids=d["ids"],
                features=features,
                split_marks=d["split_marks"],
                labels=d["labels"],
                source=d["source"],
                fold=d.get("fold"),
            )
        shared._splits.update(handle.splits)
        for key, ref in handle.neighbors.items():
            shared.neighbors.put(key, _load_array(ref))
        return shared
