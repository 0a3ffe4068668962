"""Hook `register_report_sections`: a plugin's section and views, from registration to report.md."""

from __future__ import annotations

import re
import types

import pytest

from tests.conftest import REPO, TINY_STUDY, rows
from xmodal import MetricSpec, ReportSectionSpec, ReportTable, ReportText, hookimpl, plugins

PLUGINS = "-collell2018,-tuxpaint,-files,-ratings,-text_encoders,-image_encoders,-representation"


@pytest.fixture(autouse=True)
def few_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", PLUGINS)


def spread(probe, params):
    import numpy as np

    from xmodal import ResultRow

    for split, spaces in probe.spaces.items():
        gap = np.linalg.norm(spaces.predicted - spaces.target, axis=1).mean()
        yield ResultRow(split, "spread", "pred-target", float(gap))


SPREAD = MetricSpec("spread", compute=spread, compares=("pred-target",), label="Spread", digits=2)
STUDY = TINY_STUDY + '\n[[metric]]\nname = "spread"\n'


def register(name: str = "my-report", *, sections=(), metrics=(SPREAD,)) -> None:
    @hookimpl
    def register_metrics(register):
        for spec in metrics:
            register(spec)

    @hookimpl
    def register_report_sections(register):
        for section in sections:
            register(section)

    hooks = types.SimpleNamespace(
        register_metrics=register_metrics, register_report_sections=register_report_sections
    )
    plugins.reset(plugins.load_manager(extra=[(name, hooks)]))


def docs_example() -> dict:
    """The section example of docs/report.md, "Adding a section", run as written."""
    text = (REPO / "docs" / "report.md").read_text().split("## Adding a section")[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/report.md", "exec"), namespace)
    return namespace


def test_the_docs_example_section_creates_its_view_and_renders(cli, write_study, db, tmp_path):
    example = docs_example()
    hooks = types.SimpleNamespace(
        register_report_sections=example["register_report_sections"],
        register_metrics=hookimpl(lambda register: register(SPREAD)),
    )
    plugins.reset(plugins.load_manager(extra=[("spread-report", hooks)]))
    assert cli("run", write_study(STUDY), "--db", db).code == 0
    # Created when the study ran: plain DuckDB and `xmodal query` see it.
    assert rows(db, "SELECT count(*) > 0 FROM my_spread WHERE study = 'tiny'") == [(True,)]
    assert rows(db, "SELECT plugin, section FROM report_views WHERE name = 'my_spread'") == [
        ("spread-report", "spread")
    ]
    assert cli("query", "SELECT * FROM my_spread", "--db", db).code == 0
    result = cli("report", "tiny", "--db", db, "--out", tmp_path / "r")
    assert result.code == 0, result.output
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Spread by mapping" in text and "Source: view `my_spread`." in text
    # The section presents `spread`, so All measurements does not repeat it.
    assert "### Spread (`spread`)" not in text
    # Sections come in order: the paper's (10-70), this one (200), All measurements (1000).
    assert text.index("## Table 1") < text.index("## Spread by mapping")


def test_sections_render_in_order_with_the_first_headline_printed(cli, write_study, db, tmp_path):
    seen = []

    def first(context):
        seen.append(("first", context.study, context.out, sorted(context.covered)))
        return [
            ReportText("## First"),
            ReportTable("Head", ("terminal-only",), [("x",)], headline=True),
            "plain *markdown*",
        ]

    def second(context):
        seen.append(("second", sorted(context.covered)))
        return [
            ReportTable(
                "Second", ("metric", "label"), [("spread", context.display("spread").label)]
            )
        ]

    register(sections=[
        ReportSectionSpec("second", render=second, order=-1),
        ReportSectionSpec("first", render=first, order=-2, metrics=("spread",)),
    ])  # fmt: skip
    assert cli("run", write_study(STUDY), "--db", db).code == 0
    out = tmp_path / "r"
    result = cli("report", "tiny", "--db", db, "--out", out)
    assert result.code == 0, result.output
    text = (out / "report.md").read_text()
    assert text.index("## First") < text.index("plain *markdown*") < text.index("## Second")
    assert "| spread | Spread |" in text
    assert "terminal-only" not in text and "terminal-only" in result.out  # the first headline
    assert seen == [("first", "tiny", out, []), ("second", ["spread"])]


def test_a_section_that_raises_is_named_and_the_report_goes_on(cli, write_study, db, tmp_path):
    def broken(context):
        raise RuntimeError("no such column")

    register(sections=[ReportSectionSpec("broken", render=broken)])
    assert cli("run", write_study(STUDY), "--db", db).code == 0
    result = cli("report", "tiny", "--db", db, "--out", tmp_path / "r")
    assert result.code == 0 and "Traceback" not in result.output
    message = "report section 'broken' (plugin 'my-report') failed and is left out: RuntimeError: no such column"
    assert f"warning: {message}" in result.err
    text = (tmp_path / "r" / "report.md").read_text()
    assert message in text and "## Table 1" in text


@pytest.mark.parametrize(
    ("views", "expected"),
    [
        ({"runs": "SELECT 1"}, "declares a view 'runs', which is a table or view of xmodal's own"),
        ({"bad_view": "SELECT nope FROM runs"}, "the view 'bad_view' of report section 'views' (plugin 'my-report') cannot be created"),
        ({"a_view": "SELECT * FROM b_view", "b_view": "SELECT * FROM a_view"}, "report views read each other in a cycle: a_view, b_view"),
        ({"paper_runs": "SELECT 1 AS x"}, "declare the view 'paper_runs' with different SQL"),
    ],
)  # fmt: skip
def test_views_that_cannot_be_created_stop_the_run_with_a_clear_error(
    cli, write_study, db, views, expected
):
    register(sections=[ReportSectionSpec("views", render=lambda c: [], views=views)])
    result = cli("run", write_study(STUDY), "--db", db)
    assert result.code == 1 and "Traceback" not in result.output
    assert expected in result.err


def test_a_view_declared_by_two_sections_with_the_same_sql_is_created_once(db, write_study, cli):
    same = {"shared_view": "SELECT study, count(*) AS n FROM current_results GROUP BY ALL"}
    register(sections=[
        ReportSectionSpec("one", render=lambda c: [], views=same),
        ReportSectionSpec("two", render=lambda c: [], views={"shared_view": "  " + same["shared_view"] + ";"}),
    ])  # fmt: skip
    assert cli("run", write_study(STUDY), "--db", db).code == 0
    assert rows(db, "SELECT section FROM report_views WHERE name = 'shared_view'") == [("one",)]


@pytest.mark.parametrize("name", ["Bad-Name", "1x", ""])
def test_a_view_name_must_be_an_identifier(name):
    with pytest.raises(ValueError, match="view name"):
        ReportSectionSpec("s", render=lambda c: [], views={name: "SELECT 1"})


def test_a_metrics_display_comes_from_its_spec():
    spec = MetricSpec("regression-ish", compute=spread, label="Fit", digits=4,
                      higher_is_better=True, outputs={"mse": __import__("xmodal").MetricDisplay("MSE", 5, False)})  # fmt: skip
    assert spec.display("regression-ish") == type(spec.display("mse"))("Fit", 4, True)
    assert spec.display("mse").label == "MSE" and spec.display("mse").higher_is_better is False
    assert spec.display("other").label == "other"
