"""Study files: TOML parsed with tomllib into frozen attrs objects, with every problem reported.

A `Study` keeps each section's declaration as written (sweeps unexpanded, parameters checked
against the schemas the plugins declare); `xmodal.planning` expands it into runs.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from xmodal.components import DATA_SETTINGS, NEIGHBOR_SETTINGS
from xmodal.errors import Problem, StudyError, XmodalError, did_you_mean
from xmodal.params import (
    Param,
    a_type,
    count_variants,
    expand,
    first_variant,
    sweep_lengths,
    validate_params,
    with_choices,
)
from xmodal.plugins import Registry, singular
from xmodal.splits import fold_ids, run_split
from xmodal.tomlpos import locate, scan
from xmodal.validation import CheckContext, check_component, depth_problems

SECTIONS = (
    *("study", "data", "mapping", "loss", "train", "runs", "measure", "metric", "execution"),
    *("neighbors", "probes"),
)
# The old name of [measure] and [runs] together (read the same, with a note; docs/glossary.md).
OLD_PROBES = "probes"
DIRECTIONS = ("forward", "backward")

# Limits that keep the cost of reading a study proportional to its size (docs/study-format.md).
DEFAULT_MAX_RUNS = 10_000  # runs a study may declare; --max-runs N or XMODAL_MAX_RUNS=N raise it
MAX_RUNS_ENV = "XMODAL_MAX_RUNS"
MAX_NESTING = 32  # tables and lists inside each other; a valid study needs 6
MAX_FILE_BYTES = 1 << 20  # a study file is a page or two of TOML, not a data file
SEED_LIMIT = 2**31  # seeds are stored as 32-bit integers

STUDY_PARAMS = {
    "name": Param(str, doc="study name: letters, digits, '-', '_', '.'"),
    "description": Param(str, default="", doc="free text about the study; no run depends on it"),
    "seeds": Param(int, default=[0], many=True, min=0, max=SEED_LIMIT - 1, doc="one run per seed"),
}
DATA_PARAMS = {
    "dataset": Param(str, doc="a registered dataset (see `xmodal plugins`)"),
    "directions": Param(
        str,
        default=list(DIRECTIONS),
        many=True,
        choices=DIRECTIONS,
        doc="forward maps input to target, backward target to input; one run each",
    ),
    # A registered split strategy (None: the one a plugin declares the default); the strategy's
    # own parameters are further [data] keys (`_Builder.split_strategy`). `split` is its old name
    # (read the same, with a note).
    "split_strategy": Param(
        str, default=None, doc="a registered split strategy (see `xmodal plugins`)"
    ),
    "split": Param(str, default=None, doc="the old name of split_strategy (read the same)"),
    "split_seed": Param(int, default=0, min=0, doc="the seed of a seeded split strategy"),
}
TRAIN_PARAMS = {
    "epochs": Param(
        int,
        default=20,
        min=1,
        max=100_000,
        doc="passes over the training items (fewer when early stopping ends training)",
    ),
    "batch_size": Param(
        int,
        default=64,
        min=1,
        also=("full",),
        doc='items per optimiser step (at most all of them); "full": all training items',
    ),
    "optimizer": Param(
        str, default="adam", choices=("adam", "adamw", "sgd"), doc="the torch.optim optimiser"
    ),
    "lr": Param(float, default=1e-3, min=0.0, doc="the optimiser's learning rate"),
    "weight_decay": Param(float, default=0.0, min=0.0, doc="the optimiser's L2 weight decay"),
    "momentum": Param(float, default=0.9, min=0.0, max=1.0, doc="SGD momentum (sgd only)"),
    "shuffle": Param(
        bool, default=True, doc="reorder the items each epoch (seeded); false keeps their order"
    ),
    "grad_clip": Param(float, default=0.0, min=0.0, doc="max gradient norm; 0 turns it off"),
    "early_stopping": Param(
        int, default=0, min=0, doc="patience in epochs on a validation part; 0 turns it off"
    ),
    "validation_fraction": Param(
        float,
        default=0.1,
        min=0.01,
        max=0.5,
        doc="with early stopping: the seeded share of training items held out to validate",
    ),
    "probe_every": Param(
        int, default=0, min=0, doc="probe train and test items every N epochs into curves"
    ),
}
EXECUTION_PARAMS = {
    # None: the registry's default executor. The names allowed are the registered executors.
    "executor": Param(str, default=None, doc="where runs execute: a registered executor's name"),
    "workers": Param(
        int, default=1, min=1, max=1024, doc="runs executed at once; --workers overrides it"
    ),
    "threads": Param(
        int, default=1, min=0, max=1024, doc="torch threads per run; 0 = cores / workers"
    ),
}
# The settings of [neighbors]; its other keys are the chosen backend's parameters
# (`register_neighbor_backends`, `_Builder.neighbors`). The recall settings matter only for an
# approximate backend.
NEIGHBORS_PARAMS = {
    "backend": Param(
        str, default=None, doc="how neighbour lists are found: a registered neighbour backend"
    ),
    "recall_sample": Param(
        int,
        default=1000,
        min=1,
        max=1_000_000,
        doc="approximate backends: items per space whose lists are checked against exact search",
    ),
    "recall_seed": Param(
        int, default=0, min=0, doc="approximate backends: the seed that draws the recall sample"
    ),
}
assert tuple(NEIGHBORS_PARAMS) == NEIGHBOR_SETTINGS
# The measurement settings, declared in the [measure] table. Run kinds (`register_run_kinds`) are
# turned on in the [runs] table: `kind = true` or a `[runs.kind]` table of the kind's parameters
# (`_Builder.run_kinds`). [probes], the old name of both, holds the settings and the kinds.
MEASURE_PARAMS = {
    "splits": Param(
        str,
        default=["test"],
        many=True,
        choices=("train", "test"),
        doc="the splits each run is measured on: its test items, its training items, or both",
    ),
    "include_self": Param(
        bool, default=False, doc="count each item as its own neighbour (the authors' code did)"
    ),
}
# The study-file table of each `<NAME>_PARAMS` schema not named after its table (the generated
# parameter reference, xmodal.reference, documents each table from its schema).
TABLE_OF_PARAMS: dict[str, str] = {}


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
    # The split strategy as every run records it (`xmodal.splits.run_split`), from [data] split.
    split_strategy: Mapping[str, Any]
    mappings: tuple[Component, ...]
    losses: tuple[Component, ...]
    train: Mapping[str, Any]
    # The measurement settings (`MEASURE_PARAMS`, defaults filled), from [measure].
    measure: Mapping[str, Any]
    metrics: tuple[Component, ...]
    lines: Mapping[str, int] = attrs.field(repr=False)
    execution: Mapping[str, Any] = attrs.field(factory=dict)
    # The run kinds the study runs, in the registry's order; params from [runs.<kind>].
    kinds: tuple[Component, ...] = ()
    # The neighbour backend from [neighbors]: {"backend": name, "params": {...} (defaults
    # filled), "recall_sample": n, "recall_seed": s}; empty: the registry's default backend.
    neighbors: Mapping[str, Any] = attrs.field(factory=dict)
    # One line per old spelling the file uses ("file:line: note: ..."): read the same, and shown
    # by `xmodal validate` and `xmodal run` so the file can be updated. Not part of any id.
    notes: tuple[str, ...] = ()

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def line_of(self, path: str) -> int | None:
        return locate(dict(self.lines), path)


def max_runs_limit(max_runs: int | None = None) -> int:
    """The run limit: the given one, else $XMODAL_MAX_RUNS, else `DEFAULT_MAX_RUNS`."""
    if max_runs is not None:
        return max_runs
    raw = os.environ.get(MAX_RUNS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_RUNS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise XmodalError(f"{MAX_RUNS_ENV}={raw!r} is not a positive whole number of runs")
    return value


def load_study(path: str | Path, registry: Registry, *, max_runs: int | None = None) -> Study:
    """Read and validate a study file; raise `StudyError` listing every problem found."""
    path = Path(path)
    source = _read(path)
    return parse_study(source, str(path), registry, max_runs=max_runs)


def _read(path: Path) -> str:
    """The file's text, or a `StudyError` saying why it cannot be a study file."""

    def refuse(reason: str, allowed: str | None = None) -> StudyError:
        return StudyError(str(path), [Problem("", reason, allowed=allowed)])

    try:
        info = path.stat()
    except FileNotFoundError:
        raise refuse("no such study file") from None
    except OSError as exc:  # a symlink loop, a path through a file, a name too long
        raise refuse(f"cannot read study file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise refuse(
            "is a directory, not a study file", "a TOML file, e.g. studies/quickstart.toml"
        )
    if not stat.S_ISREG(info.st_mode):
        raise refuse("is not a regular file (a device, pipe or socket)", "a TOML file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read study file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise refuse(
            f"is larger than {MAX_FILE_BYTES >> 20} MiB; a study file declares runs, it holds no data",
            "at most 1 MiB of TOML",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StudyError(
            str(path),
            [
                Problem(
                    "",
                    f"is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})",
                    allowed="TOML files are UTF-8; re-save the file as UTF-8",
                    line=line,
                )
            ],
        ) from None


def parse_study(
    source: str, file: str, registry: Registry, *, max_runs: int | None = None
) -> Study:
    """Validate TOML text as a study; `file` is used in error messages.

    Reading takes time linear in the size of the text: positions come from a one-pass scanner,
    nesting is limited before `tomllib` (which recurses) sees the text, and the runs a study
    declares are counted from its sweep lengths, never by expanding them.
    """
    limit = max_runs_limit(max_runs)
    layout = scan(source, MAX_NESTING)
    if layout.too_deep is not None:
        raise StudyError(
            file,
            [
                Problem(
                    "",
                    f"nests tables or lists more than {MAX_NESTING} levels deep",
                    allowed="a study nests at most a few levels, e.g. hidden = [[256], [512, 512]]",
                    line=layout.too_deep,
                )
            ],
        )
    try:
        doc = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise StudyError(file, [Problem("", f"invalid TOML: {message}", line=line)]) from None
    except RecursionError:  # the scanner's depth limit should make this unreachable
        raise StudyError(file, [Problem("", "nests tables or lists too deeply to read")]) from None
    lines = layout.lines
    builder = _Builder(registry, lines, limit)
    study = builder.build(doc, file, source, lines)
    if builder.problems:
        located = [attrs.evolve(p, line=p.line or locate(lines, p.path)) for p in builder.problems]
        raise StudyError(file, sorted(located, key=lambda p: p.line or 0))
    assert study is not None
    return study


class _Builder:
    """Collects problems section by section instead of stopping at the first."""

    def __init__(
        self, registry: Registry, lines: Mapping[str, int], max_runs: int = DEFAULT_MAX_RUNS
    ) -> None:
        self.registry = registry
        self.lines = dict(lines)
        self.max_runs = max_runs
        self.problems: list[Problem] = []
        self.notes: list[tuple[str, str]] = []  # (key path, text): old spellings read the same
        self.broken: set[str] = set()  # sections missing or of the wrong shape (reported once)

    def table(self, doc: Mapping[str, Any], key: str, *, required: bool) -> dict[str, Any]:
        value = doc.get(key)
        if value is None or not isinstance(value, dict):
            self.broken.add(key)
        if value is None:
            if required:
                self.problems.append(Problem(key, f"section [{key}] is missing"))
            return {}
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            self.problems.append(
                Problem(
                    key,
                    f"is written [[{key}]] (a list of tables); there is one [{key}] table",
                    allowed=f"[{key}]",
                )
            )
            return {}
        if not isinstance(value, dict):
            self.problems.append(Problem(key, f"must be a table [{key}], not {a_type(value)}"))
            return {}
        return value

    def section(
        self, schema: Mapping[str, Param], table: Mapping[str, Any], key: str, *, sweep: bool
    ) -> None:
        """Check a section's keys, unless the section itself is missing or malformed."""
        if key not in self.broken:
            self.problems.extend(validate_params(schema, table, key, sweep=sweep))

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
                    f"{name!r} is not a registered {singular(kind)}",
                    allowed=", ".join(sorted(known)) or f"no {kind} are loaded",
                    suggestion=did_you_mean(name, known) if isinstance(name, str) else None,
                    notes=self.registry.filter_notes(kind),
                )
            )
            return None
        params = {k: v for k, v in table.items() if k != "name"}
        spec = known[name]
        schema = with_choices(spec.params, self.registry.of)  # e.g. registered similarities
        schema_problems = validate_params(schema, params, path, sweep=sweep)
        self.problems.extend(schema_problems)
        describes = getattr(spec, "check", None) is not None or getattr(spec, "depth", None)
        if (
            describes
            and not schema_problems
            and count_variants(spec.params, params) <= self.max_runs  # else: _grid says
        ):
            # What the component says about each variant before any data is known
            # (xmodal.validation); a sweep may repeat a problem, which is reported once.
            context = CheckContext(component=singular(kind), name=name)
            found: list[Problem] = []
            for variant in expand(spec.params, params):
                found.extend(check_component(spec, variant, context, path))
                if kind == "mappings":
                    found.extend(depth_problems(spec, variant, path))
            self.problems.extend(dict.fromkeys(found))
        return Component(name=name, params=params, path=path)

    def declared_or_default(
        self, doc: Mapping[str, Any], key: str, kind: str, *, needed: bool = True
    ) -> list[dict]:
        """The `[[key]]` tables of the study, or, when it declares none, a table naming the one
        `kind` component the loaded plugins declare `default=True`.

        No default, or more than one, is a problem when the component is `needed`; otherwise
        (e.g. no loss while nothing is trained) the study simply has none.
        """
        if key in doc:
            return self.array_of_tables(doc, key, [])
        registered = self.registry.of(kind)
        names = sorted(n for n, spec in registered.items() if getattr(spec, "default", False))
        if len(names) == 1:
            return [{"name": names[0]}]
        if not needed:
            return []
        what = singular(kind)
        if not names:
            self.problems.append(
                Problem(
                    key,
                    f"no [[{key}]] table, and no loaded plugin declares a default {what}",
                    allowed=(
                        f"a [[{key}]] table naming one of: {', '.join(sorted(registered))}"
                        if registered
                        else f"no {kind} are loaded; install or load a plugin that provides one"
                    ),
                    notes=self.registry.filter_notes(kind),
                )
            )
        else:
            claims = ", ".join(
                f"{n!r} (plugin {self.registry.owners.get((kind, n), '?')!r})" for n in names
            )
            self.problems.append(
                Problem(
                    key,
                    f"no [[{key}]] table, and {len(names)} loaded {kind} are declared the "
                    f"default {what}: {claims}",
                    allowed=f'name one in a [[{key}]] table, e.g. [[{key}]] name = "{names[0]}"',
                )
            )
        return []

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
        self.section(STUDY_PARAMS, head, "study", sweep=False)
        name = head.get("name")
        if isinstance(name, str) and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            self.problems.append(
                Problem("study.name", f"{name!r} has characters outside A-Z a-z 0-9 _ . -")
            )

        data = self.table(doc, "data", required=True)
        split_strategy = self.split_strategy(data)
        dataset = self._dataset(data)
        pairs = self._pairs(data, dataset)

        mappings = [
            self.component(t, "mappings", f"mapping[{i}]", sweep=True)
            for i, t in enumerate(self.array_of_tables(doc, "mapping", []))
        ]
        # Without [[loss]] / [[metric]], the registered defaults; a loss only when runs train.
        measure, _, raw_kinds, kinds_table, kinds_section = self.measure_and_kinds(doc)
        kinds = self.run_kinds(raw_kinds, kinds_table, kinds_section)
        trains = any(self.registry.run_kinds[k.name].trains for k in kinds)
        losses = [
            self.component(t, "losses", f"loss[{i}]", sweep=True)
            for i, t in enumerate(self.declared_or_default(doc, "loss", "losses", needed=trains))
        ]
        metrics = [
            self.component(t, "metrics", f"metric[{i}]", sweep=False)
            for i, t in enumerate(self.declared_or_default(doc, "metric", "metrics"))
        ]
        train = self.table(doc, "train", required=False)
        self.section(TRAIN_PARAMS, train, "train", sweep=True)
        execution = self.table(doc, "execution", required=False)
        if "address" in execution:
            execution = {k: v for k, v in execution.items() if k != "address"}
            self.problems.append(
                Problem(
                    "execution.address",
                    "a study file cannot choose the Ray cluster (whoever wrote the file would pick "
                    "where the runs go and what comes back); delete this line",
                    allowed="xmodal run --executor ray --address ADDRESS, or XMODAL_RAY_ADDRESS=ADDRESS",
                )
            )
        self.section(EXECUTION_PARAMS, execution, "execution", sweep=False)
        executor = execution.get("executor")
        if isinstance(executor, str) and executor not in self.registry.executors:
            self.problems.append(
                Problem(
                    "execution.executor",
                    f"{executor!r} is not a registered executor",
                    allowed=", ".join(self.registry.executors) or "no executors are loaded",
                    suggestion=did_you_mean(executor, self.registry.executors),
                    notes=self.registry.filter_notes("executors"),
                )
            )
        neighbors = self.neighbors(doc)
        self._grid(head, data, dataset, pairs, mappings, losses, train, kinds)
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
            split_strategy=dict(split_strategy or {}),
            mappings=tuple(m for m in mappings if m is not None),
            losses=tuple(lo for lo in losses if lo is not None),
            train=dict(train),
            measure={k: measure.get(k, p.default) for k, p in MEASURE_PARAMS.items()},
            kinds=tuple(kinds),
            metrics=tuple(m for m in metrics if m is not None),
            lines=dict(lines),
            execution={k: execution.get(k, p.default) for k, p in EXECUTION_PARAMS.items()},
            neighbors=neighbors or {},
            notes=tuple(
                f"{file}:{line}: note: {text}"
                if (line := self.line(path))
                else f"{file}: note: {text}"
                for path, text in self.notes
            ),
        )

    def _variants(
        self, kind: str, components: list[Component | None]
    ) -> tuple[int, list[tuple[str, int]]]:
        """How many parameter sets the components expand to, and the sweeps that make them."""
        total, sweeps = 0, []
        for c in components:
            if c is None:
                continue
            lengths = sweep_lengths(self.registry.of(kind)[c.name].params, c.params)
            total += math.prod(lengths.values())
            sweeps.extend((f"{c.path}.{key}", n) for key, n in lengths.items())
        return max(total, 1), sweeps

    def _grid(
        self,
        head: Mapping[str, Any],
        data: Mapping[str, Any],
        dataset: Component | None,
        pairs: list[tuple[str, str]],
        mappings: list[Component | None],
        losses: list[Component | None],
        train: Mapping[str, Any],
        kinds: list[Component],
    ) -> None:
        """Refuse a grid of more than `max_runs` runs, counted from the sweep lengths alone.

        The count follows `xmodal.planning.make_plan` (before duplicate runs collapse): dataset
        variants x pairs x directions x folds x (kinds without a mapping + mapping variants x
        seeds x (loss variants x train variants x kinds that train + kinds that only initialise)).
        Values that are themselves invalid count as one; they are reported elsewhere.
        """
        n_data, data_sweeps = self._variants("datasets", [dataset])
        n_maps, map_sweeps = self._variants("mappings", mappings)
        n_loss, loss_sweeps = self._variants("losses", losses)
        train_lengths = sweep_lengths(TRAIN_PARAMS, train)
        n_train = math.prod(train_lengths.values())
        seeds = head.get("seeds", [0])
        n_seeds = max(len(seeds), 1) if isinstance(seeds, list) else 1
        directions = data.get("directions", list(DIRECTIONS))
        n_dirs = (
            max(len({d for d in directions if isinstance(d, str)}), 1)
            if isinstance(directions, list)
            else 1
        )
        n_folds = self.n_folds  # from the split strategy's fold_ids (`split_strategy`)
        n_pairs = max(len(pairs), 1)
        specs = self.registry.run_kinds
        references = [k.name for k in kinds if not specs[k.name].maps]
        training = [k.name for k in kinds if specs[k.name].maps and specs[k.name].trains]
        initialised = [k.name for k in kinds if specs[k.name].maps and not specs[k.name].trains]

        per_mapping = n_loss * n_train * len(training) + len(initialised)
        places = n_data * n_pairs * n_dirs * n_folds
        total = places * (len(references) + n_maps * n_seeds * per_mapping)

        sweeps = [*data_sweeps, ("data.pairs", n_pairs), ("data.directions", n_dirs)]
        sweeps += [("data.folds", n_folds), ("mapping", _count(mappings)), *map_sweeps]
        sweeps += [("study.seeds", n_seeds)]
        if training:
            sweeps += [("loss", _count(losses)), *loss_sweeps]
            sweeps += [(f"train.{k}", n) for k, n in train_lengths.items()]
        sweeps = [(path, n) for path, n in sweeps if n > 1]
        raise_it = f"raise the limit with --max-runs N or {MAX_RUNS_ENV}=N"
        if total > self.max_runs:
            terms = [
                f"{what} {n:,}"
                for what, n in (
                    ("dataset variants", n_data),
                    ("pairs", n_pairs),
                    ("directions", n_dirs),
                    ("folds", n_folds),
                )
                if n != 1
            ]
            inner = f"mapping variants {n_maps:,} × seeds {n_seeds:,}"
            if training:
                inner += f" × (loss variants {n_loss:,} × train variants {n_train:,}"
                if len(training) > 1:
                    inner += f" × {len(training)} kinds ({', '.join(training)})"
                inner += f" + {len(initialised)} {', '.join(initialised)})" if initialised else ")"
            elif len(initialised) > 1:
                inner += f" × {len(initialised)} kinds ({', '.join(initialised)})"
            if references:
                inner = f"({len(references)} {', '.join(references)} + {inner})"
            grid = " × ".join([*terms, inner])
            self.problems.append(
                self._too_many(
                    sweeps,
                    f"the study declares {total:,} runs, more than the limit of {self.max_runs:,}",
                    [f"runs = {grid}"],
                    f"at most {self.max_runs:,} runs; cut a sweep, or {raise_it}",
                )
            )
            return
        # Within the limit, but a list the plan expands may still be huge (e.g. a loss sweep
        # while trained = false): expanding it would cost as much as running it.
        for what, count, own in (
            ("loss", n_loss, loss_sweeps),
            ("train", n_train, [(f"train.{k}", n) for k, n in train_lengths.items()]),
        ):
            if count > self.max_runs:
                self.problems.append(
                    self._too_many(
                        own,
                        f"[{what}] declares {count:,} variants, more than the limit of "
                        f"{self.max_runs:,}",
                        [],
                        f"at most {self.max_runs:,} variants; cut a sweep, or {raise_it}",
                        heading="what multiplies the variants:",
                    )
                )

    def _too_many(
        self,
        sweeps: list[tuple[str, int]],
        message: str,
        notes: list[str],
        allowed: str,
        heading: str = "what multiplies the runs:",
    ) -> Problem:
        """A grid-size problem placed at its longest sweep, naming the sweeps that multiply."""
        largest = sorted(sweeps, key=lambda s: -s[1])
        shown = largest[:10]
        lines = [
            f"  {path}: {n:,} {'tables' if path in ('mapping', 'loss') else 'values'}"
            + (f" (line {line})" if (line := self.line(path)) else "")
            for path, n in shown
        ]
        if len(largest) > len(shown):
            lines.append(f"  … and {len(largest) - len(shown)} smaller sweep(s)")
        where = largest[0][0] if largest else "study"
        return Problem(
            where,
            message,
            allowed=allowed,
            notes=(*notes, heading, *lines) if lines else tuple(notes),
        )

    def line(self, path: str) -> int | None:
        return locate(self.lines, path)

    def note(self, path: str, text: str) -> None:
        """An old spelling, read the same: one line for `Study.notes` (not a problem)."""
        self.notes.append((path, text))

    def measure_and_kinds(
        self, doc: Mapping[str, Any]
    ) -> tuple[dict[str, Any], str, Any, dict[str, Any], str]:
        """Where the study declares its measurement settings and its run kinds.

        Returns (the settings given, their section, the run kinds' table as written (None when
        absent), its keys that name run kinds, its section). [measure] and [runs] are the names;
        [probes], their old name, holds both and is read the same with a note; [probes] beside
        either of them is a problem (which one wins would be a guess).
        """
        if OLD_PROBES not in doc:
            measure = self.table(doc, "measure", required=False)
            for key in [k for k in measure if k not in MEASURE_PARAMS]:
                if key in self.registry.run_kinds:
                    self.problems.append(
                        Problem(
                            f"measure.{key}",
                            f"{key!r} is a run kind, not a measurement setting",
                            allowed=f"turn it on in [runs]: {key} = true",
                        )
                    )
                    measure = {k: v for k, v in measure.items() if k != key}
            self.section(MEASURE_PARAMS, measure, "measure", sweep=False)
            raw = doc.get("runs")
            kinds = self.table(doc, "runs", required=False)
            return measure, "measure", raw, kinds, "runs"
        raw = doc[OLD_PROBES]
        probes = self.table(doc, OLD_PROBES, required=False)
        new = [f"[{k}]" for k in ("measure", "runs") if k in doc]
        if new:
            self.problems.append(
                Problem(
                    OLD_PROBES,
                    f"[probes] is the old name of [measure] and [runs], and this study also has "
                    f"{' and '.join(new)}: write each setting once",
                    allowed="splits and include_self in [measure], run kinds in [runs]; "
                    "then delete [probes]",
                )
            )
            return {}, "measure", None, {}, "runs"
        self.note(
            OLD_PROBES,
            "[probes] is the old name of [measure] (splits, include_self) and [runs] (run "
            "kinds); read the same, but rename it (docs/study-format.md)",
        )
        measure = {k: v for k, v in probes.items() if k in MEASURE_PARAMS}
        self.section(MEASURE_PARAMS, measure, OLD_PROBES, sweep=False)
        kinds = {k: v for k, v in probes.items() if k not in MEASURE_PARAMS}
        return measure, OLD_PROBES, raw, kinds, OLD_PROBES

    def run_kinds(self, raw: Any, table: Mapping[str, Any], section: str) -> list[Component]:
        """The run kinds the study runs, in the registry's order.

        `table` holds the keys of `[runs]` (or of `[probes]`, its old name: `section`) that are
        not measurement settings; `raw` is the table as written (None: absent). A kind runs when
        the table sets it `true` or gives it a `[runs.<kind>]` table of parameters, or, when the
        table does not mention it, if the kind is declared `default`. Keys that are no registered
        kind, values of another type and bad parameters are problems; so is a study that turns
        every kind off.
        """
        known = self.registry.run_kinds
        chosen: dict[str, Component] = {}
        for key, value in table.items():
            path = f"{section}.{key}"
            if key in MEASURE_PARAMS:  # only in [runs]: [probes] held both
                self.problems.append(
                    Problem(
                        path,
                        f"{key!r} is a measurement setting, not a run kind",
                        allowed=f"write it in [measure]: {key} = ...",
                    )
                )
                continue
            if key not in known:
                old = section == OLD_PROBES  # it held the measurement settings too
                settings = f"settings {', '.join(MEASURE_PARAMS)}; " if old else ""
                self.problems.append(
                    Problem(
                        path,
                        f"{key!r} is "
                        + ("neither a [probes] setting nor " if old else "not ")
                        + "a registered run kind",
                        allowed=settings
                        + "run kinds "
                        + (", ".join(sorted(known)) or "(none are loaded)"),
                        suggestion=did_you_mean(key, [*MEASURE_PARAMS, *known]),
                        notes=self.registry.filter_notes("run_kinds"),
                    )
                )
                continue
            if isinstance(value, bool):
                params: dict[str, Any] = {}
                if not value:
                    continue
            elif isinstance(value, dict):
                params = value
            else:
                self.problems.append(
                    Problem(
                        path,
                        f"must be true, false or a [{section}.{key}] table of the kind's "
                        f"parameters, not {a_type(value)}",
                        allowed=f"{key} = true",
                    )
                )
                continue
            self.problems.extend(validate_params(known[key].params, params, path, sweep=False))
            chosen[key] = Component(name=key, params=params, path=path)
        for name, spec in known.items():
            if spec.default and name not in table:
                chosen[name] = Component(name=name, params={}, path=f"{section}.{name}")
        if not chosen and (raw is None or isinstance(raw, dict)):
            defaults = [n for n, spec in known.items() if spec.default]
            self.problems.append(
                Problem(
                    section,
                    "turns off every run kind, so nothing would run",
                    allowed=(
                        f"turn one on, e.g. {(defaults or sorted(known))[0]} = true; run "
                        f"kinds: {', '.join(sorted(known))}"
                        if known
                        else "no run kinds are loaded; load the plugin that provides them"
                    ),
                    notes=self.registry.filter_notes("run_kinds"),
                )
            )
        return [chosen[name] for name in known if name in chosen]

    def _chosen(
        self,
        name: Any,
        kind: str,
        nouns: tuple[str, str],
        section: str,
        key: str,
        settings: Iterable[str],
        extra: Mapping[str, Any],
    ) -> tuple[str, Any, dict[str, Any]] | None:
        """The registered `kind` component a table names at `key` (or the registry's one default),
        and its parameters among the table's `extra` keys, checked.

        `nouns` name the kind (singular, plural) in messages; `settings` are the table's own
        keys. Returns (name, spec, parameters given), or None after a problem (reported).
        """
        noun, nouns_ = nouns
        known = getattr(self.registry, kind)
        path = f"{section}.{key}"
        loaded = ", ".join(sorted(known)) or f"no {nouns_} are loaded"
        if name is None:
            defaults = sorted(n for n, spec in known.items() if spec.default)
            if len(defaults) != 1:
                self.problems.append(
                    Problem(
                        path,
                        "is not set, and "
                        + (
                            f"no loaded plugin declares a default {noun}"
                            if not defaults
                            else f"{len(defaults)} {nouns_} are declared the default: "
                            + ", ".join(defaults)
                        ),
                        allowed=loaded,
                        notes=self.registry.filter_notes(kind),
                    )
                )
                return None
            name = defaults[0]
        if not isinstance(name, str):
            return None  # its type is reported with the table's settings
        spec = known.get(name)
        if spec is None:
            self.problems.append(
                Problem(
                    path,
                    f"{name!r} is not a registered {noun}",
                    allowed=loaded,
                    suggestion=did_you_mean(name, known),
                    notes=self.registry.filter_notes(kind),
                )
            )
            return None
        allowed = sorted({*settings, *spec.params})
        for extra_key in extra:
            if extra_key in spec.params:
                continue
            others = sorted(n for n, other in known.items() if extra_key in other.params)
            self.problems.append(
                Problem(
                    f"{section}.{extra_key}",
                    f"is not a [{section}] setting nor a parameter of {noun} {name!r}",
                    allowed=", ".join(allowed),
                    suggestion=did_you_mean(extra_key, allowed),
                    notes=(f"{extra_key!r} is a parameter of {noun} {', '.join(others)}",)
                    if others
                    else (),
                )
            )
        given = {k: v for k, v in extra.items() if k in spec.params}
        problems = validate_params(spec.params, given, section, sweep=False)
        self.problems.extend(problems)
        return None if problems else (name, spec, given)

    def neighbors(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """Check `[neighbors]`: its settings and the chosen backend's parameters beside them.

        Returns the backend every measurement uses (`Study.neighbors`), or None after a problem.
        Without the table, the registry's default backend with its default parameters.
        """
        table = self.table(doc, "neighbors", required=False)
        if "neighbors" in doc and "neighbors" in self.broken:
            return None
        own = {k: v for k, v in table.items() if k in NEIGHBORS_PARAMS}
        extra = {k: v for k, v in table.items() if k not in NEIGHBORS_PARAMS}
        problems = validate_params(NEIGHBORS_PARAMS, own, "neighbors", sweep=False)
        self.problems.extend(problems)
        chosen = self._chosen(
            own.get("backend"),
            "neighbor_backends",
            ("neighbour backend", "neighbour backends"),
            "neighbors",
            "backend",
            NEIGHBORS_PARAMS,
            extra,
        )
        if chosen is None or problems:
            return None
        name, spec, given = chosen
        params = expand(spec.params, given)[0]
        if spec.check is not None:
            context = CheckContext(component=singular("neighbor_backends"), name=name)
            found = list(check_component(spec, params, context, "neighbors"))
            self.problems.extend(found)
            if found:
                return None
        settings = {k: own.get(k, p.default) for k, p in NEIGHBORS_PARAMS.items() if k != "backend"}
        return {"backend": name, "params": params, **settings}

    n_folds = 1  # folds of the study's split strategy, once `split_strategy` has read [data]

    def split_strategy(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """Check [data]'s settings and the split strategy's parameters written beside them.

        Returns the split every run records (`xmodal.splits.run_split`: the strategy's name, its
        parameters with defaults filled and, for a seeded strategy, `split_seed`), or None after
        a problem. Sets `n_folds` from the strategy's fold ids.
        """
        if "data" in self.broken:
            return None
        fields = {k: v for k, v in data.items() if k not in ("params", "pairs")}
        own = {k: v for k, v in fields.items() if k in DATA_PARAMS}
        extra = {k: v for k, v in fields.items() if k not in DATA_PARAMS}
        self.problems.extend(validate_params(DATA_PARAMS, own, "data", sweep=False))
        key = "split_strategy"
        if "split" in fields:  # the old name
            if "split_strategy" in fields:
                self.problems.append(
                    Problem(
                        "data.split",
                        "is the old name of split_strategy, and [data] sets split_strategy too",
                        allowed="split_strategy = ... alone; delete split",
                    )
                )
                return None
            key = "split"
            self.note(
                "data.split",
                "[data] split is the old name of split_strategy; read the same, but rename it",
            )
        chosen = self._chosen(
            fields.get(key),
            "split_strategies",
            ("split strategy", "split strategies"),
            "data",
            key,
            DATA_SETTINGS,
            extra,
        )
        if chosen is None:
            return None
        _, spec, given = chosen
        params = expand(spec.params, given)[0]
        try:
            self.n_folds = len(fold_ids(spec, params))
        except XmodalError as exc:
            self.problems.append(Problem(f"data.{key}", str(exc)))
            return None
        seed = own.get("split_seed", DATA_PARAMS["split_seed"].default)
        return run_split(spec, params, seed if isinstance(seed, int) else 0)

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


def _count(components: list[Component | None]) -> int:
    return sum(c is not None for c in components)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _first_values(schema: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with defaults filled and each sweep at its first value (for cheap look-ups)."""
    return first_variant(schema, given)
