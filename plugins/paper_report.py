"""Built-in report sections: the tables and figures of Collell & Moens (ACL 2018).

Registered exactly as a third-party plugin registers its sections (hook
`register_report_sections`), with the `paper_*` views they read. Table 1 (mNNO of trained
mappings), the mNNO-by-depth figure, the untrained networks, the training curves, mNNO at every
k, regression fit and retrieval, and the correlations with human ratings. docs/report.md shows
each view's SQL; the views are created in the results database whenever a study runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xmodal import (
    ReportContext,
    ReportFigure,
    ReportSectionSpec,
    ReportTable,
    ReportText,
    error_bars_text,
    holm,
    hookimpl,
    mean_std,
    number,
)

# The figures module (matplotlib, about a second to import) is imported by the sections that draw,
# so that registering these sections costs nothing to commands that write no report.

Row = dict[str, Any]
HEADLINE_K = 10
ALPHA = 0.05  # the level of the findings the report states (Holm over configurations)
COMPARISON_HEADERS = ("mNNO(f(X),X)", "mNNO(f(X),Y)", "mNNO(X,Y)")

# -- the views (SELECT statements; xmodal creates them as `CREATE OR REPLACE VIEW name AS ...`) --

PAPER_RUNS = """
    SELECT sr.study, r.run_id, r.dataset, r.input_features, r.target_features, r.direction,
           r.fold, r.mapping, r.depth, r.loss, r.kind AS state, r.seed, r.epochs
    FROM current_studies l
    JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
    JOIN runs r ON r.run_id = sr.run_id
    WHERE r.status = 'finished'
"""

PAPER_DEPTH = """
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, p.state, x.split, x.similarity, x.k, x.comparison,
           count(*) AS n, avg(x.value) AS mean, stddev_samp(x.value) AS std,
           -- The interval over items: the mean of the runs' bounds, NULL unless every run has
           -- one (docs/statistics.md, "Folds and seeds").
           CASE WHEN count(x.ci_low) = count(*) THEN avg(x.ci_low) END AS ci_low,
           CASE WHEN count(x.ci_high) = count(*) THEN avg(x.ci_high) END AS ci_high
    FROM paper_runs p
    JOIN current_results x ON x.run_id = p.run_id AND x.study = p.study
    WHERE x.metric = 'mnno'
    GROUP BY ALL
"""

# Table 1's three mNNO comparisons: (comparison, column prefix).
TABLE1_COMPARISONS = (
    ("pred-input", "pred_input"),
    ("pred-target", "pred_target"),
    ("input-target", "input_target"),
)
PAIRED = "pred-input:pred-target"  # the paper's paired claim


def _of(metric: str, comparison: str) -> str:
    return f"FILTER (WHERE x.metric = '{metric}' AND x.comparison = '{comparison}')"


def _if_every_run(column: str, aggregate: str, where: str, expected: str, alias: str) -> str:
    """`aggregate(x.column)` over the rows `where` selects, NULL unless there are `expected`."""
    return (
        f"           CASE WHEN count(x.{column}) {where}\n"
        f"                   = {expected}\n"
        f"                THEN {aggregate}(x.{column}) {where}\n"
        f"           END AS {alias}"
    )


# Table 1 (wide) is built from its repeated parts; docs/report.md shows the SQL it makes
# (tests/test_report.py checks that it does).
PAPER_TABLE1 = (
    """
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, p.state, x.split, x.similarity, x.k,
           count(DISTINCT p.run_id) AS n,
"""
    + "".join(
        f"           {aggregate}(x.value) {_of('mnno', comparison)}\n               AS {column}{suffix},\n"
        for comparison, column in TABLE1_COMPARISONS
        for aggregate, suffix in (("avg", ""), ("stddev_samp", "_std"))
    )
    + """\
           -- Intervals: the mean of the runs' bounds, NULL unless every run has one
           -- (docs/statistics.md, "Folds and seeds").
"""
    + "".join(
        _if_every_run(
            bound,
            "avg",
            _of("mnno", comparison),
            f"count(*) {_of('mnno', comparison)}",
            f"{column}_{bound[3:]}",
        )
        + ",\n"
        for comparison, column in TABLE1_COMPARISONS
        for bound in ("ci_low", "ci_high")
    )
    + """\
           -- The paper's paired claim, mNNO(f(X),X) − mNNO(f(X),Y): mean, smallest and largest
           -- over runs, interval (mean of bounds) and the intersection-union p-value (the
           -- largest of the runs' p-values; NULL unless every run has one).
"""
    + "".join(
        f"           {aggregate}(x.value) {_of('mnno_diff', PAIRED)}\n               AS {alias},\n"
        for aggregate, alias in (("avg", "diff"), ("min", "diff_min"), ("max", "diff_max"))
    )
    + ",\n".join(
        _if_every_run(column, aggregate, _of(metric, PAIRED), "count(DISTINCT p.run_id)", alias)
        for column, aggregate, metric, alias in (
            ("ci_low", "avg", "mnno_diff", "diff_low"),
            ("ci_high", "avg", "mnno_diff", "diff_high"),
            ("value", "max", "mnno_diff_p", "diff_p"),
        )
    )
    + """
    FROM paper_runs p
    JOIN current_results x ON x.run_id = p.run_id AND x.study = p.study
    WHERE x.metric IN ('mnno', 'mnno_diff', 'mnno_diff_p')
    GROUP BY ALL
    HAVING count(*) FILTER (WHERE x.metric = 'mnno') > 0
"""
)

PAPER_UNTRAINED = """
    SELECT study, dataset, input_features, target_features, direction, mapping, depth, split,
           similarity, k, n, pred_input, pred_input_std, pred_target, pred_target_std,
           input_target
    FROM paper_table1
    WHERE state = 'untrained'
"""

PAPER_FIT = """
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, p.state, x.split,
           count(DISTINCT p.run_id) AS n,
           avg(x.value) FILTER (WHERE x.metric = 'mse') AS mse,
           stddev_samp(x.value) FILTER (WHERE x.metric = 'mse') AS mse_std,
           avg(x.value) FILTER (WHERE x.metric = 'r2') AS r2,
           stddev_samp(x.value) FILTER (WHERE x.metric = 'r2') AS r2_std,
           avg(x.value) FILTER (WHERE x.metric = 'recall' AND x.k = 1) AS recall_at_1,
           avg(x.value) FILTER (WHERE x.metric = 'recall' AND x.k = 5) AS recall_at_5,
           avg(x.value) FILTER (WHERE x.metric = 'recall' AND x.k = 10) AS recall_at_10,
           stddev_samp(x.value) FILTER (WHERE x.metric = 'recall' AND x.k = 10) AS recall_at_10_std,
           avg(x.value) FILTER (WHERE x.metric = 'mrr') AS mrr,
           avg(x.value) FILTER (WHERE x.metric = 'median_rank') AS median_rank
    FROM paper_runs p
    JOIN current_results x ON x.run_id = p.run_id AND x.study = p.study
    WHERE x.metric IN ('mse', 'r2')
       OR (x.metric IN ('recall', 'mrr', 'median_rank') AND x.comparison = 'pred-target'
           AND coalesce(x.similarity, 'cosine') = 'cosine')
    GROUP BY ALL
"""

PAPER_CURVES = """
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, c.epoch, c.split, c.metric, c.comparison, c.k, c.similarity,
           count(*) AS n, avg(c.value) AS mean, stddev_samp(c.value) AS std
    FROM paper_runs p
    JOIN curves c ON c.run_id = p.run_id
    GROUP BY ALL
"""

PAPER_RATINGS = """
    WITH rows AS (
        SELECT p.*, x.split, x.metric, x.similarity, x.value, x.ci_low, x.ci_high,
               regexp_extract(x.comparison, '^(input|pred|target)-(.+)$', 1) AS space,
               regexp_extract(x.comparison, '^(input|pred|target)-(.+)$', 2) AS source
        FROM paper_runs p
        JOIN current_results x ON x.run_id = p.run_id AND x.study = p.study
        WHERE x.metric IN ('spearman', 'coverage')
    ),
    per_run AS (
        SELECT study, run_id, dataset, input_features, target_features, direction, mapping,
               depth, loss, state, split, source, similarity,
               max(value) FILTER (WHERE space = 'input') AS rho_before,
               max(value) FILTER (WHERE space = 'pred') AS rho_after,
               max(value) FILTER (WHERE space = 'target') AS rho_target,
               max(ci_low) FILTER (WHERE space = 'input') AS before_low,
               max(ci_high) FILTER (WHERE space = 'input') AS before_high,
               max(ci_low) FILTER (WHERE space = 'pred') AS after_low,
               max(ci_high) FILTER (WHERE space = 'pred') AS after_high
        FROM rows WHERE metric = 'spearman'
        GROUP BY ALL
    ),
    coverage AS (
        SELECT run_id, split, source, max(value) AS coverage
        FROM rows WHERE metric = 'coverage'
        GROUP BY ALL
    )
    SELECT r.study, r.dataset, r.input_features, r.target_features, r.direction, r.mapping,
           r.depth, r.loss, r.state, r.split, r.source, r.similarity,
           count(*) AS n,
           avg(r.rho_before) AS rho_before, stddev_samp(r.rho_before) AS rho_before_std,
           avg(r.rho_after) AS rho_after, stddev_samp(r.rho_after) AS rho_after_std,
           avg(r.rho_after - r.rho_before) AS rho_change,
           stddev_samp(r.rho_after - r.rho_before) AS rho_change_std,
           avg(r.rho_target) AS rho_target,
           avg(c.coverage) AS coverage,
           -- the interval over rated pairs: the mean of the runs' bounds, when every run has one
           CASE WHEN count(r.before_low) = count(*) THEN avg(r.before_low) END AS rho_before_low,
           CASE WHEN count(r.before_high) = count(*) THEN avg(r.before_high) END AS rho_before_high,
           CASE WHEN count(r.after_low) = count(*) THEN avg(r.after_low) END AS rho_after_low,
           CASE WHEN count(r.after_high) = count(*) THEN avg(r.after_high) END AS rho_after_high
    FROM per_run r
    LEFT JOIN coverage c USING (run_id, split, source)
    GROUP BY ALL
"""

# Every view, in the order they are created (later ones read earlier ones).
VIEWS: dict[str, str] = {
    "paper_runs": PAPER_RUNS,
    "paper_depth": PAPER_DEPTH,
    "paper_table1": PAPER_TABLE1,
    "paper_untrained": PAPER_UNTRAINED,
    "paper_fit": PAPER_FIT,
    "paper_curves": PAPER_CURVES,
    "paper_ratings": PAPER_RATINGS,
}


def _views(*names: str) -> dict[str, str]:
    """The views a section reads, with the views they read first."""
    needs = {"paper_untrained": ("paper_table1",)}
    out = {"paper_runs": PAPER_RUNS}
    for name in names:
        for dep in needs.get(name, ()):
            out[dep] = VIEWS[dep]
        out[name] = VIEWS[name]
    return out


# -- formatting -------------------------------------------------------------------------------------


def _ci(mean: Any, std: Any, low: Any, high: Any, digits: int = 3) -> str:
    """mean ± std over runs, then the interval over items [low, high] when there is one."""
    text = mean_std(mean, std, digits)
    if low is None or high is None or mean is None:
        return text
    return f"{text} [{number(low, digits)}, {number(high, digits)}]"


def _p(value: Any) -> str:
    if value is None:
        return "—"
    value = float(value)
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def findings(rows: list[Row], alpha: float = ALPHA) -> dict[str, Any]:
    """The paper's finding mNNO(f(X),X) > mNNO(f(X),Y) over Table 1's configurations
    (docs/statistics.md, "Folds and seeds"): per configuration the intersection-union p-value
    `diff_p` (the largest of its runs' p-values); Holm over the configurations that have one.
    A configuration `holds` when its adjusted p <= alpha and every run's difference is
    positive, is `reversed` when adjusted p <= alpha and every run's difference is negative.
    Returns {"adjusted": [p or None per row], "holds": [...], "reversed": [...], "tested": B,
    "untested": rows without a p-value}."""
    tested = [i for i, r in enumerate(rows) if r.get("diff_p") is not None]
    adjusted_tested = holm([float(rows[i]["diff_p"]) for i in tested]) if tested else []
    adjusted: list[float | None] = [None] * len(rows)
    for i, a in zip(tested, adjusted_tested, strict=True):
        adjusted[i] = float(a)
    holds, reversed_ = [], []
    for r, a in zip(rows, adjusted, strict=True):
        significant = a is not None and a <= alpha
        holds.append(significant and r["diff_min"] is not None and r["diff_min"] > 0)
        reversed_.append(significant and r["diff_max"] is not None and r["diff_max"] < 0)
    return {"adjusted": adjusted, "holds": holds, "reversed": reversed_, "tested": len(tested),
            "untested": len(rows) - len(tested)}  # fmt: skip


def findings_sentence(result: dict[str, Any], alpha: float = ALPHA) -> str:
    """The sentence "mNNO(f(X),X) > mNNO(f(X),Y) holds in A of B configurations at α = 0.05
    (Holm).", with the opposite finding and the untested configurations when there are any."""
    if not result["tested"]:
        return (
            "No configuration has a paired test of mNNO(f(X),X) − mNNO(f(X),Y) (the runs "
            'recorded no `mnno_diff_p`: `uncertainty = "none"`, or older runs).'
        )
    text = (
        f"mNNO(f(X),X) > mNNO(f(X),Y) holds in {sum(result['holds'])} of {result['tested']} "
        f"configurations at α = {alpha:g} (Holm)"
    )
    if any(result["reversed"]):
        text += f"; the opposite holds in {sum(result['reversed'])}"
    if result["untested"]:
        untested = result["untested"]
        text += f"; {untested} configuration{'s have' if untested > 1 else ' has'} no test"
    return text + "."


def _pair(row: Row) -> str:
    return f"{row['input_features']} → {row['target_features']}"


def _mapping(row: Row) -> str:
    if row["mapping"] == "mlp" and row["depth"] == 0:
        return "mlp (linear)"
    return str(row["mapping"])


def _on_depth_axis(rows: list[Row]) -> list[Row]:
    """The rows a by-depth figure can place: mappings without a depth (e.g. ridge) are in the
    tables only."""
    return [r for r in rows if r["depth"] is not None]


def _order(row: Row) -> tuple[Any, ...]:
    return (
        row["dataset"],
        row["input_features"],
        row["target_features"],
        row["mapping"] != "linear",
        row["depth"] if row["depth"] is not None else -1,
        row.get("loss") or "",
    )


def _pick(values: Sequence[Any], preferred: Any) -> Any:
    present = [v for v in values if v is not None]
    if preferred in present:
        return preferred
    return sorted(present)[0] if present else None


def _headline_k(ks: Sequence[int]) -> int | None:
    ks = sorted({k for k in ks if k is not None})
    if not ks:
        return None
    if HEADLINE_K in ks:
        return HEADLINE_K
    below = [k for k in ks if k <= HEADLINE_K]
    return below[-1] if below else ks[0]


def _sel(rows: list[Row], **eq: Any) -> list[Row]:
    return [r for r in rows if all(r.get(c) == v for c, v in eq.items())]


def _table1_rows(context: ReportContext) -> tuple[list[Row], dict[str, Any]]:
    """paper_table1 of the study and the headline's k, split and similarity: k = 10 (else the
    largest recorded k below 10), cosine and test items when the study has them."""
    rows = context.fetch("SELECT * FROM paper_table1 WHERE study = ?", [context.study])
    base = {
        "k": _headline_k([r["k"] for r in rows]),
        "split": _pick([r["split"] for r in rows], "test"),
        "similarity": _pick([r["similarity"] for r in rows], "cosine"),
    }
    return rows, base


# -- the sections ---------------------------------------------------------------------------------


def table1(context: ReportContext) -> list[Any]:
    rows, base = _table1_rows(context)
    trained = sorted(_sel(rows, state="trained", **base), key=_order)
    untrained = sorted(_sel(rows, state="untrained", **base), key=_order)
    if not (trained or untrained):
        return []
    k, split, similarity = base["k"], base["split"], base["similarity"]
    blocks: list[Any] = [
        ReportText(
            f"Headline: mNNO at k = {k}, {similarity} similarity, on {split} items; mean ± "
            "sample std over folds × seeds (n runs). mNNO^k(V, Z) = 1/(kN) Σ_i |NN^k(v_i) ∩ "
            "NN^k(z_i)|: the share of each item's k nearest neighbours that two spaces have in "
            "common (Collell & Moens, 2018). X: the mapping's inputs, Y: the paired target "
            'vectors, f(X): the predictions. E.g. `xmodal query "SELECT * FROM paper_table1 '
            f"WHERE study = '{context.study}' AND k = {k}\"`."
        )
    ]
    if trained:
        shuffled = {_config(r): r for r in _sel(rows, state="shuffled", **base)}
        table = _table1(trained, k, split, similarity, shuffled)
        blocks += [table, _compact(table, trained, k, split, "trained mappings")]
    else:  # only untrained runs: their table is the headline
        blocks.append(_compact(_untrained_table(untrained, k, split, similarity), untrained, k,
                               split, "untrained networks"))  # fmt: skip
    return blocks


def depth(context: ReportContext) -> list[Any]:
    _, base = _table1_rows(context)
    rows = context.fetch(
        "SELECT * FROM paper_depth WHERE study = ? AND state = 'trained'", [context.study]
    )
    placed = _on_depth_axis(_sel(rows, **base))
    if not placed:
        return []
    k = base["k"]
    from xmodal_plugins.support import paper_figures as figures  # matplotlib: on first use

    path = figures.depth_figure(placed, context.path("depth.png"), study=context.study, k=k)
    return [
        ReportFigure(
            path,
            "Figure: mNNO by depth (trained)",
            "Blue: mNNO(f(X), X); red: mNNO(f(X), Y); grey dashed: the baseline mNNO(X, Y). "
            f"Points: the mean over folds and seeds. Error bars: {error_bars_text(placed)} "
            '(docs/report.md, "How the bars combine folds and seeds"); the std over folds '
            "and seeds is in Table 1.",
            alt=f"mNNO@{k} by depth",
        )
    ]


def untrained(context: ReportContext) -> list[Any]:
    rows, base = _table1_rows(context)
    chosen = sorted(_sel(rows, state="untrained", **base), key=_order)
    if not chosen:
        return []
    k, split, similarity = base["k"], base["split"], base["similarity"]
    blocks: list[Any] = [_untrained_table(chosen, k, split, similarity)]
    depth_rows = context.fetch(
        "SELECT * FROM paper_depth WHERE study = ? AND state = 'untrained' "
        "AND comparison = 'pred-input'",
        [context.study],
    )
    placed = _on_depth_axis(_sel(depth_rows, **base))
    if placed:
        from xmodal_plugins.support import paper_figures as figures  # matplotlib: on first use

        path = figures.untrained_figure(
            placed, context.path("untrained.png"), study=context.study, k=k
        )
        blocks.append(
            ReportFigure(
                path,
                "Figure: untrained networks by depth",
                f"Points: the mean over folds and seeds. Error bars: {error_bars_text(placed)}.",
                alt=f"untrained mNNO@{k}(f(X), X) by depth",
            )
        )
    return blocks


def curves(context: ReportContext) -> list[Any]:
    rows = context.fetch(
        "SELECT * FROM paper_curves WHERE study = ? AND metric = 'mnno'", [context.study]
    )
    if not rows:
        return []
    k = _headline_k([r["k"] for r in rows])
    similarity = _pick([c["similarity"] for c in rows], "cosine")
    chosen = [r for r in _on_depth_axis(rows) if r["k"] == k and r["similarity"] == similarity
              and r["comparison"] in ("pred-target", "input-target")]  # fmt: skip
    if not chosen:
        return []
    from xmodal_plugins.support import paper_figures as figures  # matplotlib: on first use

    path = figures.curves_figure(chosen, context.path("curves.png"), study=context.study, k=k)
    last = max(r["epoch"] for r in rows)
    summary: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        wanted = r["k"] == k and r["comparison"] == "pred-target" and r["epoch"] in (0, last)
        if wanted and r["mean"] is not None:
            key = (r["split"], "first" if r["epoch"] == 0 else "last")
            summary.setdefault(key, []).append(float(r["mean"]))
    caption = []
    if summary:
        lines = ["| items | epoch 0 | epoch " + str(last) + " |", "| --- | --- | --- |"]
        for split in ("train", "test"):
            first = summary.get((split, "first"), [])
            end = summary.get((split, "last"), [])
            lines.append(
                f"| {'training' if split == 'train' else 'held-out'} | "
                f"{number(sum(first) / len(first) if first else None)} | "
                f"{number(sum(end) / len(end) if end else None)} |"
            )
        caption.append(
            f"mNNO@{k}(f(X), Y) averaged over every pair, loss and depth:\n\n" + "\n".join(lines)
        )
    caption.append(
        "Source: view `paper_curves` (metric = 'mnno'). Training and held-out mNNO are not on the "
        "same scale: mNNO depends on the number of items, hence each split's own grey baseline."
    )
    return [
        ReportFigure(
            path,
            "Figure: mNNO(f(X), Y) over epochs, training vs held-out items",
            "\n\n".join(caption),
            alt=f"mNNO@{k}(f(X), Y) over epochs",
        )
    ]


def other_k(context: ReportContext) -> list[Any]:
    rows, base = _table1_rows(context)
    ks = sorted({r["k"] for r in rows if r["k"] is not None})
    if len(ks) < 2:
        return []
    split, similarity = base["split"], base["similarity"]
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        if r["split"] == split and r["similarity"] == similarity:
            groups.setdefault((r["state"], _pair(r), r["k"]), []).append(r)

    def mean(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    body = tuple(
        (state, pair, str(k), *(number(mean([r[c] for r in g]))
                                for c in ("pred_input", "pred_target", "input_target")))
        for (state, pair, k), g in sorted(groups.items())
    )  # fmt: skip
    return [
        ReportTable(
            title=f"mNNO at every recorded k ({split} items, {similarity}; mean over mappings, "
            "depths, losses)",
            columns=("state", "input → target", "k", *COMPARISON_HEADERS),
            rows=body,
            note="Source: view `paper_table1`, averaged over its rows per state, pair and k.",
        )
    ]


def fit(context: ReportContext) -> list[Any]:
    _, base = _table1_rows(context)
    rows = context.fetch("SELECT * FROM paper_fit WHERE study = ?", [context.study])
    split = base["split"] or _pick([r["split"] for r in rows], "test")
    chosen = sorted((r for r in rows if r["split"] == split), key=lambda r: (_order(r), r["state"]))
    if not chosen:
        return []
    body = tuple(
        (_pair(r), _mapping(r), _depth_cell(r["depth"]), r["loss"] or "—", r["state"],
         mean_std(r["mse"], r["mse_std"], 4), mean_std(r["r2"], r["r2_std"]), number(r["recall_at_1"]),
         mean_std(r["recall_at_10"], r["recall_at_10_std"]), number(r["mrr"]), number(r["median_rank"], 1),
         str(r["n"]))
        for r in chosen
    )  # fmt: skip
    return [
        ReportTable(
            title=f"Regression fit and retrieval of the true partner ({split} items)",
            columns=(
                "input → target",
                "mapping",
                "depth",
                "loss",
                "state",
                "MSE",
                "R²",
                "R@1",
                "R@10",
                "MRR",
                "median rank",
                "n",
            ),
            rows=body,
            note="Retrieval: query f(x_i) among all target vectors of the split (cosine); R@k = "
            "share of queries whose partner y_i ranks in the top k. Source: view `paper_fit`.",
        )
    ]


def ratings(context: ReportContext) -> list[Any]:
    rows = context.fetch("SELECT * FROM paper_ratings WHERE study = ?", [context.study])
    if not rows:
        return []
    rated = sorted(rows, key=lambda r: (r["source"], *_order(r), r["state"]))
    low = sorted({r["source"] for r in rated if r["coverage"] is not None and r["coverage"] < 0.05})
    warning = (
        f" **Low coverage** ({', '.join(low)}: under 5 % of the rated pairs): those correlations "
        "rest on few pairs and are noisy."
        if low
        else ""
    )
    body = tuple(
        (r["source"], _pair(r), _mapping(r), _depth_cell(r["depth"]), r["state"], number(r["coverage"], 2),
         _ci(r["rho_before"], r["rho_before_std"], r["rho_before_low"], r["rho_before_high"]),
         _ci(r["rho_after"], r["rho_after_std"], r["rho_after_low"], r["rho_after_high"]),
         mean_std(r["rho_change"], r["rho_change_std"]), str(r["n"]))
        for r in rated
    )  # fmt: skip
    blocks: list[Any] = [
        ReportTable(
            title="Spearman correlation with human similarity ratings, before and after the "
            "mapping",
            columns=(
                "ratings",
                "input → target",
                "mapping",
                "depth",
                "state",
                "coverage",
                "ρ before (X)",
                "ρ after (f(X))",
                "change",
                "n",
            ),
            rows=body,
            note="Coverage: share of the rated pairs whose two words are both probed items. "
            "ρ: mean ± std over runs [mean of the runs' 95 % Fisher intervals over rated pairs]. "
            "Source: view `paper_ratings` (before = comparison input-<ratings>, after = "
            "pred-<ratings>)." + warning,
        )
    ]
    similarity = _pick([x["similarity"] for x in rated], "cosine")
    plot_rows = [r for r in _on_depth_axis(rated)
                 if r["state"] == "untrained" and r["similarity"] == similarity]  # fmt: skip
    if plot_rows:
        from xmodal_plugins.support import paper_figures as figures  # matplotlib: on first use

        path = figures.ratings_figure(plot_rows, context.path("ratings.png"), study=context.study)
        blocks.append(
            ReportFigure(
                path,
                "Figure: rating correlations before and after",
                "Dashed: ρ of the input vectors X (before); solid: ρ of the untrained network's "
                "output f(X) (after), mean ± std over seeds.",
                alt="Spearman correlation with human ratings",
            )
        )
    return blocks


def _config(row: Row) -> tuple[Any, ...]:
    """What a trained run and its `shuffled` control share in `paper_table1` (all but state)."""
    return (row["dataset"], row["input_features"], row["target_features"], row["direction"],
            row["mapping"], row["depth"], row["loss"])  # fmt: skip


def _table1(
    rows: list[Row], k: int, split: str, similarity: str, shuffled: dict[tuple[Any, ...], Row]
) -> ReportTable:
    """Table 1 of the trained mappings; with a column for the `shuffled` control's mNNO(f(X),Y)
    (matched by configuration) when the study ran the control."""
    body = []
    wins = 0
    result = findings(rows)
    for r, adjusted, holds, reverse in zip(
        rows, result["adjusted"], result["holds"], result["reversed"], strict=True
    ):
        win = (
            r["pred_input"] is not None
            and r["pred_target"] is not None
            and (r["pred_input"] > r["pred_target"])
        )
        wins += bool(win)
        verdict = "—" if adjusted is None else "yes" if holds else "reversed" if reverse else "no"
        body.append((
            r["dataset"], _pair(r), r["direction"], _mapping(r), _depth_cell(r["depth"]), r["loss"] or "—",
            _ci(r["pred_input"], r["pred_input_std"], r.get("pred_input_low"), r.get("pred_input_high")),
            _ci(r["pred_target"], r["pred_target_std"], r.get("pred_target_low"), r.get("pred_target_high")),
            _ci(r["input_target"], r["input_target_std"], r.get("input_target_low"), r.get("input_target_high")),
            *([_control(shuffled.get(_config(r)))] if shuffled else []),
            _ci(r.get("diff"), None, r.get("diff_low"), r.get("diff_high")),
            "yes" if win else "no", _p(r.get("diff_p")), _p(adjusted), verdict, str(r["n"]),
        ))  # fmt: skip
    control = (
        " Shuffled f(X),Y: mNNO(f(X),Y) of the `shuffled` control, the same mapping trained on "
        "pairs whose targets are permuted (docs/metrics.md); — where it did not run."
        if shuffled
        else ""
    )
    return ReportTable(
        title=f"Table 1: mNNO@{k} of trained mappings on {split} items ({similarity})",
        columns=(
            "dataset",
            "input → target",
            "direction",
            "mapping",
            "depth",
            "loss",
            *COMPARISON_HEADERS,
            *(["shuffled f(X),Y"] if shuffled else []),
            "f(X),X − f(X),Y",
            "f(X),X > f(X),Y",
            "p",
            "p (Holm)",
            "holds",
            "n",
        ),
        rows=body,
        note=f"{findings_sentence(result)} Point estimates: mNNO(f(X),X) > mNNO(f(X),Y) in "
        f"{wins} of {len(rows)} rows. Depth = hidden layers (0 = linear map). Each mNNO: mean ± "
        "std over the n runs, then its 95 % interval over items [low, high] (the mean of the "
        "runs' bounds). p: the paired test of the difference, the largest p over the n runs "
        "(the finding must hold in every run); p (Holm): adjusted over the configurations of "
        "this table; holds: adjusted p ≤ 0.05 and every run's difference positive "
        f"(docs/statistics.md).{control} Source: view `paper_table1` (state = 'trained'"
        + (", and 'shuffled' for the control)." if shuffled else ")."),
    )


def _control(row: Row | None) -> str:
    """The shuffled control's mNNO(f(X),Y) (mean ± std), or — when it did not run."""
    return "—" if row is None else mean_std(row["pred_target"], row["pred_target_std"])


def _compact(table: ReportTable, rows: list[Row], k: int, split: str, what: str) -> ReportTable:
    """The headline for an 80-column terminal: means only (report.md has the ± std)."""
    body = tuple(
        (_pair(r), "linear" if r["depth"] == 0 else f"{r['mapping']}{_depth_text(r['depth'])}",
         r["loss"] or "—", number(r["pred_input"]), number(r["pred_target"]),
         number(r["input_target"]), str(r["n"]))
        for r in rows
    )  # fmt: skip
    return ReportTable(
        title=f"mNNO@{k}, {what}, {split} items (mean over n runs)",
        columns=("input → target", "map", "loss", "f(X),X", "f(X),Y", "X,Y", "n"),
        rows=body,
        note=table.note.split(" Depth =")[0].split(" Source:")[0].split(" Point estimates:")[0],
        headline=True,
    )


def _depth_text(depth: int | None) -> str:
    return "" if depth is None else str(depth)


def _depth_cell(depth: int | None) -> str:
    """A depth in a table: — for a family without one."""
    return "—" if depth is None else str(depth)


def _untrained_table(rows: list[Row], k: int, split: str, similarity: str) -> ReportTable:
    body = tuple(
        (r["dataset"], _pair(r), r["direction"], _mapping(r), _depth_cell(r["depth"]),
         mean_std(r["pred_input"], r["pred_input_std"]), mean_std(r["pred_target"], r["pred_target_std"]),
         mean_std(r["input_target"], r["input_target_std"]), str(r["n"]))
        for r in rows
    )  # fmt: skip
    return ReportTable(
        title=f"Untrained networks: mNNO@{k} on {split} items ({similarity})",
        columns=(
            "dataset",
            "input → target",
            "direction",
            "mapping",
            "depth",
            *COMPARISON_HEADERS,
            "n",
        ),
        rows=body,
        note="The same architectures at initialisation, never trained. Source: view "
        "`paper_untrained`.",
    )


MNNO = ("mnno",)

SECTIONS = (
    ReportSectionSpec(
        name="paper-table1",
        render=table1,
        views=_views("paper_table1"),
        order=10,
        metrics=MNNO,
        description="Table 1: mNNO of trained mappings (and the terminal's headline)",
    ),
    ReportSectionSpec(
        name="paper-depth",
        render=depth,
        views=_views("paper_table1", "paper_depth"),
        order=20,
        metrics=MNNO,
        description="the three mNNO of trained mappings by depth (depth.png)",
    ),
    ReportSectionSpec(
        name="paper-untrained",
        render=untrained,
        views=_views("paper_table1", "paper_untrained", "paper_depth"),
        order=30,
        metrics=MNNO,
        description="untrained networks: table and mNNO(f(X), X) by depth (untrained.png)",
    ),
    ReportSectionSpec(
        name="paper-curves",
        render=curves,
        views=_views("paper_curves"),
        order=40,
        description="mNNO(f(X), Y) over epochs, training vs held-out items (curves.png)",
    ),
    ReportSectionSpec(
        name="paper-other-k",
        render=other_k,
        views=_views("paper_table1"),
        order=50,
        metrics=MNNO,
        description="mNNO at every recorded k",
    ),
    ReportSectionSpec(
        name="paper-fit",
        render=fit,
        views=_views("paper_table1", "paper_fit"),
        order=60,
        metrics=("mse", "r2", "recall", "mrr", "median_rank"),
        description="regression fit (MSE, R²) and retrieval of the true partner",
    ),
    ReportSectionSpec(
        name="paper-ratings",
        render=ratings,
        views=_views("paper_ratings"),
        order=70,
        metrics=("spearman", "coverage"),
        description="Spearman correlation with human similarity ratings (ratings.png)",
    ),
)


@hookimpl
def register_report_sections(register: Any) -> None:
    for section in SECTIONS:
        register(section)
