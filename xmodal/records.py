"""The rows xmodal writes to its `runs` and `measurements` tables: one frozen record per table,
whose fields ARE the table's columns.

A column therefore lives in two places only: the migration that creates it (`xmodal.store`) and
its field here, with its type and, under it, what it holds. A column renamed by a migration keeps
its old name as a generated column that reads the new one (`_Row.OLD_NAMES`: queryable, never
written). The store inserts a record by column
name (`INSERT INTO runs BY NAME SELECT ? AS run_id, ...`), so the order of the fields does not
matter to the database; tests/test_records.py fails when the fields and the columns (after every
migration) differ in name or SQL type (`SQL_TYPES` maps a field's Python type to it). A new
column = a migration + a field with a default, so that rows recorded before it still convert.

`from_mapping` turns a plain dict (what older xmodal versions left in the spool) into a record.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs

# A field's Python type (None aside) -> the SQL type of its column.
SQL_TYPES: dict[Any, str] = {
    str: "VARCHAR",
    int: "INTEGER",
    float: "DOUBLE",
    bool: "BOOLEAN",
    datetime: "TIMESTAMP",
    dict: "JSON",
}


def columns(record: type) -> tuple[str, ...]:
    """The column names of a record class, in field order."""
    return tuple(f.name for f in attrs.fields(record))


def column_types(record: type) -> dict[str, str]:
    """Column name -> SQL type of a record class, from its fields' type annotations."""
    hints = typing.get_type_hints(record)
    return {name: _sql_type(hints[name]) for name in columns(record)}


def _sql_type(annotation: Any) -> str:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return SQL_TYPES[typing.get_origin(annotation) or annotation]


class _Row:
    """What every table record can do: give its values for an INSERT BY NAME."""

    TABLE: ClassVar[str]
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ()
    # Old column name -> the field (column) it was renamed to. The old name stays in the table as
    # a generated column that reads the new one; a dict spooled by an older version under the old
    # name is converted (`from_mapping`).
    OLD_NAMES: ClassVar[dict[str, str]] = {}

    def values(self) -> list[Any]:
        """The field values in field order, JSON columns serialised."""
        return [
            json.dumps(value) if name in self.JSON_COLUMNS and value is not None else value
            for name, value in zip(
                columns(type(self)), attrs.astuple(self, recurse=False), strict=True
            )
        ]

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> Any:
        """A record from a dict of column values (keys that are no column are ignored; a column's
        old name, `OLD_NAMES`, is read as its new one)."""
        names = set(columns(cls))
        renamed = {cls.OLD_NAMES.get(k, k): v for k, v in row.items() if k not in names}
        return cls(**{k: v for k, v in {**renamed, **row}.items() if k in names})

    def _pickled(self) -> dict[str, Any]:
        """The state pickle stores (the spool): column name -> value, as attrs stores it."""
        return {name: getattr(self, name) for name in columns(type(self))}

    def _unpickled(self, state: Mapping[str, Any]) -> None:
        """Restore a pickled record, also one an older xmodal spooled: a column's old name
        (`OLD_NAMES`) is read as its new one, and a column added since takes its default."""
        renamed = {self.OLD_NAMES.get(k, k): v for k, v in state.items()}
        for field in attrs.fields(type(self)):
            if field.name in renamed:
                value = renamed[field.name]
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                value = field.default.factory()
            else:
                value = None if field.default is attrs.NOTHING else field.default
            object.__setattr__(self, field.name, value)

    @classmethod
    def insert_sql(cls) -> str:
        """`INSERT INTO <table> BY NAME SELECT ? AS <column>, ...` for `values()`."""
        selected = ", ".join(f"? AS {name}" for name in columns(cls))
        return f"INSERT INTO {cls.TABLE} BY NAME SELECT {selected}"


@attrs.frozen(kw_only=True)
class RunRow(_Row):
    """One row of the `runs` table: a run's identity, settings, status, timings and provenance.

    Built by `xmodal.execute.run_row`; the runner adds `study` and `artifact`.
    """

    TABLE: ClassVar[str] = "runs"
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ("config",)
    # Schema migration 7 renamed these columns (docs/glossary.md, "Names kept for compatibility").
    OLD_NAMES: ClassVar[dict[str, str]] = {
        "split": "split_strategy",
        "state": "kind",
        "probe_seconds": "measure_seconds",
    }
    # A RunRow an older xmodal pickled into the spool has the old names: see `_unpickled`.
    __getstate__ = _Row._pickled
    __setstate__ = _Row._unpickled

    run_id: str
    """The run's identity (xmodal.planning.RUN_FORMAT), primary key."""
    study: str | None = None
    """The study that recorded the run last."""
    dataset: str | None = None
    """The dataset's name."""
    input_features: str | None = None
    """The feature set the mapping reads."""
    target_features: str | None = None
    """The feature set the mapping predicts."""
    direction: str | None = None
    """The direction: forward or backward along the study's pair."""
    split_strategy: str | None = None
    """The split strategy's name (`Run.split_strategy["kind"]`); old name `split`."""
    fold: int | None = None
    """The fold (cross-validation), else NULL."""
    mapping: str | None = None
    """The mapping's name."""
    depth: int | None = None
    """The mapping's depth, NULL for a family without one."""
    loss: str | None = None
    """The training loss, NULL when the run does not train."""
    kind: str | None = None
    """The run kind (trained, untrained, identity, shuffled, or a plugin's); old name `state`."""
    seed: int | None = None
    """The run's seed."""
    epochs: int | None = None
    """Training epochs asked for."""
    batch_size: str | None = None
    """The batch size, or 'full'."""
    optimizer: str | None = None
    """The optimizer's name."""
    lr: float | None = None
    """The learning rate."""
    n_train: int | None = None
    """Items in the train split (set when the run has trained)."""
    n_test: int | None = None
    """Items in the test split."""
    config: dict[str, Any] | None = None
    """Every setting of the run, as planned."""
    status: str = "running"
    """The run's status: running, finished or failed."""
    error: str | None = None
    """A failed run's error and short traceback."""
    started_at: datetime | None = None
    """When the run started (UTC)."""
    finished_at: datetime | None = None
    """When the run ended (UTC)."""
    train_seconds: float | None = None
    """Seconds spent training and predicting."""
    measure_seconds: float | None = None
    """Seconds spent on the run's measurements after training; old name `probe_seconds`."""
    torch_threads: int | None = None
    """The torch threads the run used."""
    xmodal_version: str | None = None
    """The xmodal version that ran it."""
    git_commit: str | None = None
    """The commit of the working directory, if any."""
    torch_version: str | None = None
    """The torch version."""
    numpy_version: str | None = None
    """The numpy version."""
    data_fingerprint: str | None = None
    """The fingerprint of the data the run read."""
    artifact: str | None = None
    """Digest of the stored predictions, if any."""


@attrs.frozen(kw_only=True)
class MeasurementRow(_Row):
    """One row of the `measurements` table: one metric with one set of parameters on one run."""

    TABLE: ClassVar[str] = "measurements"
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = ("params",)

    measurement_id: str
    """The measurement's identity, primary key."""
    run_id: str
    """The run measured."""
    metric: str
    """The metric's name."""
    params: dict[str, Any] | None = None
    """The metric's parameters."""
    include_self: bool | None = None
    """Whether items were their own neighbours."""
    status: str = "finished"
    """The measurement's status: finished or failed."""
    error: str | None = None
    """A failed measurement's error."""
    seconds: float | None = None
    """Seconds the measurement took."""
    measured_at: datetime | None = None
    """When it was measured (UTC)."""
