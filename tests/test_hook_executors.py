"""The `register_executors` hook: a plugin's executor runs a study like a built-in one, every
executor name comes from the registry (with "did you mean" for a typo), and an executor that
cannot run here stops the command before the results database is touched."""

from __future__ import annotations

import types
from typing import Any

import attrs
import pytest

from tests.conftest import TINY_STUDY, rows
from xmodal import ExecutorOptions, ExecutorSpec, hookimpl, plugins, run_job

RESULTS = "SELECT run_id, split, metric, comparison, k, value FROM results ORDER BY ALL"


class SerialExecutor:
    """Runs jobs one by one in this process, in reverse order, and remembers what it did."""

    def __init__(self, shared: Any, options: ExecutorOptions, log: dict[str, Any]) -> None:
        self.shared = shared
        self.log = log
        log["options"] = options

    def run(self, jobs, on_start):
        for job in reversed(jobs):  # any order is allowed
            on_start(job)
            self.log["started"].append(job.run_id)
            yield job, run_job(job, self.shared)

    def close(self) -> None:
        self.log["closed"] += 1


def executor_plugin(log: dict[str, Any], **spec: Any) -> types.SimpleNamespace:
    """An in-process plugin registering one executor (`serial` unless `name` is given)."""

    def make(shared: Any, options: ExecutorOptions) -> SerialExecutor:
        log["made"] += 1
        return SerialExecutor(shared, options, log)

    @hookimpl
    def register_executors(register):
        register(ExecutorSpec(**{"name": "serial", "make": make, **spec}))

    return types.SimpleNamespace(register_executors=register_executors)


@pytest.fixture
def log() -> dict[str, Any]:
    return {"made": 0, "closed": 0, "started": []}


def use(*extra: tuple[str, object]) -> None:
    """The installed plugins plus `extra`, registered in this process."""
    plugins.reset(plugins.load_manager(extra=list(extra)))


def test_a_plugin_executor_runs_a_study_end_to_end(cli, write_study, db, tmp_path, log):
    use(("serial_plugin", executor_plugin(log)))
    result = cli("run", write_study(), "--db", db, "--executor", "serial", "-j", "3")
    assert result.code == 0, result.output
    ran = rows(db, "SELECT run_id FROM runs WHERE status = 'finished' ORDER BY run_id")
    assert sorted(log["started"]) == [r for (r,) in ran] and len(ran) == 8
    assert log["made"] == 1 and log["closed"] == 1
    assert log["options"].workers == 3 and log["options"].address is None

    # The executor is not part of a run: the built-in default gives the same ids and numbers.
    reference = tmp_path / "reference.duckdb"
    assert cli("run", write_study(name="again.toml"), "--db", reference).code == 0
    assert rows(db, RESULTS) == rows(reference, RESULTS)


def test_the_study_file_can_name_a_plugin_executor(cli, write_study, db, log):
    use(("serial_plugin", executor_plugin(log)))
    study = TINY_STUDY + '\n[execution]\nexecutor = "serial"\n'
    assert cli("run", write_study(study), "--db", db).code == 0
    assert len(log["started"]) == 8


def test_a_session_that_only_measures_does_not_start_the_executor(cli, write_study, db, log):
    use(("serial_plugin", executor_plugin(log, shares_files=False)))
    assert cli("run", write_study(), "--db", db, "--executor", "serial").code == 0
    more = TINY_STUDY + '\n[[metric]]\nname = "regression"\n'
    result = cli("run", write_study(more), "--db", db, "--executor", "serial")
    assert result.code == 0, result.output
    assert "8 measured" in result.output
    assert rows(db, "SELECT count(*) FROM measurements WHERE metric = 'regression'") == [(8,)]
    assert log["made"] == 1  # the first session only


def test_an_unknown_executor_name_says_did_you_mean(cli, write_study, db, log):
    use(("serial_plugin", executor_plugin(log)))
    result = cli("run", write_study(), "--db", db, "--executor", "seral")
    assert result.code == 1 and "Traceback" not in result.output
    assert "'seral' is not one of local, process, ray, serial" in result.output
    assert "did you mean 'serial'?" in result.output
    assert not db.exists()


def test_an_unknown_executor_in_the_study_file_is_a_study_problem(cli, write_study, db):
    study = TINY_STUDY + '\n[execution]\nexecutor = "proces"\n'
    result = cli("run", write_study(study), "--db", db)
    assert result.code == 2 and "Traceback" not in result.output
    assert "execution.executor: 'proces' is not a registered executor" in result.output
    assert "allowed: local, process, ray" in result.output
    assert "did you mean 'process'?" in result.output
    assert not db.exists()


def test_an_executor_that_cannot_run_here_stops_before_the_database_is_touched(
    cli, write_study, db, log
):
    def available(options: ExecutorOptions) -> str | None:
        log["checked"] = options
        return "the serial executor needs a moon base: pip install -c constraints.txt moonbase"

    use(("serial_plugin", executor_plugin(log, available=available)))
    study = write_study(TINY_STUDY + '\n[execution]\nexecutor = "serial"\nworkers = 2\n')
    result = cli("run", study, "--db", db)
    assert result.code == 1 and "Traceback" not in result.output
    assert "needs a moon base: pip install -c constraints.txt moonbase" in result.output
    assert log["checked"].workers == 2 and log["made"] == 0
    assert not db.exists() and list(db.parent.glob("results.duckdb*")) == []


def test_an_availability_test_that_raises_is_named_not_a_traceback(cli, write_study, db, log):
    def available(options: ExecutorOptions) -> str | None:
        raise RuntimeError("boom")

    use(("serial_plugin", executor_plugin(log, available=available)))
    result = cli("run", write_study(), "--db", db, "--executor", "serial")
    assert result.code == 1 and "Traceback" not in result.output
    assert "the availability test of executor 'serial' raised RuntimeError: boom" in result.output
    assert not db.exists()


def test_a_plugin_cannot_replace_a_built_in_executor(log):
    use(("copycat", executor_plugin(log, name="local")))
    registry = plugins.get_registry(strict=False)
    assert registry.owners[("executors", "local")] == "xmodal.default_executors"
    (problem,) = registry.problems
    assert "both register an executor named 'local'; 'copycat''s is not used" in str(problem)


def test_check_means_one_thing_across_specs():
    """Every spec's `check` is a `check(params, context)` of parameters; an executor's test of
    whether it can run here is another thing, called `available(options)`."""
    shapes = {
        kind: str(field.type)
        for kind, (_, spec_class) in plugins.KINDS.items()
        for field in attrs.fields(spec_class)
        if field.name == "check"
    }
    assert shapes and all("CheckContext" in shape for shape in shapes.values()), shapes
    assert "executors" not in shapes
    assert "available" in attrs.fields_dict(ExecutorSpec)
    ray = plugins.get_registry().executors["ray"]
    assert ray.available is not None  # Ray's: installed? an address that answers?


def test_built_in_executors_load_whatever_the_plugin_filter(monkeypatch):
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", "")
    plugins.reset()
    registry = plugins.get_registry()
    assert list(registry.executors) == ["local", "process", "ray"]
    assert registry.plugins == []  # the default plugin is xmodal's own, not an installed one
    assert [n for n, s in registry.executors.items() if s.default] == ["local"]


def test_a_database_in_a_missing_directory_is_refused_before_anything_is_written(
    cli, write_study, tmp_path
):
    db = tmp_path / "nowhere" / "results.duckdb"
    result = cli("run", write_study(), "--db", db)
    assert result.code == 1 and "Traceback" not in result.output
    assert "is not a directory" in result.output and "--db" in result.output
    assert not db.parent.exists()


def test_run_study_itself_checks_before_the_database_is_touched(write_study, db, monkeypatch):
    """Not only the command line: any caller of the runner gets the checks before any write."""
    import sys

    from xmodal.errors import XmodalError
    from xmodal.planning import make_plan
    from xmodal.runner import run_study
    from xmodal.store import Store
    from xmodal.study import load_study
    from xmodal.studydata import StudyData

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    registry = plugins.get_registry()
    study = load_study(write_study(), registry)
    shared = StudyData(registry)
    runs = make_plan(study, registry, shared.fingerprint)
    with pytest.raises(XmodalError, match=r"pip install -c constraints\.txt 'xmodal\[ray\]'"):
        run_study(study, runs, Store(db), shared, executor="ray")
    with pytest.raises(XmodalError, match="did you mean 'local'"):
        run_study(study, runs, Store(db), shared, executor="locl")
    assert list(db.parent.glob("results.duckdb*")) == []
