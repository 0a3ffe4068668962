"""Checks a study gets once its data is loaded, before anything runs or is written.

Kept apart from the runner so that `xmodal validate` and `xmodal.load_study` need neither the
store nor the executors (the CLI's start-up time: docs/performance.md, "CLI start-up").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from xmodal.errors import Problem, StudyError, XmodalError
from xmodal.params import expand
from xmodal.planning import Run
from xmodal.plugins import Registry, singular
from xmodal.study import Study
from xmodal.studydata import StudyData, probed_splits, split_key
from xmodal.validation import CheckContext, check_component


def max_k(runs: Iterable[Run], registry: Registry) -> int:
    """The largest k any neighbour-based metric of these runs asks for (10 when none does)."""
    ks = [
        k
        for c in runs
        for name, p in c.metrics
        if registry.metrics[name].uses_neighbors
        for k in p.get("k", [])
    ]
    return max(ks, default=10)


def check_runs(study: Study, runs: list[Run], shared: StudyData) -> None:
    """Checks that need the data: features exist, splits are non-empty, metric k fits the split."""
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for run in runs:
        key = split_key(run)
        if key in seen:
            continue
        seen.add(key)
        try:
            data = shared.data(run)
        except XmodalError as exc:
            problems.append(Problem("data", f"dataset {run.dataset!r} could not be loaded: {exc}"))
            continue
        except Exception as exc:
            problems.append(
                Problem(
                    "data",
                    f"dataset {run.dataset!r} failed to load: {type(exc).__name__}: {exc}",
                )
            )
            continue
        for name in (run.input_features, run.target_features):
            if name not in data.features:
                problems.append(
                    Problem(
                        "data.pairs",
                        f"dataset {run.dataset!r} has no feature set {name!r}",
                        allowed=", ".join(data.features),
                    )
                )
            else:
                for similarity in _zero_rejecting(run, shared.registry):
                    problems.extend(
                        _zero_row_problems(run.dataset, name, data, similarity, shared.registry)
                    )
        try:
            shared.split(run)
        except XmodalError as exc:  # placed at the key the file names the strategy with
            key = "data.split" if "data.split" in study.lines else "data.split_strategy"
            problems.append(Problem(key, str(exc)))
    problems.extend(_component_problems(study, runs, shared))
    if problems:
        unique = list(dict.fromkeys(problems))
        raise StudyError(study.path, [attrs.evolve(p, line=study.line_of(p.path)) for p in unique])


def _zero_rejecting(run: Run, registry: Registry) -> list[str]:
    """The similarities the run's metrics compare vectors by (their `similarity` parameters)
    that are undefined for a zero vector (`SimilaritySpec.rejects_zero_rows`)."""
    names: set[str] = set()
    for _, params in run.metrics:
        similarity = params.get("similarity")
        values = similarity if isinstance(similarity, list | tuple) else [similarity]
        names.update(v for v in values if isinstance(v, str))
    known = registry.similarities
    return sorted(n for n in names if n in known and known[n].rejects_zero_rows)


def _zero_row_problems(
    dataset: str, name: str, data: Any, similarity: str, registry: Registry
) -> list[Problem]:
    """All-zero rows of a feature set, named by item id and row (0-based, as loaded)."""
    matrix = np.asanyarray(data.features[name])
    step = max(1, (16 << 20) // max(1, matrix.shape[1]))  # rows of 16 MB of flags at a time
    rows = np.concatenate(  # in row blocks: a memory-mapped matrix is never read whole at once
        [np.zeros(0, np.int64)]
        + [start + np.flatnonzero(~np.any(matrix[start : start + step] != 0, axis=1))
           for start in range(0, len(matrix), step)]
    )  # fmt: skip
    if rows.size == 0:
        return []
    shown = ", ".join(f"{data.ids[i]!r} (row {i})" for i in rows[:5])
    more = f" and {rows.size - 5} more" if rows.size > 5 else ""
    others = sorted(n for n, s in registry.similarities.items() if not s.rejects_zero_rows)
    instead = " or ".join(f"similarity = {n!r}" for n in others)
    return [
        Problem(
            "data",
            f"dataset {dataset!r}, feature set {name!r}: {rows.size} all-zero row(s), which have "
            f"no {similarity} similarity: items {shown}{more}",
            allowed="drop or fix those rows" + (f", or use {instead}" if instead else ""),
        )
    ]


def _component_problems(study: Study, runs: list[Run], shared: StudyData) -> list[Problem]:
    """The components' own checks (`xmodal.validation`) now that the data is known: mappings and
    losses with each training split's size and the input and output dimensions, metrics with the
    size of every split a run probes (probe curves included)."""
    # (kind, name) -> what the component sees: its runs' training data, or the probed splits
    contexts: dict[tuple[str, str | None], set[CheckContext]] = {}
    seen: set[tuple[Any, ...]] = set()
    for run in runs:
        key = (split_key(run), run.input_features, run.target_features, run.mapping, run.loss,
               tuple(probed_splits(run)))  # fmt: skip
        if key in seen:
            continue
        seen.add(key)
        try:
            data = shared.data(run)
            train_idx, test_idx = shared.split(run)
            in_dim = int(np.shape(data.features[run.input_features])[1])
            out_dim = int(np.shape(data.features[run.target_features])[1])
        except Exception:  # reported by the data checks
            continue
        sizes = {"train": len(train_idx), "test": len(test_idx)}
        known = dict(include_self=bool(run.measure["include_self"]), in_dim=in_dim, out_dim=out_dim)
        fitted = CheckContext("", "", n_items=sizes["train"], split="train", **known)
        contexts.setdefault(("mappings", run.mapping), set()).add(fitted)
        contexts.setdefault(("losses", run.loss), set()).add(fitted)
        for split in probed_splits(run):
            probe = CheckContext("", "", n_items=sizes[split], split=split, **known)
            contexts.setdefault(("metrics", None), set()).add(probe)
    problems: list[Problem] = []
    for kind, components in (
        ("mappings", study.mappings),
        ("losses", study.losses),
        ("metrics", study.metrics),
    ):
        for component in components:
            spec = shared.registry.of(kind)[component.name]
            if getattr(spec, "check", None) is None:
                continue
            seen_by = contexts.get((kind, None if kind == "metrics" else component.name), set())
            for context in sorted(seen_by, key=attrs.astuple):
                context = attrs.evolve(context, component=singular(kind), name=component.name)
                for params in expand(spec.params, component.params):
                    problems.extend(check_component(spec, params, context, component.path))
    return problems
