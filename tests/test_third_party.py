"""Issue 12's "Done when": a third-party plugin written from docs/plugins.md alone works.

tests/third_party/xmodal_npydir is that plugin: a dataset reading a directory of .npy files, a
residual MLP mapping, an MSE + cosine loss, debiased-CKA and Procrustes metrics and a command,
importing only public `from xmodal import ...` names. It runs a study through `xmodal.testing`
(registered in-process) and installed as a package (an `xmodal` entry point, as pip would), with
the real command line, and `xmodal plugins` lists it.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import xmodal
from tests.conftest import REPO, install, rows
from xmodal.testing import XmodalTester, to_toml

PACKAGE = REPO / "tests" / "third_party" / "xmodal_npydir"
N_ITEMS, DIM = 60, 6


def npy_directory(directory: Path) -> Path:
    """words (N x 6), pixels = words rotated (an orthogonal matrix), ids and a split."""
    rng = np.random.default_rng(0)
    words = rng.standard_normal((N_ITEMS, DIM))
    rotation, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    directory.mkdir()
    np.save(directory / "words.npy", words.astype(np.float32))
    np.save(directory / "pixels.npy", (words @ rotation).astype(np.float32))
    (directory / "ids.txt").write_text("\n".join(f"w{i}" for i in range(N_ITEMS)) + "\n")
    marks = ["test" if i % 4 == 0 else "train" for i in range(N_ITEMS)]
    (directory / "split.txt").write_text("\n".join(marks) + "\n")
    return directory


def study(directory: Path) -> str:
    return to_toml({
        "study": {"name": "npydir"},
        "data": {"dataset": "npydir", "pairs": [["words", "pixels"]], "directions": "forward",
                 "params": {"path": str(directory)}},
        "mapping": [{"name": "resmlp", "hidden": 16, "blocks": [0, 2]}],
        "loss": [{"name": "mse_cosine", "weight": 0.3}],
        "train": {"epochs": 3, "batch_size": 16},
        "metric": [{"name": "dcka"}, {"name": "procrustes"}],
    })  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return npy_directory(tmp_path / "npy")


@pytest.fixture(autouse=True)
def fresh_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "xmodal_npydir", raising=False)


def check_results(result_rows: list[dict]) -> None:
    by = {(r["metric"], r["state"], r["depth"], r["comparison"]): r["value"] for r in result_rows}
    assert {m for m, *_ in by} == {"dcka", "procrustes"}
    assert {d for _, _, d, _ in by} == {1, 3}  # depth = blocks + 1, from MappingSpec.depth
    for state in ("trained", "untrained"):
        # pixels are a rotation of words: Procrustes finds it, CKA is invariant to it.
        assert by[("procrustes", state, 1, "input-target")] == pytest.approx(0.0, abs=1e-5)
        assert by[("dcka", state, 1, "input-target")] == pytest.approx(1.0, abs=1e-5)
    assert all(-1 <= v <= 1 for (m, *_), v in by.items() if m == "dcka")
    assert all(0 <= v <= 1 for (m, *_), v in by.items() if m == "procrustes")


def test_the_plugin_uses_only_public_names_of_xmodal():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("xmodal.") for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xmodal"):
            assert node.module == "xmodal", f"imports from {node.module}"
            assert {a.name for a in node.names} <= set(xmodal.__all__)


def test_the_plugin_runs_a_study_in_process(xmodal_tester: XmodalTester, data: Path):
    assert xmodal_tester.register(PACKAGE) == "xmodal_npydir"
    result = xmodal_tester.run(study(data))
    result.assert_ok()
    runs = result.runs()
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}
    assert {r["loss"] for r in runs if r["state"] == "trained"} == {"mse_cosine"}
    assert {(r["n_train"], r["n_test"]) for r in runs} == {(45, 15)}  # split.txt
    check_results(result.results())
    report = xmodal_tester.cli("report", "npydir", "--db", xmodal_tester.db, "--out", data / "r")
    report.assert_ok()
    markdown = (data / "r" / "report.md").read_text()
    assert "dcka" in markdown and "procrustes" in markdown and "resmlp" in markdown


def test_the_plugins_command_and_datasets_show_it(xmodal_tester: XmodalTester, data: Path):
    xmodal_tester.register(PACKAGE)
    listing = json.loads(xmodal_tester.cli("plugins", "--json").assert_ok().out)
    assert listing["xmodal_npydir"] == {
        **{kind: [] for kind in listing["xmodal_npydir"]},
        "datasets": ["npydir"],
        "mappings": ["resmlp"],
        "losses": ["mse_cosine"],
        "metrics": ["dcka", "procrustes"],
    }
    shown = xmodal_tester.cli("npydir-show", data).assert_ok().out
    assert f"words: {N_ITEMS} items x {DIM} dims" in shown
    table = xmodal_tester.cli("datasets", "--json").assert_ok().out
    assert "npydir" in table


def test_its_checks_and_errors_reach_the_user(xmodal_tester: XmodalTester, data: Path, tmp_path):
    xmodal_tester.register(PACKAGE)
    missing = xmodal_tester.validate(study(tmp_path / "nowhere"))
    assert missing.code == 2 and "is not a directory" in missing.output
    assert "Traceback" not in missing.output
    (data / "split.txt").write_text("train\n" * (N_ITEMS - 1))  # one mark short
    short = xmodal_tester.validate(study(data))
    assert short.code == 2 and f"split_marks has shape ({N_ITEMS - 1},)" in short.output


def test_installed_as_a_package_it_runs_through_the_cli(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: Path, write_study
):
    """As pip would install it: the package, and a dist-info declaring the entry point."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "xmodal_npydir")
    install(site, monkeypatch, "xmodal-npydir", {"npydir": "xmodal_npydir"})

    listing = json.loads(cli("plugins", "--json").out)
    assert listing["npydir"]["metrics"] == ["dcka", "procrustes"]
    db = tmp_path / "results.duckdb"
    result = cli("run", write_study(study(data)), "--db", db)
    assert result.code == 0, result.output
    assert rows(db, "SELECT count(*) FROM runs WHERE status = 'finished'") == [(4,)]
    columns = ["metric", "state", "depth", "comparison", "value"]
    found = rows(db, f"SELECT {', '.join(columns)} FROM study_results")
    check_results([dict(zip(columns, row, strict=True)) for row in found])
