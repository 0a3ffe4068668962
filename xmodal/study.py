"""Study files: TOML parsed with tomllib into frozen attrs objects, with every problem reported.

A `Study` keeps each section's declaration as written (sweeps unexpanded, parameters checked
against the schemas the plugins declare); `xmodal.plan` expands it into runs.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from xmodal.errors import Problem, StudyError, XmodalError, did_you_mean
from xmodal.params import Param, expand, validate_params
from xmodal.plugins import Registry
from xmodal.tomlpos import key_lines, locate

SECTIONS = ("study", "data", "mapping", "loss", "train", "probes", "metric", "execution")
DIRECTIONS = ("forward", "backward")
SPLITS = ("dataset", "random", "kfold")

STUDY_PARAMS = {
    "name": Param(str, doc="study name: letters, digits, '-', '_', '.'"),
    "description": Param(str, default=""),
    "seeds": Param(int, default=[0], many=True, min=0, doc="one run per seed"),
}
DATA_PARAMS = {
    "dataset": Param(str, doc="a registered dataset (see `xmodal plugins`)"),
    "directions": Param(str, default=list(DIRECTIONS), many=True, choices=DIRECTIONS),
    "split": Param(str, default="dataset", choices=SPLITS),
    "folds": Param(int, default=5, min=2, max=50),
    "test_fraction": Param(float, default=0.2, min=0.01, max=0.99),
    "split_seed": Param(int, default=0, min=0),
}
TRAIN_PARAMS = {
    "epochs": Param(int, default=20, min=1, max=100_000),
    "batch_size": Param(int, default=64, min=1, also=("full",)),
    "optimizer": Param(str, default="adam", choices=("adam", "adamw", "sgd")),
    "lr": Param(float, default=1e-3, min=0.0),
    "weight_decay": Param(float, default=0.0, min=0.0),
    "momentum": Param(float, default=0.9, min=0.0, max=1.0),
    "shuffle": Param(bool, default=True),
    "grad_clip": Param(float, default=0.0, min=0.0, doc="max gradient norm; 0 turns it off"),
    "early_stopping": Param(
        int, default=0, min=0, doc="patience in epochs on a validation part; 0 turns it off"
    ),
    "validation_fraction": Param(float, default=0.1, min=0.01, max=0.5),
    "probe_every": Param(
        int, default=0, min=0, doc="probe train and test items every N epochs into curves"
    ),
}
EXECUTION_PARAMS = {
    "executor": Param(str, default="local", choices=("local", "process", "ray")),
    "workers": Param(int, default=1, min=1, max=1024),
    "address": Param(str, default="", doc="Ray cluster address; empty starts a local Ray"),
    "threads": Param(
        int, default=1, min=0, max=1024, doc="torch threads per run; 0 = cores / workers"
    ),
}
PROBE_PARAMS = {
    "trained": Param(bool, default=True),
    "untrained": Param(bool, default=True),
    "identity": Param(bool, default=False, doc="a reference run whose prediction is the input"),
    "splits": Param(str, default=["test"], many=True, choices=("train", "test")),
    "include_self": Param(
        bool, default=False, doc="count each item as its own neighbour (the authors' code did)"
    ),
}


@attrs.frozen
class Component:
    """A named plugin component with its declared (possibly swept) parameters."""

    name: str
    params: Mapping[str, Any]
    path: str


@attrs.frozen
class Study:
    """A validated study declaration."""

    name: str
    path: str
    source: str
    description: str
    seeds: tuple[int, ...]
    dataset: Component
    pairs: tuple[tuple[str, str], ...]
    directions: tuple[str, ...]
    split: Mapping[str, Any]
    mappings: tuple[Component, ...]
    losses: tuple[Component, ...]
    train: Mapping[str, Any]
    probes: Mapping[str, Any]
    metrics: tuple[Component, ...]
    lines: Mapping[str, int] = attrs.field(repr=False)
    execution: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def line_of(self, path: str) -> int | None:
        return locate(dict(self.lines), path)


def load_study(path: str | Path, registry: Registry) -> Study:
    """Read and validate a study file; raise `StudyError` listing every problem found."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise XmodalError(f"{path}: no such study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise XmodalError(f"{path}: cannot read study file: {exc}") from None
    return parse_study(source, str(path), registry)


def parse_study(source: str, file: str, registry: Registry) -> Study:
    """Validate TOML text as a study; `file` is used in error messages."""
    try:
        doc = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise StudyError(file, [Problem("", f"invalid TOML: {message}", line=line)]) from None
    lines = key_lines(source)
    builder = _Builder(registry)
    study = builder.build(doc, file, source, lines)
    if builder.problems:
        located = [attrs.evolve(p, line=p.line or locate(lines, p.path)) for p in builder.problems]
        raise StudyError(file, sorted(located, key=lambda p: p.line or 0))
    assert study is not None
    return study


class _Builder:
    """Collects problems section by section instead of stopping at the first."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.problems: list[Problem] = []

    def table(self, doc: Mapping[str, Any], key: str, *, required: bool) -> dict[str, Any]:
        value = doc.get(key)
        if value is None:
            if required:
                self.problems.append(Problem(key, f"section [{key}] is missing"))
            return {}
        if not isinstance(value, dict):
            self.problems.append(
                Problem(key, f"must be a table [{key}], not a {type(value).__name__}")
            )
            return {}
        return value

    def array_of_tables(self, doc: Mapping[str, Any], key: str, default: list) -> list[dict]:
        value = doc.get(key, default)
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problems.append(Problem(key, f"must be one or more [[{key}]] tables"))
            return []
        if not value:
            self.problems.append(Problem(key, f"needs at least one [[{key}]] table"))
        return value

    def component(
        self,
        table: Mapping[str, Any],
        kind: str,
        path: str,
        sweep: bool,
        name_path: str | None = None,
    ) -> Component | None:
        known = self.registry.of(kind)
        name = table.get("name")
        name_path = name_path or f"{path}.name"
        if name is None:
            self.problems.append(
                Problem(name_path, "is required", allowed=", ".join(sorted(known)))
            )
            return None
        if not isinstance(name, str) or name not in known:
            self.problems.append(
                Problem(
                    name_path,
                    f"{name!r} is not a registered {kind[:-1]}",
                    allowed=", ".join(sorted(known)) or f"no {kind} are loaded",
                    suggestion=did_you_mean(name, known) if isinstance(name, str) else None,
                )
            )
            return None
        params = {k: v for k, v in table.items() if k != "name"}
        schema_problems = validate_params(known[name].params, params, path, sweep=sweep)
        self.problems.extend(schema_problems)
        check = getattr(known[name], "check", None)
        if check is not None and not schema_problems and kind in ("mappings", "losses"):
            for variant in expand(known[name].params, params):
                for key, message in check(variant):
                    self.problems.append(Problem(f"{path}.{key}", message))
        return Component(name=name, params=params, path=path)

    def build(
        self, doc: Mapping[str, Any], file: str, source: str, lines: Mapping[str, int]
    ) -> Study | None:
        for key in doc:
            if key not in SECTIONS:
                self.problems.append(
                    Problem(
                        key,
                        "is not a study section",
                        allowed=", ".join(SECTIONS),
                        suggestion=did_you_mean(key, SECTIONS),
                    )
                )
        head = self.table(doc, "study", required=True)
        self.problems.extend(validate_params(STUDY_PARAMS, head, "study", sweep=False))
        name = head.get("name")
        if isinstance(name, str) and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            self.problems.append(
                Problem("study.name", f"{name!r} has characters outside A-Z a-z 0-9 _ . -")
            )

        data = self.table(doc, "data", required=True)
        data_fields = {k: v for k, v in data.items() if k not in ("params", "pairs")}
        self.problems.extend(validate_params(DATA_PARAMS, data_fields, "data", sweep=False))
        dataset = self._dataset(data)
        pairs = self._pairs(data, dataset)

        mappings = [
            self.component(t, "mappings", f"mapping[{i}]", sweep=True)
            for i, t in enumerate(self.array_of_tables(doc, "mapping", []))
        ]
        losses = [
            self.component(t, "losses", f"loss[{i}]", sweep=True)
            for i, t in enumerate(self.array_of_tables(doc, "loss", [{"name": "mse"}]))
        ]
        metrics = [
            self.component(t, "metrics", f"metric[{i}]", sweep=False)
            for i, t in enumerate(self.array_of_tables(doc, "metric", [{"name": "mnno"}]))
        ]
        train = self.table(doc, "train", required=False)
        self.problems.extend(validate_params(TRAIN_PARAMS, train, "train", sweep=True))
        probes = self.table(doc, "probes", required=False)
        self.problems.extend(validate_params(PROBE_PARAMS, probes, "probes", sweep=False))
        if not any(
            probes.get(p, PROBE_PARAMS[p].default) for p in ("trained", "untrained", "identity")
        ):
            self.problems.append(
                Problem(
                    "probes",
                    "turns off every probe, so nothing would run",
                    allowed="trained, untrained or identity = true",
                )
            )
        execution = self.table(doc, "execution", required=False)
        self.problems.extend(validate_params(EXECUTION_PARAMS, execution, "execution", sweep=False))
        if self.problems or dataset is None:
            return None
        directions = data.get("directions", list(DIRECTIONS))
        directions = [directions] if isinstance(directions, str) else directions
        return Study(
            name=head["name"],
            path=file,
            source=source,
            description=head.get("description", ""),
            seeds=tuple(_as_list(head.get("seeds", [0]))),
            dataset=dataset,
            pairs=tuple(pairs),
            directions=tuple(dict.fromkeys(directions)),
            split={
                "kind": data.get("split", "dataset"),
                "folds": data.get("folds", 5),
                "test_fraction": data.get("test_fraction", 0.2),
                "seed": data.get("split_seed", 0),
            },
            mappings=tuple(m for m in mappings if m is not None),
            losses=tuple(lo for lo in losses if lo is not None),
            train=dict(train),
            probes={k: probes.get(k, p.default) for k, p in PROBE_PARAMS.items()},
            metrics=tuple(m for m in metrics if m is not None),
            lines=dict(lines),
            execution={k: execution.get(k, p.default) for k, p in EXECUTION_PARAMS.items()},
        )

    def _dataset(self, data: Mapping[str, Any]) -> Component | None:
        if "dataset" not in data:
            return None
        params = data.get("params", {})
        if not isinstance(params, dict):
            self.problems.append(Problem("data.params", "must be a table of dataset parameters"))
            return None
        return self.component(
            {"name": data["dataset"], **params},
            "datasets",
            "data.params",
            sweep=True,
            name_path="data.dataset",
        )

    def _pairs(self, data: Mapping[str, Any], dataset: Component | None) -> list[tuple[str, str]]:
        raw = data.get("pairs")
        spec = self.registry.datasets.get(dataset.name) if dataset else None
        offered: list[str] = []
        if spec is not None and not any(p.path.startswith("data.") for p in self.problems):
            try:
                offered = list(spec.feature_sets(_first_values(spec.params, dataset.params)))
            except Exception as exc:  # a dataset's own complaint about its parameters
                self.problems.append(Problem("data.params", str(exc)))
                return []
        if raw is None:
            if not offered:
                return []  # the dataset itself has problems; they are reported already
            if len(offered) == 2:
                return [(offered[0], offered[1])]
            self.problems.append(
                Problem(
                    "data.pairs",
                    "is required when the dataset offers other than two feature sets",
                    allowed=f"pairs of {', '.join(offered)}",
                )
            )
            return []
        if (
            not isinstance(raw, list)
            or not raw
            or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
                for p in raw
            )
        ):
            self.problems.append(
                Problem(
                    "data.pairs",
                    "must be a non-empty list of [input, target] name pairs",
                    allowed='e.g. pairs = [["text", "image"]]',
                )
            )
            return []
        for pair in raw:
            for name in pair:
                if offered and name not in offered:
                    self.problems.append(
                        Problem(
                            "data.pairs",
                            f"{name!r} is not a feature set of dataset {dataset.name!r}",
                            allowed=", ".join(offered),
                            suggestion=did_you_mean(name, offered),
                        )
                    )
            if pair[0] == pair[1]:
                self.problems.append(Problem("data.pairs", f"pair {pair} maps a space onto itself"))
        return [(a, b) for a, b in raw]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _first_values(schema: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with defaults filled and each sweep at its first value (for cheap look-ups)."""
    return expand(schema, given)[0]
