"""examples/quickstart.ipynb runs, so it cannot rot: executed in a Jupyter kernel of this
interpreter on a smaller variant of the quickstart study, it must draw the depth figure inline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the `test` extra installs nbformat")
nbclient = pytest.importorskip("nbclient", reason="the `test` extra installs nbclient")
pytest.importorskip("ipykernel", reason="the `test` extra installs ipykernel")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
KERNEL = "xmodal-test-python"

# The quickstart with one seed, fewer items and epochs: the same 12 run kinds × mappings ×
# directions per seed and the same depths, in a fraction of the time.
SMALLER = (
    ("seeds = [0, 1]", "seeds = [0]"),
    ("n_items = 1000", "n_items = 300"),
    ("epochs = 25", "epochs = 3"),
)


def smaller_quickstart(directory: Path) -> Path:
    text = (REPO / "studies" / "quickstart.toml").read_text(encoding="utf-8")
    for old, new in SMALLER:
        assert old in text, f"studies/quickstart.toml changed: update SMALLER ({old!r})"
        text = text.replace(old, new)
    path = directory / "quickstart-small.toml"
    path.write_text(text, encoding="utf-8")
    return path


def this_interpreter_kernel(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernelspec that starts ipykernel with this Python, first on JUPYTER_PATH."""
    spec = directory / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(directory / "jupyter"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the inline backend draws the figure


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code), (
        "store examples/quickstart.ipynb without outputs (clear them before committing)"
    )
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "STUDY =" in tagged[0].source


def test_the_quickstart_notebook_runs_and_draws_the_depth_figure(tmp_path, monkeypatch):
    this_interpreter_kernel(tmp_path, monkeypatch)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    [parameters] = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = (
        f"from pathlib import Path\n\nSTUDY = Path({str(smaller_quickstart(tmp_path))!r})\n"
        f"WORKDIR = {str(tmp_path)!r}\nWORKERS = 1\n"
    )
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=600,  # per cell: a safety net on a loaded machine, not a speed requirement
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # a failing cell raises CellExecutionError with its traceback

    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no inline figure was drawn"
    shown = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "pred-target" in shown  # the table of mean mNNO@10 by comparison
    assert (tmp_path / "quickstart.duckdb").exists()  # the run went where the parameter said
