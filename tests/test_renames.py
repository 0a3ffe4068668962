"""The glossary's renames (docs/glossary.md): [measure] and [runs] for [probes], [data]
split_strategy for split, runs.kind / split_strategy / measure_seconds for state / split /
probe_seconds, study_results.split for result_split, PairedData.split_marks for split.

Old spellings keep working and mean exactly the same: the same runs with the same ids, a note
(not an error) saying what to rename, and the old column names still queryable."""

from __future__ import annotations

import json
import pickle

import duckdb
import numpy as np
import pytest
from conftest import TINY_STUDY, rows

from xmodal import plugins
from xmodal.data import DataError, PairedData
from xmodal.errors import StudyError
from xmodal.planning import STORED_KEYS, make_plan
from xmodal.records import RunRow
from xmodal.store import MIGRATIONS, RunRecord, Store, migrate
from xmodal.study import parse_study

# Every renamed key, old spelling: the settings and the kinds share [probes].
OLD = (
    TINY_STUDY.replace('directions = ["forward", "backward"]\n', 'split = "kfold"\nfolds = 3\n')
    + """
[probes]
untrained = false
identity = true
splits = ["train", "test"]
include_self = true

[probes.shuffled]
"""
)
NEW = (
    TINY_STUDY.replace(
        'directions = ["forward", "backward"]\n', 'split_strategy = "kfold"\nfolds = 3\n'
    )
    + """
[runs]
untrained = false
identity = true

[runs.shuffled]

[measure]
splits = ["train", "test"]
include_self = true
"""
)


def parse(text: str):
    return parse_study(text, "s.toml", plugins.get_registry())


def plan(text: str):
    return make_plan(parse(text), plugins.get_registry(), lambda name, params: "data")


def problems(text: str) -> str:
    with pytest.raises(StudyError) as caught:
        parse(text)
    return str(caught.value)


# -- the study file -------------------------------------------------------------------------------


def test_old_and_new_spellings_plan_the_same_runs_ids_and_measurements():
    old, new = plan(OLD), plan(NEW)
    assert [r.run_id for r in old] == [r.run_id for r in new]
    assert [r.config() for r in old] == [r.config() for r in new]
    assert [r.measurements() for r in old] == [r.measurements() for r in new]
    kinds = {r.kind for r in new}
    assert kinds == {"trained", "identity", "shuffled"}  # untrained off, shuffled on
    assert {r.fold for r in new} == {0, 1, 2}
    assert all(r.measure == {"splits": ["test", "train"], "include_self": True} for r in new)


def test_run_ids_still_hash_the_keys_they_were_first_issued_under():
    """Renaming the study file's tables must not rename the hashed keys (every id would change)."""
    assert STORED_KEYS == {
        "split_strategy": "split",
        "kind": "probe",
        "kind_params": "probe_params",
        "measure": "probes",
    }
    config = plan(NEW)[0].config()
    assert {"split", "probe", "probes"} <= set(config)
    assert not {"split_strategy", "kind", "measure"} & set(config)


def test_old_spellings_are_read_with_a_note_naming_the_line_and_the_new_name():
    notes = parse(OLD).notes
    assert len(notes) == 2
    split_line = OLD.splitlines().index('split = "kfold"') + 1
    probes_line = OLD.splitlines().index("[probes]") + 1
    assert notes[0].startswith(f"s.toml:{split_line}: note: [data] split is the old name of ")
    assert "split_strategy" in notes[0]
    assert notes[1].startswith(f"s.toml:{probes_line}: note: [probes] is the old name of ")
    assert "[measure]" in notes[1] and "[runs]" in notes[1]
    assert parse(NEW).notes == ()


def test_validate_plan_and_run_print_the_notes_and_succeed(cli, write_study, db):
    old = write_study(OLD.replace("epochs = 3", "epochs = 1"), "old.toml")
    result = cli("validate", old)
    assert result.code == 0, result.output
    assert result.err.count("note:") == 2 and "[probes] is the old name" in result.err
    result = cli("run", old, "--db", db)
    assert result.code == 0, result.output
    assert "[data] split is the old name of split_strategy" in result.err
    result = cli("plan", old, "--db", db, "--json")
    assert result.code == 0 and result.err.count("note:") == 2
    assert json.loads(result.out)[0]["status"] == "finished"  # stdout is the JSON alone
    new = write_study(NEW.replace("epochs = 3", "epochs = 1"), "new.toml")
    result = cli("run", new, "--db", db)
    assert result.code == 0 and "note:" not in result.output, result.output
    assert "0 failed" in result.out and " ran" not in result.out  # every run cached: same ids


@pytest.mark.parametrize("new_table", ['[measure]\nsplits = ["test"]', "[runs]\nidentity = true"])
def test_probes_beside_measure_or_runs_is_an_error(new_table):
    text = TINY_STUDY + "\n[probes]\ntrained = true\n\n" + new_table + "\n"
    message = problems(text)
    assert "probes: [probes] is the old name of [measure] and [runs]" in message
    assert "write each setting once" in message
    assert "then delete [probes]" in message


def test_split_beside_split_strategy_is_an_error():
    text = TINY_STUDY.replace(
        'directions = ["forward", "backward"]\n', 'split = "kfold"\nsplit_strategy = "random"\n'
    )
    message = problems(text)
    assert (
        "data.split: is the old name of split_strategy, and [data] sets split_strategy" in message
    )


def test_a_setting_in_runs_or_a_kind_in_measure_says_where_it_belongs():
    message = problems(TINY_STUDY + '\n[runs]\nsplits = ["test"]\n\n[measure]\nidentity = true\n')
    assert "runs.splits: 'splits' is a measurement setting, not a run kind" in message
    assert "write it in [measure]" in message
    assert "measure.identity: 'identity' is a run kind, not a measurement setting" in message
    assert "turn it on in [runs]: identity = true" in message


def test_problems_in_runs_and_the_old_split_key_point_at_what_was_written():
    message = problems(TINY_STUDY + "\n[runs]\nshufled = true\n")
    assert "runs.shufled: 'shufled' is not a registered run kind" in message
    assert "did you mean 'shuffled'?" in message
    old = TINY_STUDY.replace('directions = ["forward", "backward"]\n', 'split = "kfodl"\n')
    assert "data.split: 'kfodl' is not a registered split strategy" in problems(old)
    new = TINY_STUDY.replace('directions = ["forward", "backward"]\n', 'split_strategy = "kfodl"\n')
    assert "data.split_strategy: 'kfodl' is not a registered split strategy" in problems(new)


def test_runs_turning_every_kind_off_is_an_error_of_runs():
    message = problems(TINY_STUDY + "\n[runs]\ntrained = false\nuntrained = false\n")
    assert "runs: turns off every run kind, so nothing would run" in message


# -- the database ---------------------------------------------------------------------------------


def test_a_run_records_kind_split_strategy_and_measure_seconds_and_the_old_names_read_them(
    cli, write_study, db
):
    result = cli("run", write_study(NEW.replace("epochs = 3", "epochs = 1")), "--db", db)
    assert result.code == 0, result.output
    found = rows(
        db,
        "SELECT count(*), count(*) FILTER (WHERE kind = state AND split_strategy = split "
        "AND measure_seconds = probe_seconds AND split_strategy = 'kfold') FROM runs",
    )
    assert found[0][0] > 0 and found[0][0] == found[0][1]
    assert rows(db, "SELECT DISTINCT kind FROM runs ORDER BY 1") == [
        ("identity",),
        ("shuffled",),
        ("trained",),
    ]
    # study_results: `split` is the measured split; result_split, its old name, is beside it.
    splits = rows(db, "SELECT DISTINCT split, result_split, split_strategy FROM study_results")
    assert sorted(splits) == [("test", "test", "kfold"), ("train", "train", "kfold")]
    summary = rows(db, "SELECT count(*) FILTER (WHERE kind = state), count(*) FROM results_summary")
    assert summary[0][0] == summary[0][1] > 0


def test_migration_7_keeps_an_older_databases_runs_under_both_names(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
        )
        for version, sql in enumerate(MIGRATIONS[:6], start=1):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
        con.execute(
            "INSERT INTO runs (run_id, study, split, state, status, probe_seconds, artifact) "
            "VALUES ('old', 's', 'kfold', 'trained', 'finished', 1.5, 'digest')"
        )
        con.execute("INSERT INTO studies VALUES ('s', 'h', 's.toml', '', now())")
        con.execute("INSERT INTO study_runs VALUES ('s', 'h', 'old', 0)")
        con.execute(
            "INSERT INTO results (run_id, split, metric, comparison, k, value) "
            "VALUES ('old', 'test', 'mnno', 'pred-target', 10, 0.25)"
        )
    store = Store(path)
    store.record(RunRecord("new", RunRow(run_id="new", kind="untrained", status="finished",
                                         split_strategy="random", measure_seconds=2.0), [], [], []))  # fmt: skip
    assert rows(path, "SELECT max(version) FROM schema_migrations") == [(len(MIGRATIONS),)]
    assert rows(
        path,
        "SELECT run_id, kind, state, split_strategy, split, measure_seconds, probe_seconds, "
        "artifact FROM runs ORDER BY run_id",
    ) == [
        ("new", "untrained", "untrained", "random", "random", 2.0, 2.0, None),
        ("old", "trained", "trained", "kfold", "kfold", 1.5, 1.5, "digest"),
    ]
    assert rows(path, "SELECT split, result_split, split_strategy, value FROM study_results") == [
        ("test", "test", "kfold", 0.25)
    ]
    # The old names are read-only views of the new ones.
    with duckdb.connect(str(path)) as con, pytest.raises(duckdb.Error, match="generated column"):
        con.execute("UPDATE runs SET state = 'x'")


def test_a_run_row_an_older_xmodal_pickled_into_the_spool_records_under_the_new_names(
    tmp_path, monkeypatch
):
    """The spool holds pickled RunRecords: a RunRow pickled before the rename has `state`,
    `split` and `probe_seconds` (and may lack a column added since)."""
    row = RunRow(run_id="r1", status="finished", kind="trained", split_strategy="kfold",
                 measure_seconds=1.5)  # fmt: skip
    renamed = {"kind": "state", "split_strategy": "split", "measure_seconds": "probe_seconds"}

    def as_before(self):
        state = {renamed.get(k, k): v for k, v in RunRow._pickled(self).items()}
        del state["artifact"]
        return state

    monkeypatch.setattr(RunRow, "__getstate__", as_before)
    spooled = pickle.dumps(RunRecord("r1", row, [], [], []))
    monkeypatch.undo()
    record = pickle.loads(spooled)
    assert (record.run.kind, record.run.split_strategy, record.run.measure_seconds) == (
        "trained",
        "kfold",
        1.5,
    )
    assert record.run.artifact is None
    store = Store(tmp_path / "r.duckdb")
    store.record(record)
    assert rows(store.path, "SELECT kind, split_strategy, measure_seconds FROM runs") == [
        ("trained", "kfold", 1.5)
    ]
    assert pickle.loads(pickle.dumps(row)) == row  # and today's rows round-trip


def test_a_fresh_database_has_the_old_names_as_generated_columns_only():
    con = duckdb.connect()
    migrate(con)
    generated = con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'runs' AND is_generated = 'ALWAYS' ORDER BY 1"
    ).fetchall()
    assert generated == [("probe_seconds",), ("split",), ("state",)]


# -- PairedData -----------------------------------------------------------------------------------

FEATURES = {"a": np.zeros((3, 2), np.float32)}
IDS = ("x", "y", "z")
MARKS = np.array(["train", "train", "test"])


def test_split_marks_and_the_old_keyword_give_the_same_data():
    new = PairedData(ids=IDS, features=FEATURES, split_marks=MARKS)
    old = PairedData(ids=IDS, features=FEATURES, split=MARKS)
    assert old.split_marks.tolist() == new.split_marks.tolist() == MARKS.tolist()
    assert new.split.tolist() == MARKS.tolist()  # the old attribute name still reads them


def test_split_marks_given_under_both_names_is_an_error():
    with pytest.raises(DataError, match="split marks given twice"):
        PairedData(ids=IDS, features=FEATURES, split_marks=MARKS, split=MARKS)


def test_bad_split_marks_are_named_by_their_new_name():
    with pytest.raises(DataError, match=r"split_marks has shape \(2,\), expected \(3,\)"):
        PairedData(ids=IDS, features=FEATURES, split=MARKS[:2])
