"""Executors: a process pool and Ray give the same runs and the same numbers as running in-process."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_STUDY, rows

RESULTS = "SELECT run_id, split, metric, comparison, k, value FROM results ORDER BY ALL"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny study run in-process once, as the reference for the other executors."""
    from xmodal.cli import main

    tmp = tmp_path_factory.mktemp("reference")
    study, db = tmp / "study.toml", tmp / "ref.duckdb"
    study.write_text(TINY_STUDY)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(study), "--db", str(db)])
    assert exit_info.value.code in (0, None)
    return rows(db, RESULTS)


def test_a_process_pool_gives_identical_results(cli, write_study, db, reference):
    result = cli("run", write_study(), "--db", db, "--workers", "2")
    assert result.code == 0, result.output
    assert rows(db, RESULTS) == reference


def test_ray_gives_identical_results(cli, write_study, db, reference):
    pytest.importorskip("ray")
    result = cli("run", write_study(), "--db", db, "--executor", "ray", "--workers", "2")
    assert result.code == 0, result.output
    assert rows(db, RESULTS) == reference
    assert rows(db, "SELECT DISTINCT status FROM runs") == [("finished",)]


def test_the_study_file_can_choose_the_executor(cli, write_study, db, reference):
    study = TINY_STUDY + '\n[execution]\nexecutor = "process"\nworkers = 2\n'
    assert cli("run", write_study(study), "--db", db).code == 0
    assert rows(db, RESULTS) == reference


def test_the_executor_is_not_part_of_a_run_id(cli, write_study):
    plain = json.loads(cli("plan", write_study(), "--json").out)
    pooled = json.loads(
        cli(
            "plan",
            write_study(
                TINY_STUDY + '\n[execution]\nexecutor = "ray"\nworkers = 4\nthreads = 2\n', "b.toml"
            ),
            "--json",
        ).out
    )
    assert [r["run_id"] for r in plain] == [r["run_id"] for r in pooled]


def test_an_unknown_executor_is_a_clear_error(cli, write_study, db):
    result = cli("run", write_study(), "--db", db, "--executor", "slurm")
    assert result.code == 1 and "not one of local, process, ray" in result.output


def test_failures_in_workers_are_recorded_like_local_ones(cli, write_study, db):
    # SGD with an absurd learning rate diverges: the trained runs fail inside the worker processes.
    study = TINY_STUDY.replace("batch_size = 32", 'batch_size = 32\noptimizer = "sgd"\nlr = 1e30')
    result = cli("run", write_study(study), "--db", db, "--workers", "2")
    assert result.code == 1
    failed = rows(db, "SELECT error FROM runs WHERE status = 'failed'")
    assert len(failed) == 4 and all("FloatingPointError" in e for (e,) in failed)
    assert rows(db, "SELECT count(*) FROM runs WHERE status = 'finished'") == [(4,)]


def test_fail_fast_in_a_pool_leaves_no_run_marked_running(cli, write_study, db):
    study = TINY_STUDY.replace("batch_size = 32", 'batch_size = 32\noptimizer = "sgd"\nlr = 1e30')
    result = cli("run", write_study(study), "--db", db, "--workers", "2", "--fail-fast")
    assert result.code == 1 and "--fail-fast" in result.output
    assert rows(db, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
