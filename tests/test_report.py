"""`xmodal report` and the paper_* views: tables, figures and clean errors from a small study."""

from __future__ import annotations

import os
import random
import re
import struct
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_STUDY, rows, study_toml
from xmodal.store import Store
from xmodal.testing import CliResult
from xmodal.views import RESULTS_SUMMARY, DeclaredView
from xmodal_plugins.paper_report import VIEWS

STUDY = study_toml(
    study={"name": "paper-mini", "description": "a tiny stand-in for the paper's experiments"},
    data={"split": "kfold", "folds": 2, "params": {"n_items": 200, "dim_text": 12, "dim_image": 16}},
    mapping=[{"name": "mlp", "depth": [0, 1, 2], "hidden": 16}],
    loss=[{"name": "mse"}, {"name": "cosine"}],
    train={"epochs": 4, "batch_size": 50, "probe_every": 2},
    probes={"trained": True, "untrained": True},
    metric=[
        {"name": "mnno", "k": [5, 10]},
        {"name": "regression"},
        {"name": "retrieval", "k": [1, 10], "labels": False},
        {"name": "similarity_correlation", "ratings_file": ["RATINGS"],
         "spaces": ["input", "predicted"]},
    ],
)  # fmt: skip

# 2 directions × 2 folds × 3 depths × (2 losses trained + 1 untrained)
N_RUNS = 36
# The report needs none of the plugins that read files or encode; skipping them keeps these tests
# about the report (every other built-in, the paper's report sections included, loads).
PLUGINS = "-collell2018,-tuxpaint,-files,-ratings,-text_encoders,-image_encoders,-representation"


@pytest.fixture(autouse=True)
def only_needed_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", PLUGINS)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"), f"{path} is truncated"
    return width, height


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run the study once for the whole module (into its own database)."""
    from xmodal import plugins
    from xmodal.cli import main

    where = tmp_path_factory.mktemp("report")
    rng = random.Random(0)
    ratings = where / "pairs.tsv"
    ratings.write_text(
        "".join(
            f"item{rng.randrange(200)}\titem{rng.randrange(200)}\t{rng.uniform(0, 10):.2f}\n"
            for _ in range(300)
        )
    )
    study = where / "study.toml"
    study.write_text(STUDY.replace("RATINGS", str(ratings)))
    db = where / "results.duckdb"
    saved = os.environ.get("XMODAL_LOAD_PLUGINS")
    os.environ["XMODAL_LOAD_PLUGINS"] = PLUGINS
    plugins.reset()
    try:
        main(["run", str(study), "--db", str(db), "-j", "1"])
    except SystemExit as exc:
        assert not exc.code, "the study failed to run"
    finally:
        plugins.reset()
        if saved is None:
            del os.environ["XMODAL_LOAD_PLUGINS"]
        else:
            os.environ["XMODAL_LOAD_PLUGINS"] = saved
    return db, where


def test_views_return_the_expected_rows(ran):
    db, _ = ran
    assert rows(db, "SELECT count(*) FROM paper_runs WHERE study = 'paper-mini'") == [(N_RUNS,)]
    table1 = rows(
        db,
        "SELECT direction, depth, loss, state, n, pred_input, pred_target, input_target "
        "FROM paper_table1 WHERE study = 'paper-mini' AND k = 10 AND split = 'test' ORDER BY ALL",
    )
    # 2 directions × 3 depths × (mse, cosine, untrained); n = 2 folds each
    assert len(table1) == 18
    assert {r[4] for r in table1} == {2}
    assert {r[2] for r in table1} == {"mse", "cosine", None}
    assert all(0 <= v <= 1 for r in table1 for v in r[5:])
    untrained = rows(
        db, "SELECT count(*) FROM paper_untrained WHERE study = 'paper-mini' AND k = 10"
    )
    assert untrained == [(6,)]
    depth = rows(
        db,
        "SELECT DISTINCT comparison FROM paper_depth WHERE study = 'paper-mini' ORDER BY 1",
    )
    assert depth == [("input-target",), ("pred-input",), ("pred-target",)]
    epochs = rows(
        db,
        "SELECT DISTINCT epoch, split FROM paper_curves WHERE study = 'paper-mini' "
        "AND metric = 'mnno' AND k = 10 AND comparison = 'pred-target' ORDER BY ALL",
    )
    assert epochs == [(e, s) for e in (0, 2, 4) for s in ("test", "train")]
    fit = rows(db, "SELECT count(*), count(r2), count(recall_at_10) FROM paper_fit")
    assert fit == [(18, 18, 18)]
    ratings = rows(
        db,
        "SELECT source, count(*), count(rho_before), count(rho_after), min(coverage) "
        "FROM paper_ratings WHERE study = 'paper-mini' GROUP BY ALL",
    )
    assert ratings[0][:4] == ("pairs", 18, 18, 18) and 0 < ratings[0][4] < 1


def test_views_follow_the_latest_study_version(ran, tmp_path):
    """A new version of the study that plans fewer runs narrows every view to its runs."""
    import shutil

    from xmodal import plugins
    from xmodal.cli import main

    db, where = ran
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)
    study = tmp_path / "study.toml"
    text = (where / "study.toml").read_text().replace("depth = [0, 1, 2]", "depth = [0]")
    study.write_text(text.replace('[[loss]]\nname = "cosine"\n', ""))
    plugins.reset()
    try:
        main(["run", str(study), "--db", str(copy)])
    except SystemExit as exc:
        assert not exc.code
    finally:
        plugins.reset()
    depths = rows(copy, "SELECT DISTINCT depth FROM paper_table1 WHERE study = 'paper-mini'")
    assert depths == [(0,)]


def test_report_writes_markdown_figures_and_prints_the_headline(ran, cli, tmp_path):
    db, _ = ran
    out = tmp_path / "out"
    result = cli("report", "paper-mini", "--db", db, "--out", out)
    assert result.code == 0, result.output
    assert "mNNO@10, trained mappings" in result.out
    assert "f(X),X" in result.out
    text = (out / "report.md").read_text()
    assert "## Table 1: mNNO@10 of trained mappings on test items (cosine)" in text
    table = [line for line in text.splitlines() if line.startswith("| synthetic | text → image")]
    # Table 1 (3 depths × 2 losses) + untrained (3) + fit (3 × 3) + ratings (9) per direction
    lines = [
        ln
        for ln in text.split("## Table 1")[1].split("##")[0].splitlines()
        if ln.startswith("| synthetic")
    ]
    assert len(lines) == 12
    cell = r"0\.\d{3} ± 0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]"  # mean ± std [interval over items]
    assert any(re.search(rf"\| mlp \| 2 \| cosine \| {cell} \|", ln) for ln in lines)
    assert table
    for section in ("Untrained networks", "Regression fit and retrieval", "Spearman correlation"):
        assert section in text
    for name in ("depth.png", "curves.png", "untrained.png", "ratings.png"):
        path = out / name
        assert path.exists(), name
        assert f"({name})" in text
        width, height = _png_size(path)
        assert width > 400 and height > 300


def reference_holm(pvalues: list[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure from its definition: the i-th smallest p (i from 0) is
    rejected when it and every smaller one are <= alpha / (m - i)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        rejected[i] = True
    return rejected


def test_table1_states_the_finding_with_holm_counts_from_the_stored_p_values(ran, cli, tmp_path):
    """Table 1's note and the terminal's headline say "holds in A of B configurations at
    α = 0.05 (Holm)", with A and B recomputed here from the runs' stored p-values: per
    configuration the largest p over its runs (folds), every run's difference positive."""
    db, _ = ran
    per_run = rows(
        db,
        "SELECT p.direction, p.depth, p.loss, max(x.value) FILTER (WHERE x.metric = 'mnno_diff_p'), "
        "min(x.value) FILTER (WHERE x.metric = 'mnno_diff') "
        "FROM paper_runs p JOIN current_results x ON x.run_id = p.run_id AND x.study = p.study "
        "WHERE p.study = 'paper-mini' AND p.state = 'trained' AND x.k = 10 AND x.split = 'test' "
        "AND x.similarity = 'cosine' AND x.comparison = 'pred-input:pred-target' GROUP BY ALL",
    )
    assert len(per_run) == 12  # 2 directions × 3 depths × 2 losses
    stored = rows(
        db,
        "SELECT direction, depth, loss, diff_p, diff_min FROM paper_table1 WHERE study = "
        "'paper-mini' AND state = 'trained' AND k = 10 AND split = 'test' AND similarity = 'cosine'",
    )
    assert sorted(stored) == sorted(per_run)  # the view's p is the largest over runs
    rejected = reference_holm([r[3] for r in per_run], 0.05)
    holds = sum(rej and r[4] > 0 for rej, r in zip(rejected, per_run, strict=True))
    sentence = (
        f"mNNO(f(X),X) > mNNO(f(X),Y) holds in {holds} of 12 configurations at α = 0.05 (Holm)"
    )
    out = tmp_path / "out"
    result = cli("report", "paper-mini", "--db", db, "--out", out)
    assert result.code == 0, result.output
    table1 = (out / "report.md").read_text().split("## Table 1")[1].split("\n## ")[0]
    assert sentence in table1
    assert sentence in " ".join(result.out.split())  # the headline's note (wrapped)
    body = [ln for ln in table1.splitlines() if ln.startswith("| synthetic")]
    assert sum(ln.rstrip(" |").split("|")[-2].strip() == "yes" for ln in body) == holds


def test_findings_count_holm_rejections_with_every_run_positive():
    from xmodal_plugins.paper_report import findings, findings_sentence

    def row(p, low, high):
        return {"diff_p": p, "diff_min": low, "diff_max": high}

    # Holm over 4 tests: 0.001 <= 0.05/4, 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.2 > 0.05.
    rows_ = [row(0.01, 0.1, 0.2), row(0.001, -0.3, -0.1), row(0.2, 0.1, 0.1),
             row(0.02, -0.1, 0.2), row(None, None, None)]  # fmt: skip
    result = findings(rows_)
    assert result["holds"] == [True, False, False, False, False]  # 4th: one run negative
    assert result["reversed"] == [False, True, False, False, False]
    assert result["adjusted"][:4] == pytest.approx([0.03, 0.004, 0.2, 0.04])
    assert findings_sentence(result) == (
        "mNNO(f(X),X) > mNNO(f(X),Y) holds in 1 of 4 configurations at α = 0.05 (Holm); the "
        "opposite holds in 1; 1 configuration has no test."
    )


def test_unknown_study_suggests_close_names(ran, cli, tmp_path):
    db, _ = ran
    result = cli("report", "paper-mni", "--db", db, "--out", tmp_path / "o")
    assert result.code == 1
    assert "no study named 'paper-mni'" in result.err
    assert "did you mean 'paper-mini'" in result.err
    assert "Traceback" not in result.output


def test_study_without_finished_runs_is_a_clear_error(cli, write_study, db, tmp_path):
    cli("run", write_study(), "--db", db)
    # A study version whose runs never finished (recorded directly: `run` would run them).
    Store(db).record_study("later", "h", "later.toml", TINY_STUDY, ["never-ran"])
    result = cli("report", "later", "--db", db, "--out", tmp_path / "o")
    assert result.code == 1
    assert "has no finished runs" in result.err and "xmodal run" in result.err
    assert "Traceback" not in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_is_a_clear_error(ran, cli, tmp_path):
    db, _ = ran
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = cli("report", "paper-mini", "--db", db, "--out", locked / "sub")
    finally:
        locked.chmod(0o700)
    assert result.code == 1
    assert "--out" in result.err and "cannot create" in result.err
    assert "Traceback" not in result.output


def test_out_that_is_a_file_is_a_clear_error(ran, cli, tmp_path):
    db, _ = ran
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = cli("report", "paper-mini", "--db", db, "--out", afile)
    assert result.code == 1
    assert "--out" in result.err
    assert "Traceback" not in result.output


def test_missing_database_is_a_clear_error(cli, tmp_path):
    result = cli("report", "x", "--db", tmp_path / "none.duckdb", "--out", tmp_path / "o")
    assert result.code == 1
    assert "no results database" in result.err


def test_docs_show_every_views_sql():
    doc = (REPO / "docs" / "report.md").read_text()
    for name, sql in VIEWS.items():
        create = DeclaredView(name, sql, "paper", "paper_report").create
        assert create in doc, f"docs/report.md does not show the SQL of {name}"
    assert RESULTS_SUMMARY.strip() in doc, "docs/report.md does not show results_summary"


# ridge (a family with no depth) beside mlp at depths 0 and 1.
MLP_AT_0_AND_1 = {"name": "mlp", "depth": [0, 1], "hidden": 32}
RIDGE_AND_MLP = study_toml(mapping=[{"name": "ridge"}, MLP_AT_0_AND_1])


def run_and_report(cli, study: Path, db: Path, out: Path) -> tuple[CliResult, str]:
    """Run `study` (named "tiny"), then `xmodal report tiny --out OUT`, which must succeed
    without a traceback: the report command's result and the report.md it wrote."""
    assert cli("run", study, "--db", db).code == 0
    result = cli("report", "tiny", "--db", db, "--out", out)
    assert result.code == 0 and "Traceback" not in result.output, result.output
    return result, (out / "report.md").read_text()


def test_a_mapping_without_depth_beside_mlps_is_in_the_tables_not_on_the_depth_axis(
    cli, write_study, db, tmp_path
):
    _, text = run_and_report(cli, write_study(RIDGE_AND_MLP), db, tmp_path / "report")
    assert "ridge" in text and (tmp_path / "report" / "depth.png").is_file()


# -- any component: a third-party mapping and metric, mixed families, an old database --------------


def spread(probe, params):
    """A third-party metric: the mean distance of predictions to their targets."""
    import numpy as np

    from xmodal import ResultRow

    for split, spaces in probe.spaces.items():
        gap = np.linalg.norm(spaces.predicted - spaces.target, axis=1).mean()
        yield ResultRow(split, "spread", "pred-target", float(gap))


def shift(in_dim, out_dim, params):
    """A third-party mapping family with no depth: one linear map."""
    import torch

    return torch.nn.Linear(in_dim, out_dim)


def register_third_party(name: str = "third-party") -> None:
    import types

    from xmodal import MappingSpec, MetricSpec, hookimpl, plugins

    @hookimpl
    def register_mappings(register):
        register(MappingSpec("shift", build=shift, description="one linear map, no depth"))

    @hookimpl
    def register_metrics(register):
        register(MetricSpec("spread", compute=spread, compares=("pred-target",),
                            value_range=(0.0, float("inf")), label="Spread", digits=2,
                            higher_is_better=False))  # fmt: skip

    hooks = types.SimpleNamespace(register_mappings=register_mappings,
                                  register_metrics=register_metrics)  # fmt: skip
    plugins.reset(plugins.load_manager(extra=[(name, hooks)]))


MIXED = study_toml(
    mapping=[{"name": "shift"}, MLP_AT_0_AND_1],
    metric=[{"name": "mnno", "k": [1, 5, 10]}, {"name": "spread"}],
)


def test_a_third_party_mapping_without_depth_and_metric_are_reported(
    cli, write_study, db, tmp_path
):
    register_third_party()
    _, text = run_and_report(cli, write_study(MIXED), db, tmp_path / "r")
    # The metric appears under its label, with its direction and its digits.
    assert "### Spread (`spread`), lower is better" in text
    part = text.split("### Spread (`spread`)")[1]
    body = [ln for ln in part.splitlines() if ln.startswith("| ")][2:]
    shift_rows = [ln for ln in body if "| shift |" in ln]
    # shift has no depth (—) and sits beside mlp at depths 0 and 1; values have 2 decimals.
    assert shift_rows and all("| — |" in ln for ln in shift_rows), part
    assert all(any(f"| mlp | {d} |" in ln for ln in body) for d in (0, 1))
    assert all(re.search(r"\| \**\d+\.\d{2}( ± \d+\.\d{2})?\** \| 1 \|$", ln) for ln in body), body
    assert "**" in part  # the best (lowest) mean is marked
    assert (tmp_path / "r" / "depth-spread.png").is_file()
    assert "![Figure: Spread by depth](depth-spread.png)" in text
    # The paper's Table 1 lists the family too (its depth: —); mnno is not repeated below.
    assert "| shift | — |" in text.split("## Table 1")[1].split("##")[0]
    assert "### mNNO" not in text and "### mnno" not in text


def test_ridge_and_mlp_at_depth_0_and_1_report_with_only_the_core_section(
    cli, write_study, db, tmp_path, monkeypatch
):
    """The issue's crash (depth None sorted with ints), without the paper's sections."""
    monkeypatch.setenv("XMODAL_LOAD_PLUGINS", PLUGINS + ",-paper_report")
    result, text = run_and_report(cli, write_study(RIDGE_AND_MLP), db, tmp_path / "r")
    assert "## Table 1" not in text and "## All measurements" in text
    assert "### mNNO (`mnno`)" in text  # the label the metric declares, and its name
    assert re.search(r"\| ridge \| — \|", text) and re.search(r"\| mlp \| 1 \|", text)
    assert (tmp_path / "r" / "depth-mnno.png").is_file()
    # The terminal headline is the first table of All measurements, means only.
    assert "mNNO(f(X), X)" in result.out and not re.search(r"\d ± \d", result.out)


def test_a_database_of_the_previous_schema_queries_and_reports(cli, tmp_path):
    """schema4.sql: the four migrations of the xmodal before report views moved into plugins."""
    import duckdb

    from xmodal.store import MIGRATIONS

    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
        )
        con.execute((REPO / "tests" / "data" / "schema4.sql").read_text())
        con.executemany(
            "INSERT INTO schema_migrations VALUES (?, now())", [[v] for v in range(1, 5)]
        )
        con.execute("INSERT INTO studies VALUES ('legacy', 'h1', 'old.toml', '', now())")
        for i, (depth, value) in enumerate([(0, 0.5), (1, 0.25)]):
            con.execute("INSERT INTO study_runs VALUES ('legacy', 'h1', ?, ?)", [f"r{i}", i])
            con.execute(
                "INSERT INTO runs (run_id, study, dataset, input_features, target_features, "
                "direction, mapping, depth, loss, state, seed, status) VALUES "
                "(?, 'legacy', 'synthetic', 'text', 'image', 'forward', 'mlp', ?, 'mse', "
                "'trained', 0, 'finished')",
                [f"r{i}", depth],
            )
            for comparison in ("pred-input", "pred-target", "input-target"):
                con.execute(
                    "INSERT INTO results VALUES (?, 'test', 'mnno', ?, 10, 'cosine', NULL, ?, NULL)",
                    [f"r{i}", comparison, value],
                )
    # Read-only first: the old views answer as before.
    result = cli("query", "SELECT depth, pred_input FROM paper_table1 ORDER BY 1", "--db", db,
                 "--format", "csv")  # fmt: skip
    assert result.code == 0 and "0,0.5" in result.out and "1,0.25" in result.out, result.output
    # The report upgrades it (schema 5, the plugin's views) and reports it.
    result = cli("report", "legacy", "--db", db, "--out", tmp_path / "r")
    assert result.code == 0 and "Traceback" not in result.output, result.output
    assert "## Table 1" in (tmp_path / "r" / "report.md").read_text()
    assert rows(db, "SELECT max(version) FROM schema_migrations") == [(len(MIGRATIONS),)]
    assert rows(db, "SELECT count(*) FROM report_views WHERE plugin = 'paper_report'") == [(7,)]
    assert rows(db, "SELECT count(*) FROM results_summary WHERE study = 'legacy'") == [(6,)]


# -- the shuffled control in Table 1 --------------------------------------------------------------

WITH_CONTROL = study_toml(
    data={"directions": ["forward"]},
    mapping=[{"name": "linear"}],
    probes={"shuffled": True},
    metric=[{"name": "mnno", "k": [5, 10]}],
)


def test_table1_shows_the_shuffled_controls_mnno_beside_the_trained_mapping(
    cli, write_study, db, tmp_path
):
    _, text = run_and_report(cli, write_study(WITH_CONTROL), db, tmp_path / "r")
    table1 = text.split("## Table 1")[1].split("\n## ")[0]
    lines = [ln for ln in table1.splitlines() if ln.startswith("| ")]
    header, body = lines[0], lines[2:]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[columns.index("mNNO(X,Y)") + 1] == "shuffled f(X),Y"
    [(trained,)] = rows(db, "SELECT pred_target FROM paper_table1 WHERE state = 'trained' "
                            "AND k = 10 AND split = 'test' AND similarity = 'cosine'")  # fmt: skip
    [(control,)] = rows(db, "SELECT pred_target FROM paper_table1 WHERE state = 'shuffled' "
                            "AND k = 10 AND split = 'test' AND similarity = 'cosine'")  # fmt: skip
    [row] = body  # one trained configuration: linear, mse, forward
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[columns.index("shuffled f(X),Y")] == f"{control:.3f}"
    assert cells[columns.index("mNNO(f(X),Y)")].startswith(f"{trained:.3f} [")  # [interval]
    assert "of the `shuffled` control" in table1 and "'shuffled' for the control" in table1


def test_table1_has_no_control_column_when_the_control_did_not_run():
    from xmodal_plugins.paper_report import _table1

    row = {"dataset": "synthetic", "input_features": "text", "target_features": "image",
           "direction": "forward", "mapping": "linear", "depth": 0, "loss": "mse", "n": 1,
           "pred_input": 0.5, "pred_input_std": None, "pred_target": 0.4,
           "pred_target_std": None, "input_target": 0.3, "input_target_std": None}  # fmt: skip
    table = _table1([row], 10, "test", "cosine", {})
    assert "shuffled f(X),Y" not in table.columns and "shuffled" not in table.note
    assert len(table.rows[0]) == len(table.columns)


# --- the by-depth figures' error bars: the interval over items (docs/report.md) -----------------


def test_depth_view_carries_the_mean_of_the_runs_interval_bounds(ran):
    """paper_depth's ci_low/ci_high are the means over folds × seeds of the runs' own bounds,
    and they bracket the mean of the runs' values (mnno's default intervals contain the value)."""
    db, _ = ran
    expected = rows(
        db,
        "SELECT p.direction, p.depth, p.loss, p.state, x.split, x.k, x.comparison, "
        "avg(x.ci_low), avg(x.ci_high) FROM paper_runs p JOIN current_results x "
        "ON x.run_id = p.run_id AND x.study = p.study WHERE x.metric = 'mnno' "
        "AND p.study = 'paper-mini' GROUP BY ALL ORDER BY ALL",
    )
    got = rows(
        db,
        "SELECT direction, depth, loss, state, split, k, comparison, ci_low, ci_high "
        "FROM paper_depth WHERE study = 'paper-mini' ORDER BY ALL",
    )
    # 2 directions × 3 depths × (mse, cosine, untrained) × k 5, 10 × 3 comparisons, test items
    assert got == expected and len(got) == 2 * 3 * 3 * 2 * 3
    bracketed = rows(
        db,
        "SELECT count(*) FILTER (WHERE ci_low <= mean AND mean <= ci_high), count(*) "
        "FROM paper_depth WHERE study = 'paper-mini'",
    )
    assert bracketed[0][0] == bracketed[0][1]


def test_error_bars_are_the_interval_and_fall_back_to_the_std_without_one():
    from xmodal.report import error_bar as core_bar
    from xmodal.report import error_bars_text as bars_text
    from xmodal_plugins.support.paper_figures import error_bar

    with_interval = {"mean": 0.5, "std": 0.1, "ci_low": 0.45, "ci_high": 0.58}
    without = {"mean": 0.5, "std": 0.1, "ci_low": None, "ci_high": None}
    outside = {"mean": 0.5, "std": 0.1, "ci_low": 0.52, "ci_high": 0.6}  # a bootstrap's may
    for bar in (error_bar, core_bar):
        below, above, interval = bar(with_interval)
        assert interval and below == pytest.approx(0.05) and above == pytest.approx(0.08)
        assert bar(without) == (0.1, 0.1, False)
        assert bar(outside)[0] == 0.0 and bar(outside)[1] == pytest.approx(0.1)
    assert bars_text([with_interval]).startswith("the confidence interval over items")
    assert bars_text([without]).startswith("± one std")
    assert "where the runs have no interval" in bars_text([with_interval, without])


def test_depth_figures_say_their_bars_are_the_interval_over_items(ran, cli, tmp_path):
    db, _ = ran
    result = cli("report", "paper-mini", "--db", db, "--out", tmp_path / "r")
    assert result.code == 0, result.output
    text = (tmp_path / "r" / "report.md").read_text()
    depth = text.split("Figure: mNNO by depth (trained)")[1].split("\n#")[0]
    assert "Error bars: the confidence interval over items (mean of the runs' bounds)" in depth
    untrained = text.split("Figure: untrained networks by depth")[1].split("\n#")[0]
    assert "Error bars: the confidence interval over items" in untrained


def test_row_metrics_declared_plot_false_are_in_tables_but_never_drawn(ran, cli, tmp_path):
    """mnno declares its chance level and p-values plot=False (MetricDisplay): All measurements
    lists them but draws no figure of them; the paired difference is drawn."""
    db, _ = ran
    out = tmp_path / "r"
    assert cli("report", "paper-mini", "--db", db, "--out", out).code == 0
    text = (out / "report.md").read_text()
    for label in ("Chance level (mNNO)", "p (mNNO difference)"):
        assert f"### {label}" in text
    assert not (out / "depth-mnno_chance.png").exists()
    assert not (out / "depth-mnno_diff_p.png").exists()
    assert (out / "depth-mnno_diff.png").is_file()
