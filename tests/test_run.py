"""Running a study end to end: results in DuckDB, resumable, recorded atomically, queryable."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_STUDY, rows


def test_a_study_runs_and_records_mnno_for_three_comparisons(cli, write_study, db):
    result = cli("run", write_study(), "--db", db)
    assert result.code == 0, result.output
    assert "8 ran" in result.output
    counts = rows(
        db,
        "SELECT run_id, count(DISTINCT comparison) FROM results WHERE metric = 'mnno' AND k = 10 GROUP BY run_id",
    )
    assert len(counts) == 8 and all(n == 3 for _, n in counts)
    values = rows(db, "SELECT value FROM results WHERE metric = 'mnno'")
    assert all(0.0 <= v <= 1.0 for (v,) in values)
    (status,) = {s for (s,) in rows(db, "SELECT status FROM runs")}
    assert status == "finished"


def test_a_rerun_skips_every_finished_run(cli, write_study, db):
    study = write_study()
    cli("run", study, "--db", db)
    before = rows(db, "SELECT run_id, finished_at FROM runs ORDER BY run_id")
    result = cli("run", study, "--db", db)
    assert result.code == 0
    assert ": 8 cached, 0 failed in " in result.output
    assert rows(db, "SELECT run_id, finished_at FROM runs ORDER BY run_id") == before
    assert "8 run(s) (8 cached)" in cli("plan", study, "--db", db).output
    assert {r["action"] for r in json.loads(cli("plan", study, "--db", db, "--json").out)} == {
        "cached"
    }


def test_force_redoes_runs_without_duplicating_rows(cli, write_study, db):
    study = write_study()
    cli("run", study, "--db", db)
    n_results = rows(db, "SELECT count(*) FROM results")[0][0]
    assert "8 ran" in cli("run", study, "--db", db, "--force").output
    assert rows(db, "SELECT count(*) FROM results")[0][0] == n_results


def test_same_study_and_seed_give_identical_numbers(cli, write_study, tmp_path):
    study = write_study()
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    cli("run", study, "--db", a)
    cli("run", study, "--db", b)
    sql = "SELECT run_id, metric, comparison, k, value FROM results ORDER BY ALL"
    assert rows(a, sql) == rows(b, sql)
    curves = "SELECT run_id, epoch, value FROM curves ORDER BY ALL"
    assert rows(a, curves) == rows(b, curves) and rows(a, curves)


def test_runs_record_parameters_config_and_provenance(cli, write_study, db):
    cli("run", write_study(), "--db", db)
    (row,) = rows(
        db,
        "SELECT mapping, depth, loss, state, seed, epochs, config, xmodal_version, torch_version, numpy_version, torch_threads FROM runs WHERE mapping = 'mlp' AND state = 'trained' AND direction = 'forward'",
    )
    mapping, depth, loss, state, seed, epochs, config, version, torch_v, numpy_v, threads = row
    assert (mapping, depth, loss, state, seed, epochs) == ("mlp", 2, "mse", "trained", 0, 3)
    assert json.loads(config)["mapping_params"]["hidden"] == [32]
    assert version and torch_v and numpy_v and threads >= 1


def test_training_writes_a_loss_curve_per_epoch(cli, write_study, db):
    cli("run", write_study(), "--db", db)
    epochs = rows(
        db, "SELECT run_id, max(epoch), count(*) FROM curves WHERE metric = 'loss' GROUP BY run_id"
    )
    assert len(epochs) == 4 and all(e == 3 and n == 3 for _, e, n in epochs)


def test_query_outputs_csv_and_json(cli, write_study, db):
    cli("run", write_study(), "--db", db)
    sql = "SELECT comparison, count(*) AS n FROM results WHERE metric='mnno' AND k=10 GROUP BY ALL ORDER BY ALL"
    csv_out = cli("query", sql, "--db", db, "--format", "csv").out.splitlines()
    assert csv_out == ["comparison,n", "input-target,8", "pred-input,8", "pred-target,8"]
    assert json.loads(cli("query", sql, "--db", db, "--format", "json").out)[0] == {
        "comparison": "input-target",
        "n": 8,
    }


@pytest.mark.parametrize(
    "sql", ["DELETE FROM results", "DROP TABLE runs", "CREATE TABLE x (a INT)"]
)
def test_query_is_read_only(cli, write_study, db, sql):
    cli("run", write_study(), "--db", db)
    before = rows(db, "SELECT count(*) FROM results")
    result = cli("query", sql, "--db", db)
    assert result.code != 0
    assert "read-only" in result.output
    assert rows(db, "SELECT count(*) FROM results") == before


def test_query_without_a_database_explains_itself(cli, tmp_path):
    result = cli("query", "SELECT 1", "--db", tmp_path / "missing.duckdb")
    assert result.code == 1 and "no results database" in result.output


def test_status_counts_finished_and_pending_runs(cli, write_study, db):
    study = write_study()
    cli("run", study, "--db", db)
    cli(
        "run",
        write_study(TINY_STUDY.replace("depth = 2", "depth = [2, 3]")),
        "--db",
        db,
        "--fail-fast",
    )
    out = cli("status", "--db", db).out
    assert "tiny" in out and "12" in out


def test_the_database_comes_from_xmodal_db(cli, write_study, tmp_path, monkeypatch):
    target = tmp_path / "env.duckdb"
    monkeypatch.setenv("XMODAL_DB", str(target))
    assert cli("run", write_study()).code == 0
    assert target.exists()


def test_the_study_results_view_joins_runs_and_results(cli, write_study, db):
    cli("run", write_study(), "--db", db)
    out = cli(
        "query",
        "SELECT study, depth, comparison, round(avg(value), 3) FROM study_results WHERE metric='mnno' AND k=10 GROUP BY ALL",
        "--db",
        db,
        "--format",
        "csv",
    ).out
    assert out.startswith("study,depth,comparison") and "tiny,2,pred-input" in out


def test_the_quickstart_finishes_and_reports_every_comparison(cli, db):
    from tests.conftest import REPO

    result = cli("run", REPO / "studies" / "quickstart.toml", "--db", db)
    assert result.code == 0, result.output
    comparisons = rows(db, "SELECT DISTINCT comparison FROM results WHERE metric = 'mnno'")
    assert sorted(c for (c,) in comparisons) == ["input-target", "pred-input", "pred-target"]


def test_study_results_covers_the_current_version_once(cli, write_study, db):
    path = write_study()
    cli("run", path, "--db", db)
    n = rows(db, "SELECT count(*) FROM results")[0][0]
    write_study(TINY_STUDY.replace('name = "tiny"', 'name = "tiny"\ndescription = "v2"'))
    cli("run", path, "--db", db)
    assert rows(db, "SELECT count(*) FROM study_results")[0][0] == n
    # Going back to the first version makes it the current one again.
    write_study(TINY_STUDY.replace("hidden = 32", "hidden = 40"))
    cli("run", path, "--db", db)
    write_study()
    cli("run", path, "--db", db)
    current = rows(
        db,
        "SELECT DISTINCT config->>'$.mapping_params.hidden' FROM study_results WHERE mapping = 'mlp'",
    )
    assert current == [("[32]",)]


def test_a_forced_redo_that_fails_keeps_the_earlier_results(cli, write_study, db, monkeypatch):
    path = write_study()
    cli("run", path, "--db", db)
    before = rows(db, "SELECT run_id, metric, comparison, k, value FROM results ORDER BY ALL")
    import xmodal.executors

    def broken(run, shared):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(xmodal.executors, "execute", broken)
    result = cli("run", path, "--db", db, "--force")
    assert result.code == 1 and "earlier finished results are kept" in result.output
    assert (
        rows(db, "SELECT run_id, metric, comparison, k, value FROM results ORDER BY ALL") == before
    )
    assert rows(db, "SELECT DISTINCT status FROM runs") == [("finished",)]


def test_the_recorded_commit_is_that_of_xmodal_s_code_not_of_the_current_directory(tmp_path):
    import subprocess

    from xmodal.execute import code_commit

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    repo = tmp_path / "checkout"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    assert code_commit(repo / "pkg") == head
    (repo / "pkg" / "code.py").write_text("x = 2\n")  # uncommitted change to the code
    assert code_commit(repo / "pkg") == f"{head}-dirty"
    assert code_commit(tmp_path) is None  # an installed copy outside any checkout


def test_a_paired_comparison_is_labelled_as_the_difference_of_its_two_comparisons():
    from xmodal.report import comparison_label

    assert comparison_label("pred-target") == "f(X), Y"
    assert comparison_label("pred-input:pred-target") == "(f(X), X) − (f(X), Y)"
