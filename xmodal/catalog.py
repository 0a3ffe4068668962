"""What `xmodal datasets` shows: every dataset's feature sets, their sizes and origin.

Nothing is loaded or encoded: datasets describe themselves through `DatasetSpec.describe`,
which reports encoder-made feature sets as "(encoded on first use)" until they are cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from xmodal.components import DatasetSpec, FeatureSetInfo
from xmodal.errors import XmodalError
from xmodal.params import expand, validate_params
from xmodal.plugins import Registry


@attrs.frozen
class DatasetEntry:
    """One dataset with the parameters it was described for, its feature sets or why not."""

    name: str
    description: str
    plugin: str
    params: Mapping[str, Any]
    feature_sets: tuple[FeatureSetInfo, ...] = ()
    problem: str = ""


def describe_dataset(spec: DatasetSpec, given: Mapping[str, Any], plugin: str) -> DatasetEntry:
    """Describe `spec` with `given` parameters (defaults filled, first value of any sweep)."""
    entry = DatasetEntry(spec.name, spec.description, plugin, dict(given))
    problems = validate_params(spec.params, given, "params")
    if problems:
        missing = [p.path.split(".", 1)[1] for p in problems if p.message == "is required"]
        why = (
            f"needs parameter(s) {', '.join(missing)} (describe a study's data with --study)"
            if missing
            else "; ".join(f"{p.path}: {p.message}" for p in problems)
        )
        return attrs.evolve(entry, problem=why)
    params = expand(spec.params, given)[0]
    entry = attrs.evolve(entry, params=params)
    try:
        if spec.describe is not None:
            infos = tuple(spec.describe(params))
        else:
            infos = tuple(FeatureSetInfo(n, None, None, spec.name, "sizes known on load")
                          for n in spec.feature_sets(params))  # fmt: skip
    except XmodalError as exc:
        return attrs.evolve(entry, problem=str(exc))
    except Exception as exc:  # a plugin's own failure must not hide the other datasets
        return attrs.evolve(entry, problem=f"{type(exc).__name__}: {exc}")
    return attrs.evolve(entry, feature_sets=infos)


def catalog(
    registry: Registry, params: Mapping[str, Mapping[str, Any]] | None = None
) -> list[DatasetEntry]:
    """Every registered dataset, described with `params[name]` (or its defaults)."""
    params = params or {}
    return [
        describe_dataset(spec, params.get(name, {}), registry.owners.get(("datasets", name), "?"))
        for name, spec in sorted(registry.datasets.items())
    ]


def as_json(entries: list[DatasetEntry]) -> list[dict[str, Any]]:
    return [attrs.asdict(e, recurse=True) for e in entries]
