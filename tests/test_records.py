"""One source of truth for the `runs` and `measurements` columns: the fields of `RunRow` and
`MeasurementRow` are the columns the migrations create, by name and SQL type; rows are written
by name; and what older versions spooled (plain dicts) still records."""

from __future__ import annotations

import attrs
import duckdb
import pytest

from xmodal.records import MeasurementRow, RunRow, column_types
from xmodal.store import CURVE_COLUMNS, RESULT_COLUMNS, RunRecord, Store, migrate


def table_columns(table: str, generated: bool = False) -> dict[str, str]:
    """Column name -> type of `table` in a database brought up to date by every migration: its
    stored columns, or (`generated`) the generated ones that keep a renamed column's old name."""
    con = duckdb.connect()
    migrate(con)
    return dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND (is_generated = 'ALWAYS') = ? ORDER BY ordinal_position",
            [table, generated],
        ).fetchall()
    )


@pytest.mark.parametrize(("table", "record"), [("runs", RunRow), ("measurements", MeasurementRow)])
def test_a_records_fields_are_its_tables_columns(table, record):
    columns, fields = table_columns(table), column_types(record)
    assert set(fields) - set(columns) == set(), "fields without a column: add a migration"
    assert set(columns) - set(fields) == set(), f"columns without a field in {record.__name__}"
    assert fields == columns, "a field's type does not match its column's SQL type"


@pytest.mark.parametrize(("table", "record"), [("runs", RunRow), ("measurements", MeasurementRow)])
def test_a_renamed_columns_old_name_is_a_generated_column_of_the_same_type(table, record):
    old = table_columns(table, generated=True)
    fields = column_types(record)
    assert set(old) == set(record.OLD_NAMES)
    assert {name: fields[new] for name, new in record.OLD_NAMES.items()} == old


def test_a_row_spooled_under_the_old_column_names_records_under_the_new(tmp_path):
    store = Store(tmp_path / "r.duckdb")
    run = {"run_id": "r1", "status": "finished", "state": "trained", "split": "kfold",
           "probe_seconds": 1.5}  # fmt: skip
    store.record(RunRecord("r1", run, [], [], []))
    with duckdb.connect(str(store.path), read_only=True) as con:
        assert con.execute(
            "SELECT kind, split_strategy, measure_seconds, state, split, probe_seconds FROM runs"
        ).fetchall() == [("trained", "kfold", 1.5, "trained", "kfold", 1.5)]


@pytest.mark.parametrize(
    ("table", "names"), [("results", RESULT_COLUMNS), ("curves", CURVE_COLUMNS)]
)
def test_result_and_curve_tuples_name_every_column(table, names):
    assert sorted(names) == sorted(table_columns(table))


def test_every_field_has_a_docstring():
    import ast
    import inspect

    import xmodal.records

    tree = ast.parse(inspect.getsource(xmodal.records))
    for cls in (RunRow, MeasurementRow):
        (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__]
        body = node.body
        documented = {
            body[i].target.id
            for i in range(len(body) - 1)
            if isinstance(body[i], ast.AnnAssign)
            and isinstance(body[i + 1], ast.Expr)
            and isinstance(body[i + 1].value, ast.Constant)
        }
        assert {f.name for f in attrs.fields(cls)} <= documented


def test_rows_are_written_by_name_whatever_the_table_order(tmp_path):
    """The record's field order is not the table's: values still land in their own columns."""
    store = Store(tmp_path / "r.duckdb")
    run = RunRow(run_id="r1", study="s", status="finished", config={"a": 1}, n_test=7, lr=0.5)
    measurement = MeasurementRow(measurement_id="m1", run_id="r1", metric="mnno", params={"k": 5})
    store.record(RunRecord("r1", run, [measurement], [], []))
    with duckdb.connect(str(store.path), read_only=True) as con:
        assert con.execute("SELECT study, n_test, lr, config FROM runs").fetchall() == [
            ("s", 7, 0.5, '{"a": 1}')
        ]
        assert con.execute("SELECT metric, params, status FROM measurements").fetchall() == [
            ("mnno", '{"k": 5}', "finished")
        ]


def test_plain_dicts_from_an_older_spool_are_still_recorded(tmp_path):
    store = Store(tmp_path / "r.duckdb")
    run = {"run_id": "r1", "study": "s", "status": "finished", "config": {}, "retired": 1}
    measurement = {"measurement_id": "m1", "run_id": "r1", "metric": "mnno", "params": {}}
    store.record(RunRecord("r1", run, [measurement], [], []))
    with duckdb.connect(str(store.path), read_only=True) as con:
        assert con.execute("SELECT run_id, study FROM runs").fetchall() == [("r1", "s")]
        assert con.execute("SELECT count(*) FROM measurements").fetchall() == [(1,)]
