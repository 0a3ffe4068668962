"""A failing run is recorded and the study goes on; Ctrl-C keeps finished runs and nothing half-written."""

from __future__ import annotations

import numpy as np
import torch

from tests.conftest import TINY_STUDY, rows, use
from xmodal import hookimpl
from xmodal.components import DatasetSpec, MappingSpec
from xmodal.data import PairedData
from xmodal.params import Param


def use_flaky_mapping(error: type[BaseException], *args: object) -> None:
    """Register mapping `flaky`: a linear map, but building it raises `error(*args)` when its
    parameter `fail` is true."""

    def build(i, o, params):
        if params["fail"]:
            raise error(*args)
        return torch.nn.Linear(i, o)

    spec = MappingSpec("flaky", build, {"fail": Param(bool, default=False)})
    use("flaky-plugin", register_mappings=hookimpl(lambda register: register(spec)))


STUDY = (
    TINY_STUDY.replace(
        '[[mapping]]\nname = "linear"', '[[mapping]]\nname = "flaky"\nfail = [false, true]'
    )
    .replace('[[mapping]]\nname = "mlp"\ndepth = 2\nhidden = 32\n', "")
    .replace('directions = ["forward", "backward"]', 'directions = "forward"')
)


def test_a_failed_run_is_recorded_with_its_error_and_the_study_goes_on(cli, write_study, db):
    use_flaky_mapping(RuntimeError, "boom: this mapping cannot be built")
    result = cli("run", write_study(STUDY), "--db", db)
    assert result.code == 1
    assert "2 ran" in result.output and "2 failed" in result.output
    failed = rows(db, "SELECT error FROM runs WHERE status = 'failed'")
    assert len(failed) == 2 and all("boom" in e for (e,) in failed)
    assert rows(
        db, "SELECT count(*) FROM results r JOIN runs USING (run_id) WHERE status = 'failed'"
    ) == [(0,)]


def test_fail_fast_stops_at_the_first_failure(cli, write_study, db):
    use_flaky_mapping(RuntimeError, "boom")
    result = cli("run", write_study(STUDY), "--db", db, "--fail-fast")
    assert result.code == 1 and "--fail-fast" in result.output
    assert rows(db, "SELECT count(*) FROM runs WHERE status = 'failed'") == [(1,)]


def test_ctrl_c_keeps_finished_runs_and_leaves_no_trace_of_the_interrupted_one(
    cli, write_study, db
):
    use_flaky_mapping(KeyboardInterrupt)
    result = cli("run", write_study(STUDY), "--db", db)
    assert result.code == 130
    assert "interrupted" in result.output and "Traceback" not in result.output
    statuses = rows(db, "SELECT status, count(*) FROM runs GROUP BY ALL")
    assert statuses == [("finished", 2)]
    assert rows(db, "SELECT count(DISTINCT run_id) FROM results") == [(2,)]


def test_all_zero_rows_under_cosine_are_refused_before_anything_runs(cli, write_study, db):
    """Zero vectors have no cosine neighbours: validate names their items and rows up front."""

    def load(params):
        text = np.zeros((40, 4), dtype=np.float32)
        image = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
        return PairedData(
            ids=tuple(map(str, range(40))),
            features={"text": text, "image": image},
            split=np.array(["train", "test"] * 20),
        )

    spec = DatasetSpec("zeros", load, lambda params: ["text", "image"])
    use("zeros-plugin", register_datasets=hookimpl(lambda register: register(spec)))
    study = TINY_STUDY.replace('dataset = "synthetic"', 'dataset = "zeros"').replace(
        "[data.params]\nn_items = 240\ndim_text = 16\ndim_image = 24\n", ""
    )
    path = write_study(study)
    for command in (("validate", path), ("run", path, "--db", db)):
        result = cli(*command)
        assert result.code == 2 and "Traceback" not in result.output
        assert "feature set 'text': 40 all-zero row(s)" in result.output
        assert "'0' (row 0), '1' (row 1)" in result.output and "and 35 more" in result.output
    assert not db.exists()
