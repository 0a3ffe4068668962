"""docs/plugins.md is tested: its example runs as written, and it documents every hook and field.

The example plugin, its study and its test file are code blocks titled with a file name
(```python title="xmodal_toy.py"```); they are extracted from the page, written to a directory
unchanged and run. Every hook in xmodal/hookspecs.py needs a docstring, a section under "## Hooks"
and a tests/test_hook_<name>.py; every field of a public spec class needs a `- `field`` line in
its section of the page's reference.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import xmodal
from tests.conftest import REPO
from tests.plugin_study import small_study
from xmodal import MetricSpec, Param, hookspecs
from xmodal.testing import XmodalTester

DOCS = REPO / "docs" / "plugins.md"
BLOCK = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```$', re.M | re.S)


def titled_blocks(markdown: str) -> dict[str, str]:
    """The page's code blocks that carry a file name: {file name: text}."""
    blocks: dict[str, str] = {}
    for _, title, text in BLOCK.findall(markdown):
        assert title not in blocks, f"two code blocks titled {title!r}"
        blocks[title] = text
    return blocks


def section(markdown: str, heading: re.Pattern[str]) -> str:
    """The text under the first heading matching `heading`, up to the next heading of the same
    or a higher level."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"(#+) ", line)
        if match and heading.search(line):
            level = len(match.group(1))
            end = next(
                (
                    j
                    for j in range(i + 1, len(lines))
                    if (m := re.match(r"(#+) ", lines[j])) and len(m.group(1)) <= level
                ),
                len(lines),
            )
            return "\n".join(lines[i + 1 : end])
    return ""


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page's titled blocks, written as files into a fresh directory."""
    blocks = titled_blocks(DOCS.read_text())
    assert {"xmodal_toy.py", "toy-study.toml", "test_toy.py"} <= set(blocks)
    directory = tmp_path / "example"
    directory.mkdir()
    for name, text in blocks.items():
        (directory / name).write_text(text)
    monkeypatch.delitem(sys.modules, "xmodal_toy", raising=False)
    return directory


# --- the example runs verbatim ------------------------------------------------------------------


def test_the_example_plugin_runs_its_study_verbatim(example: Path, xmodal_tester: XmodalTester):
    assert xmodal_tester.register(example / "xmodal_toy.py") == "xmodal_toy"
    result = xmodal_tester.run(example / "toy-study.toml")
    result.assert_ok()
    runs = result.runs()
    assert len(runs) == 4 and {r["status"] for r in runs} == {"finished"}
    assert {(r["mapping"], r["depth"], r["loss"]) for r in runs if r["state"] == "trained"} == {
        ("bottleneck", 1, "huber")
    }
    rows = result.results(metric="hubness")
    assert {(r["k"], r["similarity"], r["comparison"]) for r in rows} == {
        (1, "cosine", "pred"),
        (5, "cosine", "pred"),
    }
    assert all(r["value"] >= 1 for r in rows)
    assert {m["status"] for m in result.measurements()} == {"finished"}


def test_the_example_plugin_is_listed_and_its_command_and_description_work(
    example: Path, xmodal_tester: XmodalTester
):
    xmodal_tester.register(example / "xmodal_toy.py")
    listing = xmodal_tester.cli("plugins", "--json").assert_ok()
    assert '"xmodal_toy"' in listing.out and "bottleneck" in listing.out
    assert xmodal_tester.cli("toy-hello").out == "hello from toy\n"
    datasets = xmodal_tester.cli("datasets").assert_ok().out
    assert "tanh of a random projection of words" in datasets


def test_the_example_test_file_passes_under_pytest(example: Path):
    """The page's test_toy.py, run by pytest in its own process with the installed fixture."""
    env = {k: v for k, v in os.environ.items() if k != "XMODAL_LOAD_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_toy.py"],
        cwd=example,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_an_odd_n_in_the_example_keeps_every_item(example: Path, xmodal_tester: XmodalTester):
    """The old example marked items with ["train", "test"] * (n // 2): one short for an odd n."""
    xmodal_tester.register(example / "xmodal_toy.py")
    load = xmodal_tester.registry.datasets["toy"].load
    data = load({"n": 11, "seed": 0})
    assert len(data.split) == 11 and set(data.split) == {"train", "test"}


# --- every hook is documented and tested ---------------------------------------------------------

HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if inspect.isfunction(value) and hasattr(value, f"{hookspecs.hookspec.project_name}_spec")
)


def test_the_hook_list_is_found():
    assert {"register_datasets", "register_metrics", "register_commands"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_contract_a_docs_section_and_a_test_file(hook: str):
    spec = getattr(hookspecs, hook)
    assert spec.__doc__ and len(inspect.cleandoc(spec.__doc__)) > 80, (
        f"xmodal/hookspecs.py: {hook} needs a docstring stating its contract (arguments, "
        "return, when it is called)"
    )
    hooks_section = section(DOCS.read_text(), re.compile(r"^## Hooks\b"))
    assert re.search(rf"^### `{hook}\b", hooks_section, re.M), (
        f"docs/plugins.md has no '### `{hook}(...)`' section under '## Hooks'"
    )
    test_file = REPO / "tests" / f"test_hook_{hook.removeprefix('register_')}.py"
    assert test_file.exists(), f"{hook} has no tests/{test_file.name}"
    assert re.search(r"^def test_", test_file.read_text(), re.M), f"{test_file.name} has no test"


# --- every field of a public class is documented -------------------------------------------------

# The classes a plugin builds or receives: every public `*Spec`, and these.
DOCUMENTED = (
    "FeatureSetInfo",
    "ResultRow",
    "Param",
    "PairedData",
    "Probe",
    "Spaces",
    "CheckContext",
)
RECEIVED = ("Probe", "Spaces")
CLASSES = sorted(
    name
    for name in xmodal.__all__
    if (name.endswith("Spec") or name in DOCUMENTED)
    and attrs.has(getattr(xmodal, name, None) or object)
)


def documented_names(text: str) -> set[str]:
    """Names written as `name` before the first ': ' of each '- ' bullet line."""
    names = set()
    for line in text.splitlines():
        if line.startswith("- "):
            head = line[2:].split(": ", 1)[0]
            names.update(re.findall(r"`(\w+)", head))
    return names


def test_the_public_classes_are_found():
    assert {"DatasetSpec", "MetricSpec", "ResultRow", "Param", "PairedData"} <= set(CLASSES)


@pytest.mark.parametrize("name", CLASSES)
def test_every_field_of_a_public_class_is_documented(name: str):
    reference = section(DOCS.read_text(), re.compile(r"^## Reference\b"))
    text = section(reference, re.compile(rf"^###+ .*`{name}`"))
    assert text, f"docs/plugins.md: the Reference has no '### `{name}`' section"
    cls = getattr(xmodal, name)
    fields = [f.name for f in attrs.fields(cls) if not f.name.startswith("_")]
    if name in RECEIVED:  # what a metric receives: its methods and properties too
        fields += [
            member
            for member, value in vars(cls).items()
            if not member.startswith("_") and (callable(value) or isinstance(value, property))
        ]
    missing = [f for f in fields if f not in documented_names(text)]
    assert not missing, (
        f"docs/plugins.md, '### `{name}`': no '- `field`: ...' line for {', '.join(missing)}"
    )


# --- the docs agree with each other and with the tool --------------------------------------------


def test_the_docs_agree_that_metric_parameters_are_not_swept(xmodal_tester: XmodalTester):
    """metrics.md once said list values sweep; study-format.md said they do not (they do not)."""
    spec = MetricSpec(
        "scaled", lambda probe, params: iter(()), {"factor": Param(float, default=1.0)}
    )
    xmodal_tester.register({"register_metrics": lambda register: register(spec)}, name="m")
    refused = xmodal_tester.validate(small_study(metric=[{"name": "scaled", "factor": [1.0, 2.0]}]))
    assert refused.code == 2 and "metric[0].factor" in refused.output
    two_tables = [{"name": "scaled", "factor": 1.0}, {"name": "scaled", "factor": 2.0}]
    xmodal_tester.validate(small_study(metric=two_tables)).assert_ok()
    for page in ("metrics.md", "study-format.md", "plugins.md"):
        text = (REPO / "docs" / page).read_text()
        assert re.search(r"not\*{0,2} swept|NOT sweeps", text), f"docs/{page} does not say it"
        assert "list values sweep as\neverywhere else" not in text
