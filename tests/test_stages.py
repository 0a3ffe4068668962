"""Two cached stages per run: training leaves stored predictions, metrics are measurements of
them. A new metric or k measures without retraining; changed data retrains; nothing is lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import duckdb
import numpy as np

from tests.conftest import TINY_STUDY, rows, study_toml
from xmodal import hookimpl, plugins
from xmodal.artifacts import ArtifactStore, artifacts_dir
from xmodal.components import MetricSpec, ResultRow
from xmodal.store import Store

EXTENDED = TINY_STUDY.replace("k = [1, 5, 10]", "k = [1, 5, 10, 20]") + (
    '\n[[metric]]\nname = "cka"\n'
)


def plan_actions(cli, study: Path, db: Path) -> list[tuple[str, str]]:
    result = cli("plan", study, "--db", db, "--json")
    assert result.code == 0, result.output
    return sorted((r["action"], r["status"]) for r in json.loads(result.out))


def current_results(db: Path) -> list[tuple]:
    return rows(
        db,
        "SELECT run_id, result_split, metric, comparison, k, similarity, value "
        "FROM study_results ORDER BY ALL",
    )


def test_a_new_metric_and_k_measure_stored_predictions_without_retraining(
    cli, write_study, db, tmp_path
):
    cli("run", write_study(), "--db", db)
    trained_at = rows(db, "SELECT run_id, finished_at, artifact FROM runs ORDER BY run_id")
    extended = write_study(EXTENDED, "extended.toml")

    assert plan_actions(cli, extended, db) == [("measure", "finished")] * 8
    result = cli("run", extended, "--db", db)
    assert result.code == 0 and ": 8 measured, 0 failed in " in result.output
    assert rows(db, "SELECT run_id, finished_at, artifact FROM runs ORDER BY run_id") == trained_at
    assert plan_actions(cli, extended, db) == [("cached", "finished")] * 8

    scratch = tmp_path / "scratch.duckdb"
    assert cli("run", extended, "--db", scratch).code == 0
    assert current_results(db) == current_results(scratch)
    # The current version shows each (metric, k) once: the earlier k list's rows stay in
    # `results` but not in `study_results`.
    assert rows(db, "SELECT count(*) FROM study_results WHERE metric = 'mnno' AND k = 10") == [
        (8 * 3,)
    ]
    assert rows(db, "SELECT count(DISTINCT measurement_id) FROM results") == [(8 + 16,)]


def test_going_back_to_an_earlier_metric_list_is_cached(cli, write_study, db):
    base = write_study()
    cli("run", base, "--db", db)
    cli("run", write_study(EXTENDED, "extended.toml"), "--db", db)
    assert plan_actions(cli, base, db) == [("cached", "finished")] * 8
    assert ": 8 cached, 0 failed in " in cli("run", base, "--db", db).output
    # Running it made the earlier version current again: its views show its metrics only.
    assert rows(db, "SELECT count(*) FROM study_results WHERE metric = 'cka'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM study_results WHERE metric = 'mnno'") == [(8 * 3 * 3,)]


def test_a_metric_that_fails_keeps_the_training_and_is_measured_again_next_time(
    cli, write_study, db
):
    calls = {"fail": True}

    def compute(probe, params):
        if calls["fail"]:
            raise RuntimeError("flaky metric")
        yield ResultRow(split="test", metric="flaky", comparison="pred-input", value=0.5)

    @hookimpl
    def register_metrics(register):
        register(MetricSpec("flaky", compute))

    plugin = types.SimpleNamespace(register_metrics=register_metrics)
    plugins.reset(plugins.load_manager(extra=[("flaky-metric", plugin)]))
    study = write_study(TINY_STUDY + '\n[[metric]]\nname = "flaky"\n')
    result = cli("run", study, "--db", db)
    assert result.code == 1 and "metric 'flaky': RuntimeError: flaky metric" in result.output
    assert rows(db, "SELECT DISTINCT status FROM runs") == [("finished",)]
    assert rows(db, "SELECT status, count(*) FROM measurements GROUP BY ALL ORDER BY 1") == [
        ("failed", 8),
        ("finished", 8),
    ]
    ((_, _, planned, finished, failed, running, pending, _),) = Store(db).study_status()
    assert (planned, finished, failed, running, pending) == (8, 0, 8, 0, 0)

    calls["fail"] = False
    assert plan_actions(cli, study, db) == [("measure", "finished")] * 8
    result = cli("run", study, "--db", db)
    assert result.code == 0 and ": 8 measured, 0 failed in " in result.output
    assert rows(db, "SELECT count(*) FROM study_results WHERE metric = 'flaky'") == [(8,)]


def test_a_run_whose_predictions_were_removed_trains_again_for_a_new_metric(cli, write_study, db):
    cli("run", write_study(), "--db", db)
    digests = sorted(d for (d,) in rows(db, "SELECT artifact FROM runs") if d)
    os.remove(ArtifactStore(db).path(digests[0]))
    extended = write_study(EXTENDED, "extended.toml")
    actions = plan_actions(cli, extended, db)
    assert actions.count(("train", "finished")) == 1 and actions.count(("measure", "finished")) == 7
    assert cli("run", extended, "--db", db).code == 0
    assert ArtifactStore(db).has(digests[0])  # the same predictions again: same content, same name


def test_a_corrupted_artifact_is_refused_and_its_run_retrained(cli, write_study, db):
    cli("run", write_study(), "--db", db)
    (digest,) = rows(db, "SELECT artifact FROM runs WHERE artifact IS NOT NULL LIMIT 1")[0]
    path = ArtifactStore(db).path(digest)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    next(iter(arrays.values()))[0, 0] += 1.0
    np.savez(path, **arrays)
    extended = write_study(EXTENDED, "extended.toml")
    result = cli("run", extended, "--db", db)
    assert result.code == 1 and "does not match its digest" in result.output
    assert "Traceback" not in result.output
    actions = plan_actions(cli, extended, db)
    assert actions.count(("train", "finished")) == 1 and actions.count(("cached", "finished")) == 7
    assert cli("run", extended, "--db", db).code == 0
    assert plan_actions(cli, extended, db) == [("cached", "finished")] * 8


def test_gc_removes_only_what_no_study_version_refers_to(cli, write_study, db):
    cli("run", write_study(), "--db", db)
    store = ArtifactStore(db)
    kept = set(store.digests())
    assert len(kept) == 8  # every trained and untrained run stores its predictions
    stray = store.root / "ab" / ("ab" + "0" * 30 + ".npz")
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"orphan")
    (store.root / "ab" / ".tmp-half-written.npz").write_bytes(b"half")

    dry = cli("gc", "--db", db, "--dry-run")
    assert "would remove 1 unreferenced artifact(s) and 1 temporary file(s)" in dry.output
    assert stray.exists()
    done = cli("gc", "--db", db)
    assert done.code == 0 and "removed 1 unreferenced artifact(s)" in done.output
    assert set(store.digests()) == kept and not stray.exists()


def test_artifacts_live_beside_the_database_whatever_its_spelling(tmp_path):
    db = tmp_path / "real.duckdb"
    link = tmp_path / "link.duckdb"
    link.symlink_to(db)
    assert artifacts_dir(link) == artifacts_dir(db) == tmp_path / "real.duckdb.artifacts"


def files_study(text: Path, image: Path) -> str:
    """TINY_STUDY on the `files` dataset reading these two feature files: one direction, a
    linear mapping trained for 2 epochs, mNNO at k = 5."""
    return study_toml(
        study={"name": "files"},
        data={"dataset": "files", "directions": "forward", "split_strategy": "random",
              "params": {"features": [f"text={text}", f"image={image}"]}},
        mapping=[{"name": "linear"}],
        train={"epochs": 2, "batch_size": None},
        metric=[{"name": "mnno", "k": [5]}],
    )  # fmt: skip


def test_replacing_a_feature_file_retrains_and_keeps_both_versions_apart(
    cli, write_study, db, tmp_path
):
    rng = np.random.default_rng(0)
    text, image = tmp_path / "text.npy", tmp_path / "image.npy"
    np.save(text, rng.standard_normal((120, 8)).astype(np.float32))
    np.save(image, rng.standard_normal((120, 12)).astype(np.float32))
    study = write_study(files_study(text, image))
    assert cli("run", study, "--db", db).code == 0
    first = rows(db, "SELECT DISTINCT data_fingerprint FROM runs")

    np.save(text, rng.standard_normal((120, 8)).astype(np.float32))  # same path, new content
    actions = plan_actions(cli, study, db)
    assert {a for a, _ in actions} == {"train"} and {s for _, s in actions} == {"new"}
    assert cli("run", study, "--db", db).code == 0
    fingerprints = rows(db, "SELECT data_fingerprint, count(*) FROM runs GROUP BY ALL ORDER BY 1")
    assert len(fingerprints) == 2 and first[0][0] in {f for f, _ in fingerprints}
    # Both versions' numbers stay queryable, told apart by fingerprint.
    per_version = rows(
        db,
        "SELECT r.data_fingerprint, count(*) FROM results x JOIN runs r USING (run_id) "
        "GROUP BY ALL",
    )
    assert len(per_version) == 2 and all(n > 0 for _, n in per_version)


# Twenty-four runs whose measurements take a moment (a 1,600-item probe split).
KILL_BASE = (
    TINY_STUDY.replace("n_items = 240", "n_items = 2000")
    .replace("seeds = [0]", "seeds = [0, 1, 2]")
    .replace("epochs = 3", "epochs = 1")
    .replace("[[metric]]", '[measure]\nsplits = ["train", "test"]\n\n[[metric]]')
)
KILL_EXTENDED = KILL_BASE.replace("k = [1, 5, 10]", "k = [1, 5, 10, 50]") + (
    '\n[[metric]]\nname = "knn_jaccard"\nk = [50]\n'
)


def test_kill_9_during_measuring_loses_duplicates_and_redoes_nothing(
    cli, write_study, db, tmp_path
):
    base = write_study(KILL_BASE)
    extended = write_study(KILL_EXTENDED, "extended.toml")
    assert cli("run", base, "--db", db).code == 0
    trained = rows(db, "SELECT run_id, finished_at FROM runs ORDER BY run_id")
    owed = len(trained) * 3

    def measured() -> int:
        try:
            with duckdb.connect(str(db), read_only=True) as con:
                sql = "SELECT count(*) FROM measurements WHERE metric = 'knn_jaccard'"
                return con.execute(sql).fetchone()[0]
        except duckdb.Error:  # the runner is writing at this moment
            return -1

    rng = random.Random(7)
    cut_short = 0
    for _ in range(3):
        before = max(measured(), 0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "xmodal", "run", str(extended), "--db", str(db)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Kill it once it has recorded some measurements of this session, mid-way.
        deadline = time.monotonic() + 120
        while proc.poll() is None and measured() <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.random() * 0.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        cut_short += measured() < len(trained)
    assert cut_short, "no kill landed during the measurements"
    made = set(rows(db, "SELECT measurement_id, measured_at FROM measurements"))
    assert cli("run", extended, "--db", db).code == 0
    # Nothing made before the kills was made again.
    assert made <= set(rows(db, "SELECT measurement_id, measured_at FROM measurements"))

    assert rows(db, "SELECT run_id, finished_at FROM runs ORDER BY run_id") == trained
    assert rows(db, "SELECT count(*) FROM measurements WHERE status = 'finished'")[0][0] >= owed
    duplicates = rows(
        db,
        "SELECT count(*) FROM (SELECT measurement_id, split, metric, comparison, k, similarity "
        "FROM results GROUP BY ALL HAVING count(*) > 1)",
    )
    assert duplicates == [(0,)]
    scratch = tmp_path / "scratch.duckdb"
    assert cli("run", extended, "--db", scratch).code == 0
    assert current_results(db) == current_results(scratch)


def test_a_database_from_before_measurements_migrates_and_keeps_its_results(cli, write_study, db):
    from xmodal.store import MIGRATIONS

    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
        )
        for version, sql in enumerate(MIGRATIONS[:3], start=1):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
        con.execute("INSERT INTO studies VALUES ('legacy', 'h1', 'old.toml', '', now())")
        con.execute("INSERT INTO study_runs VALUES ('legacy', 'h1', 'r1', 0)")
        con.execute(
            "INSERT INTO runs (run_id, study, dataset, mapping, state, seed, status) "
            "VALUES ('r1', 'legacy', 'synthetic', 'linear', 'trained', 0, 'finished')"
        )
        con.execute(
            "INSERT INTO results VALUES ('r1', 'test', 'mnno', 'pred-input', 10, 'cosine', NULL, 0.5)"
        )
    assert cli("run", write_study(), "--db", db).code == 0
    assert rows(db, "SELECT max(version) FROM schema_migrations") == [(len(MIGRATIONS),)]
    assert rows(db, "SELECT run_id, value FROM study_results WHERE study = 'legacy'") == [
        ("r1", 0.5)
    ]
    assert rows(db, "SELECT count(*) FROM paper_table1 WHERE study = 'legacy'") == [(1,)]


def test_too_little_disk_for_the_predictions_stops_before_the_first_run(
    cli, write_study, db, monkeypatch
):
    monkeypatch.setattr("xmodal.spool.free_bytes", lambda path: 1024)
    result = cli("run", write_study(), "--db", db)
    assert result.code == 1 and "Traceback" not in result.output
    assert "1.0 KB free on its disk, the run's predictions may need" in result.output
    assert rows(db, "SELECT count(*) FROM runs") == [(0,)]


def test_status_of_a_study_that_plans_no_runs_counts_nothing_pending(db):
    store = Store(db)
    store.record_study("empty", "h0", "empty.toml", "", [])
    ((name, _, planned, finished, failed, running, pending, _),) = store.study_status()
    assert (name, planned, finished, failed, running, pending) == ("empty", 0, 0, 0, 0, 0)
