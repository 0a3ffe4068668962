"""Executors: a process pool and Ray give the same runs and the same numbers as running in-process;
a pool leaves no process or temporary data behind however the study ends; Ray problems are
reported before anything is written."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from tests.conftest import TINY_STUDY, rows
from xmodal.errors import XmodalError
from xmodal.executors import (
    make_temp_dir,
    parse_ray_address,
    remove_stale_temp_dirs,
    require_executor,
)

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


# -- a process pool cleans up on every exit path ------------------------------------------------

# The tiny study with runs long enough (seconds each) to be caught in flight.
SLOW_STUDY = TINY_STUDY.replace("epochs = 3", "epochs = 300").replace(
    "seeds = [0]", "seeds = [0, 1, 2]"
)
DIVERGING = TINY_STUDY.replace("batch_size = 32", 'batch_size = 32\noptimizer = "sgd"\nlr = 1e30')


def pool_dirs(tmp: Path) -> list[str]:
    """The process pools' exported-data directories in `tmp` (torch adds others of its own)."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("xmodal-"))


@pytest.fixture
def tmpdir_for_pools(tmp_path, monkeypatch) -> Path:
    """An empty temporary directory that this process (and its children) use as $TMPDIR."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_a_pool_removes_its_data_and_that_of_pools_whose_driver_died(
    cli, write_study, db, tmpdir_for_pools
):
    left = tmpdir_for_pools / f"xmodal-{dead_pid()}-left"  # as a `kill -9`ed driver leaves it
    left.mkdir()
    (left / "features.npy").write_bytes(b"x" * 1000)
    assert cli("run", write_study(), "--db", db, "-j", "2").code == 0
    assert pool_dirs(tmpdir_for_pools) == []


def test_a_pool_removes_its_data_when_the_study_stops_on_an_error(
    cli, write_study, db, tmpdir_for_pools
):
    result = cli("run", write_study(DIVERGING), "--db", db, "-j", "2", "--fail-fast")
    assert result.code == 1 and "--fail-fast" in result.output
    assert pool_dirs(tmpdir_for_pools) == []


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times from /proc")
def test_stale_pool_data_is_recognised_by_its_owner_being_dead(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_dir = tmp_path / f"xmodal-{dead_pid()}-a"
        live_dir = tmp_path / f"xmodal-{live.pid}-b"
        mine = make_temp_dir(tmp_path)
        reused = tmp_path / f"xmodal-{live.pid}-c"  # the pid now belongs to another process
        unrelated = tmp_path / "xmodal-cache"
        for d in (dead_dir, live_dir, reused, unrelated):
            d.mkdir()
        (reused / "owner.json").write_text(json.dumps({"pid": live.pid, "start": "1"}))
        removed = remove_stale_temp_dirs(tmp_path)
        assert sorted(removed) == sorted([dead_dir, reused])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [live_dir.name, mine.name, unrelated.name]
        )
    finally:
        live.kill()
        live.wait()


def test_stale_pool_data_of_another_host_is_left_alone(tmp_path):
    other = tmp_path / f"xmodal-{dead_pid()}-a"
    other.mkdir()
    (other / "owner.json").write_text(json.dumps({"pid": 1, "host": "some-other-machine"}))
    assert remove_stale_temp_dirs(tmp_path) == [] and other.exists()


class PooledRun:
    """`xmodal run -j 2` (or OPTIONS) of SLOW_STUDY in a subprocess of its own session (like a terminal)."""

    def __init__(self, tmp_path: Path, *options: str, tmp: Path | None = None) -> None:
        self.tmp = tmp or tmp_path / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.db = tmp_path / "results.duckdb"
        study = tmp_path / "slow.toml"
        study.write_text(SLOW_STUDY)
        env = {**os.environ, "TMPDIR": str(self.tmp), "COLUMNS": "200"}
        command = [
            sys.executable,
            "-m",
            "xmodal",
            "run",
            str(study),
            "--db",
            str(self.db),
            *(options or ("-j", "2")),
        ]
        self.stderr = tmp_path / "stderr.txt"
        with open(self.stderr, "w") as err:
            self.process = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )

    def err(self) -> str:
        return self.stderr.read_text()

    def statuses(self) -> dict[str, int]:
        """Runs per status, read while the study runs (empty while the runner holds the file)."""
        if not self.db.exists():
            return {}
        try:
            with duckdb.connect(str(self.db), read_only=True) as con:
                return dict(con.execute("SELECT status, count(*) FROM runs GROUP BY 1").fetchall())
        except duckdb.Error:
            return {}

    def wait_for(self, condition: Callable[[dict[str, int]], bool], limit: float = 600) -> None:
        deadline = time.monotonic() + limit
        while not condition(self.statuses()):
            assert self.process.poll() is None, self.err()
            assert time.monotonic() < deadline, "the study never got there"
            time.sleep(0.3)

    def workers(self) -> list[int]:
        """The pool's worker processes (children of the driver started by multiprocessing)."""
        found = []
        for pid in children(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in command:
                found.append(pid)
        return found

    def wait_for_workers(self, count: int = 2, limit: float = 600) -> list[int]:
        deadline = time.monotonic() + limit
        while len(self.workers()) < count:
            assert self.process.poll() is None, self.err()
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        return self.workers()

    def finish(self) -> tuple[int, str]:
        self.process.wait(timeout=300)
        return self.process.returncode, self.err()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone(pids: list[int], limit: float = 30.0) -> bool:
    """True once none of `pids` runs; False if some still run after `limit` seconds."""
    deadline = time.monotonic() + limit
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def slow_study(tmp_path) -> Iterator[PooledRun]:
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds worker processes through /proc")
    study = PooledRun(tmp_path)
    yield study
    study.kill()


def test_ctrl_c_stops_the_workers_quietly_and_removes_the_pool_data(slow_study):
    slow_study.wait_for(lambda s: s.get("running", 0) >= 1)
    workers = slow_study.workers()
    assert pool_dirs(slow_study.tmp) != []
    os.killpg(slow_study.process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    code, err = slow_study.finish()
    assert code == 130 and "interrupted" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert gone(workers)
    assert pool_dirs(slow_study.tmp) == []
    assert "running" not in slow_study.statuses()


def test_ctrl_c_while_the_workers_start_up_prints_no_traceback(slow_study):
    workers = slow_study.wait_for_workers()  # they now import torch and attach the data
    os.killpg(slow_study.process.pid, signal.SIGINT)
    code, err = slow_study.finish()
    assert code in (1, 130), err  # 1: Ctrl-C came before the run loop, where nothing needs undoing
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert gone(workers)
    assert pool_dirs(slow_study.tmp) == []


def test_sigterm_is_handled_like_ctrl_c(slow_study):
    slow_study.wait_for(lambda s: s.get("finished", 0) >= 1 and s.get("running", 0) >= 1)
    workers = slow_study.workers()
    os.kill(slow_study.process.pid, signal.SIGTERM)  # the driver only, as `kill PID` does
    code, err = slow_study.finish()
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    after = slow_study.statuses()
    assert "running" not in after and after.get("finished", 0) >= 1, err
    assert gone(workers)
    assert pool_dirs(slow_study.tmp) == []


def test_workers_exit_and_remove_the_pool_data_when_the_driver_is_killed(slow_study):
    slow_study.wait_for(lambda s: s.get("running", 0) >= 1)
    workers = slow_study.workers()
    assert len(workers) == 2
    os.kill(slow_study.process.pid, signal.SIGKILL)  # no cleanup code runs in the driver
    slow_study.process.wait()
    assert gone(workers), "workers outlived their driver"
    assert pool_dirs(slow_study.tmp) == []


def test_ctrl_c_while_ray_starts_stops_cleanly(tmp_path):
    pytest.importorskip("ray")
    # Ray's socket paths live under $TMPDIR and must stay short (a Unix socket path has ~107 bytes)
    short = Path(tempfile.mkdtemp(prefix="xr-", dir="/tmp"))
    study = PooledRun(tmp_path, "--executor", "ray", "--workers", "2", tmp=short)
    try:
        deadline = time.monotonic() + 600
        while "Started a local Ray instance" not in study.err():
            assert study.process.poll() is None, study.err()
            assert time.monotonic() < deadline, "Ray never started"
            time.sleep(0.02)
        # ray.init is ending, the data goes to the object store: a KeyboardInterrupt there left
        # Ray half set up, and the driver crashed (SIGSEGV) shutting it down
        os.killpg(study.process.pid, signal.SIGINT)
        code, err = study.finish()
        assert code in (1, 130), err  # not a crash (-11, SIGSEGV)
        assert "Traceback" not in err
        assert "running" not in study.statuses()
    finally:
        study.kill()
        shutil.rmtree(short, ignore_errors=True)


# -- checks before anything is written -----------------------------------------------------------


def test_missing_ray_is_reported_before_the_database_is_touched(cli, write_study, db, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    result = cli("run", write_study(), "--db", db, "--executor", "ray")
    assert result.code == 1
    assert "needs Ray" in result.output
    assert "pip install -c constraints.txt 'xmodal[ray]'" in result.output
    assert "Traceback" not in result.output
    assert not db.exists()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_ray_address_fails_at_once_naming_it(cli, write_study, db):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{closed_port()}"
    result = cli("run", write_study(), "--db", db, "--executor", "ray", "--address", address)
    assert result.code == 1
    assert f"cannot reach the Ray cluster at {address}" in result.output
    assert "Traceback" not in result.output and not db.exists()


def test_an_address_that_is_not_a_ray_cluster_fails_at_once(cli, write_study, db):
    pytest.importorskip("ray")
    with socket.socket() as server:  # accepts connections but never speaks
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        result = cli("run", write_study(), "--db", db, "--executor", "ray", "--address", address)
    assert result.code == 1 and address in result.output and "did not answer" in result.output
    assert not db.exists()


def test_an_address_that_answers_but_not_as_ray_is_named_as_such(cli, write_study, db):
    pytest.importorskip("ray")
    with socket.socket() as server:  # e.g. the dashboard's HTTP port given by mistake
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.recv(100)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        result = cli("run", write_study(), "--db", db, "--executor", "ray", "--address", address)
        thread.join(10)
    assert result.code == 1 and f"{address} is not a Ray cluster" in result.output
    assert not db.exists()


def test_the_address_comes_from_the_environment_too(cli, write_study, db, monkeypatch):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("XMODAL_RAY_ADDRESS", address)
    result = cli("run", write_study(), "--db", db, "--executor", "ray")
    assert result.code == 1 and f"cannot reach the Ray cluster at {address}" in result.output


def test_a_ray_client_address_without_the_client_extra_says_what_to_install(cli, write_study, db):
    pytest.importorskip("ray")
    if importlib.util.find_spec("grpc") is not None:
        pytest.skip("Ray Client's dependencies are installed here")
    result = cli(
        "run", write_study(), "--db", db, "--executor", "ray", "--address", "ray://head:10001"
    )
    assert result.code == 1 and "Traceback" not in result.output
    assert "ray[client]" in result.output and "pip install -c constraints.txt" in result.output
    assert not db.exists()


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("head:6379", ("", "head", 6379)),
        ("10.0.0.5", ("", "10.0.0.5", 6379)),
        ("ray://head", ("ray", "head", 10001)),
        ("ray://head:12345", ("ray", "head", 12345)),
        ("[::1]:6380", ("", "::1", 6380)),
        ("auto", None),
        ("local", None),
    ],
)
def test_ray_addresses(address, parsed):
    assert parse_ray_address(address) == parsed


@pytest.mark.parametrize("address", ["http://head:8265", "head:port", ":6379"])
def test_malformed_ray_addresses_are_clear_errors(address):
    with pytest.raises(XmodalError, match="Ray address"):
        parse_ray_address(address)


def test_local_executors_need_no_checks():
    for name in ("local", "process"):
        require_executor(name, None)
    with pytest.raises(XmodalError, match="not one of local, process, ray"):
        require_executor("slurm")
