"""xmodal from Python (docs/python.md): load, plan and run a study with the CLI's runner, and read
the results read-only as data frames, with clear errors for a user's mistakes."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import xmodal
from tests.conftest import REPO, TINY_STUDY, rows
from xmodal.api import PLAN_COLUMNS, FilterError, Relation
from xmodal.errors import StudyError, XmodalError
from xmodal.store import StoreError

RUNS = 8  # TINY_STUDY: 2 directions × (linear, mlp) × (trained, untrained) × 1 seed


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, xmodal.api.StudySummary]:
    """The tiny study, run once through `xmodal.run` (shared by the tests that only read)."""
    directory = tmp_path_factory.mktemp("api")
    study = directory / "tiny.toml"
    study.write_text(TINY_STUDY)
    db = directory / "results.duckdb"
    summary = xmodal.run(study, db=db, progress=False)
    return study, db, summary


# -- running ---------------------------------------------------------------------------------------


def test_run_executes_every_run_and_summarises_it(ran):
    _, db, summary = ran
    assert (summary.study, summary.planned, summary.trained, summary.failed) == (
        "tiny",
        RUNS,
        RUNS,
        0,
    )
    assert summary.ok and summary.db == db and summary.failures == ()
    assert str(summary).startswith(f"tiny: {RUNS} ran, 0 failed in ")
    assert str(summary).endswith(f"→ {db}")
    assert rows(db, "SELECT count(*) FROM runs WHERE status = 'finished'") == [(RUNS,)]


def test_running_again_redoes_nothing_and_the_cli_sees_the_same_database(ran, cli):
    study, db, _ = ran
    before = rows(db, "SELECT run_id, finished_at FROM runs ORDER BY run_id")
    again = xmodal.run(study, db=db, progress=False)
    assert (again.trained, again.measured, again.cached) == (0, 0, RUNS)
    assert rows(db, "SELECT run_id, finished_at FROM runs ORDER BY run_id") == before

    result = cli("run", study, "--db", db)
    assert result.code == 0 and f"{RUNS} cached" in result.out
    assert rows(db, "SELECT run_id, finished_at FROM runs ORDER BY run_id") == before
    assert f"tiny: {RUNS} cached, 0 failed" in str(again)
    status = cli("status", "--db", db)
    assert status.code == 0 and "tiny" in status.out


def test_plan_is_what_xmodal_plan_shows(ran, cli, write_study, db):
    study, ran_db, _ = ran
    fresh = xmodal.plan(study, db=db)  # a database that does not exist yet: every run is new
    assert len(fresh) == RUNS and fresh.counts() == {"train": RUNS}
    assert {p.status for p in fresh} == {"new"} and not db.exists()

    done = xmodal.plan(xmodal.load_study(study), db=ran_db)
    assert done.counts() == {"cached": RUNS} and {p.status for p in done} == {"finished"}
    shown = json.loads(cli("plan", study, "--db", ran_db, "--json").out)
    assert shown == json.loads(json.dumps(done.records(), default=str))
    frame = done.df()
    assert tuple(frame.columns) == PLAN_COLUMNS and len(frame) == RUNS
    assert sorted(frame["mapping"].unique()) == ["linear", "mlp"]


def test_a_new_metric_only_measures_the_stored_predictions(ran, tmp_path):
    study, db, _ = ran
    copy = tmp_path / "copy"
    shutil.copytree(db.parent, copy)  # the shared database keeps its study version
    extended = copy / "tiny.toml"
    extended.write_text(study.read_text() + '\n[[metric]]\nname = "regression"\n')
    assert xmodal.plan(extended, db=copy / db.name).counts() == {"measure": RUNS}
    summary = xmodal.run(extended, db=copy / db.name, progress=False)
    assert (summary.trained, summary.measured, summary.failed) == (0, RUNS, 0)


def test_progress_can_be_a_callable_or_off(write_study, db, capsys):
    study = write_study(TINY_STUDY.replace("depth = 2", "depth = 0").replace(
        '[[mapping]]\nname = "linear"\n\n', ""))  # fmt: skip
    events = []
    xmodal.run(study, db=db, progress=events.append)
    kinds = {e.kind for e in events}
    assert {"start", "finish"} <= kinds and events[-1].done == events[-1].total
    assert capsys.readouterr().err == ""  # a callable replaces the display
    xmodal.run(study, db=db, progress=False)
    assert capsys.readouterr().err == ""


def test_address_reaches_the_ray_neighbour_backend_as_on_the_command_line(ran, monkeypatch):
    study, db, _ = ran
    monkeypatch.setenv("XMODAL_RAY_ADDRESS", "before")  # restored after the test
    summary = xmodal.run(study, db=db, address="10.0.0.1:6379", progress=False)
    assert summary.trained == 0  # every run is finished: nothing needed the cluster
    assert os.environ["XMODAL_RAY_ADDRESS"] == "10.0.0.1:6379"


def test_run_takes_a_loaded_study_and_checks_what_load_study_did_not(write_study, db):
    study = write_study(TINY_STUDY.replace("k = [1, 5, 10]", "k = [500]"))  # k exceeds the split
    loaded = xmodal.load_study(study, check=False)
    assert loaded.name == "tiny" and len(loaded.runs) == RUNS and not loaded.checked
    with pytest.raises(StudyError, match="k"):
        xmodal.run(loaded, db=db, progress=False)
    assert not db.exists()  # refused before the database was touched


def test_an_unknown_executor_is_refused_before_the_database_is_touched(write_study, db):
    with pytest.raises(XmodalError, match="executor") as caught:
        xmodal.run(write_study(), db=db, executor="proces", progress=False)
    assert "process" in str(caught.value) and not db.exists()


def test_a_database_another_runner_holds_is_refused_with_its_name(write_study, db):
    hold = textwrap.dedent(
        """
        import sys, time
        from xmodal.locking import RunLock
        with RunLock(sys.argv[1], "held-elsewhere"):
            print("locked", flush=True)
            time.sleep(600)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(db)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(XmodalError, match="held-elsewhere"):
            xmodal.run(write_study(), db=db, progress=False)
    finally:
        holder.kill()
        holder.wait()


# -- loading: clear errors -------------------------------------------------------------------------


def test_a_missing_study_file_is_a_one_screen_study_error(tmp_path):
    with pytest.raises(StudyError) as caught:
        xmodal.load_study(tmp_path / "nope.toml")
    message = str(caught.value)
    assert "nope.toml" in message and "no such study file" in message
    assert len(message.splitlines()) < 10
    with pytest.raises(StudyError, match="no such study file"):
        xmodal.run(tmp_path / "nope.toml", db=tmp_path / "x.duckdb", progress=False)
    with pytest.raises(XmodalError, match="expected a study"):
        xmodal.plan(42)  # type: ignore[arg-type]


def test_a_study_with_mistakes_lists_them_all(write_study):
    study = write_study(TINY_STUDY.replace('name = "mse"', 'name = "mze"').replace(
        "epochs = 3", "epochs = -1"))  # fmt: skip
    with pytest.raises(StudyError) as caught:
        xmodal.load_study(study)
    assert len(caught.value.problems) == 2 and "did you mean 'mse'" in str(caught.value)


# -- reading ---------------------------------------------------------------------------------------


def test_results_filter_by_value_list_and_null_and_give_data_frames(ran):
    _, db, _ = ran
    con = xmodal.connect(db)
    everything = con.results(study="tiny")
    frame = everything.df()
    assert list(frame.columns) == everything.columns
    assert {"study", "run_id", "mapping", "depth", "kind", "split", "metric",
            "comparison", "k", "value"} <= set(frame.columns)  # fmt: skip
    assert len(frame) == rows(db, "SELECT count(*) FROM study_results WHERE study = 'tiny'")[0][0]

    at10 = con.results(study="tiny", metric="mnno", k=10, kind="trained").df()
    assert len(at10) == 4 * 3  # 4 trained runs × 3 comparisons
    assert set(at10["k"]) == {10} and set(at10["kind"]) == {"trained"}
    some = con.results(study="tiny", metric="mnno", k=[1, 5]).df()
    assert set(some["k"]) == {1, 5}
    assert len(con.results(study="tiny", loss=None).df()) == len(frame[frame["loss"].isna()]) > 0


def test_runs_measurements_curves_and_studies(ran):
    _, db, _ = ran
    con = xmodal.connect(db)
    runs = con.runs(study="tiny").df()
    assert len(runs) == RUNS and list(runs["position"]) == list(range(RUNS))
    assert set(runs["status"]) == {"finished"}
    assert con.measurements(study="tiny", metric="mnno").fetchall()
    curves = con.curves(study="tiny", kind="trained").df()
    assert {"run_id", "mapping", "epoch", "split", "metric", "value"} <= set(curves.columns)
    assert set(curves["kind"]) == {"trained"} and curves["epoch"].max() >= 1
    assert con.studies().fetchall()[0][0] == "tiny"


def test_sql_binds_parameters_and_relations_narrow_like_duckdb_ones(ran):
    _, db, _ = ran
    con = xmodal.connect(db)
    relation = con.sql("SELECT mapping, depth, value FROM study_results WHERE study = ?", "tiny")
    assert isinstance(relation, Relation)
    assert relation.columns == ["mapping", "depth", "value"]
    top = (
        relation.filter("mapping = ?", "mlp").order("value DESC").limit(2).select("depth", "value")
    )
    got = top.fetchall()
    assert len(got) == 2 and got[0][1] >= got[1][1] and {d for d, _ in got} == {2}
    assert con.sql("SELECT 42 AS answer").fetchone() == (42,)
    assert "mapping" in repr(relation)  # a preview of the first rows


def test_arrow_and_polars_give_tables_or_name_the_extra(ran):
    _, db, _ = ran
    con = xmodal.connect(db)
    relation = con.results(study="tiny", metric="mnno")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(XmodalError, match=r"xmodal\[arrow\]"):
            relation.arrow()
    else:
        assert relation.arrow().num_rows == len(relation.fetchall())
    try:
        import polars  # noqa: F401
    except ImportError:
        with pytest.raises(XmodalError, match=r"pip install 'xmodal\[polars\]'"):
            relation.pl()
    else:
        assert relation.pl().height == len(relation.fetchall())


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM runs",
        "UPDATE runs SET status = 'failed'",
        "CREATE TABLE mine AS SELECT 1",
        "DROP VIEW study_results",
        "ATTACH 'other.duckdb' AS other",
        "COPY runs TO 'runs.csv'",
        "SET threads = 1",
        "SELECT 1; DELETE FROM runs",
    ],
)
def test_the_connection_is_read_only(ran, statement):
    _, db, _ = ran
    before = rows(db, "SELECT count(*) FROM runs")
    with pytest.raises(StoreError, match=r"read-only|refused|one statement"):
        xmodal.connect(db).sql(statement).fetchall()
    assert rows(db, "SELECT count(*) FROM runs") == before


def test_the_connection_reads_no_other_file(ran, tmp_path):
    _, db, _ = ran
    (tmp_path / "secret.csv").write_text("a\n1\n")
    with pytest.raises(StoreError, match="reads the results database only"):
        xmodal.connect(db).sql(f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')").fetchall()


def test_an_unknown_filter_names_the_columns_and_a_close_one(ran):
    _, db, _ = ran
    with pytest.raises(FilterError) as caught:
        xmodal.connect(db).results(study="tiny", metrc="mnno")
    message = str(caught.value)
    assert "no column 'metrc'" in message and "did you mean 'metric'?" in message
    assert "split_strategy" in message and "comparison" in message  # the allowed columns


def test_an_unknown_study_is_named_with_the_studies_the_database_holds(ran):
    _, db, _ = ran
    with pytest.raises(FilterError, match=r"no study of that name; did you mean 'tiny'\?.*tiny"):
        xmodal.connect(db).results(study="tinny")
    with pytest.raises(FilterError, match="not its file name"):
        xmodal.connect(db).runs(study="study.toml")


def test_split_is_the_measured_split_a_strategy_points_to_split_strategy(ran):
    _, db, _ = ran
    con = xmodal.connect(db)
    tested = con.results(study="tiny", split="test").df()
    assert len(tested) > 0 and set(tested["split"]) == set(tested["result_split"]) == {"test"}
    with pytest.raises(FilterError, match="split_strategy='kfold'"):
        con.results(study="tiny", split="dataset")  # the old meaning of results' `split`
    assert con.results(study="tiny", split_strategy="dataset").fetchone() is not None
    with pytest.raises(FilterError, match="string, number or boolean"):
        con.results(study="tiny", k={"min": 5})
    with pytest.raises(FilterError, match="empty list"):
        con.results(study="tiny", k=[])


def test_connecting_to_a_missing_database_says_how_to_make_one(tmp_path):
    with pytest.raises(StoreError, match=r"no results database here yet.*xmodal\.run"):
        xmodal.connect(tmp_path / "absent.duckdb")
    assert not (tmp_path / "absent.duckdb").exists()


def test_connect_defaults_to_xmodal_db(ran, monkeypatch):
    _, db, _ = ran
    monkeypatch.setenv("XMODAL_DB", str(db))
    assert xmodal.connect().path == db


def test_reading_imports_neither_torch_nor_the_plugins(ran):
    """The issue's Done-when line, in a fresh interpreter: `import xmodal; connect(db).df()`."""
    _, db, _ = ran
    code = (
        "import sys, xmodal\n"
        f"frame = xmodal.connect({str(db)!r}).results(study='tiny', metric='mnno').df()\n"
        "print(len(frame), type(frame).__module__.split('.')[0])\n"
        "print(sorted(m for m in ('torch', 'xmodal_plugins', 'xmodal.runner') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.splitlines()
    assert out[0].split()[1] == "pandas" and int(out[0].split()[0]) > 0
    assert out[1] == "[]"


@pytest.mark.parametrize("name", ["load_study", "plan", "run", "connect"])
def test_help_on_each_function_explains_it_with_an_example(name):
    doc = inspect.getdoc(getattr(xmodal, name))
    assert doc and ">>>" in doc and len(doc.splitlines()) >= 5
    assert name in (REPO / "docs" / "python.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("method", ["results", "runs", "measurements", "curves", "studies", "sql"])
def test_help_on_each_connection_method(method):
    assert inspect.getdoc(getattr(xmodal.api.Connection, method))
    assert f".{method}(" in (REPO / "docs" / "python.md").read_text(encoding="utf-8")


def test_the_cli_and_the_api_merge_their_options_with_execution_alike():
    """`xmodal run` and `xmodal.run` share one merge: a given option wins (0 threads too), else
    the study's [execution] value, else one worker, one thread and the default executor."""
    from xmodal.api import Execution, execution_settings

    declared = {"executor": "process", "workers": 3, "threads": 2}
    assert execution_settings(declared) == Execution("process", 3, 2)
    assert execution_settings(declared, workers=1, executor="local", threads=0) == Execution(
        "local", 1, 0
    )
    assert execution_settings({}) == Execution(None, 1, 1)
    assert execution_settings({"executor": None, "workers": 1, "threads": 1}, workers=4) == (
        Execution(None, 4, 1)
    )
