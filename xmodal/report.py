"""`xmodal report`: a study's results laid out as Collell & Moens (2018) show them.

Everything is read from the `paper_*` views (xmodal/views.py, docs/report.md), so any number in a
report can be re-queried with `xmodal query`. `build_report` writes report.md and PNG figures into
a directory and returns the headline table for the terminal.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import duckdb

from xmodal import figures
from xmodal.errors import XmodalError
from xmodal.store import Store
from xmodal.views import VIEW_NAMES

Row = dict[str, Any]
HEADLINE_K = 10

COMPARISON_HEADERS = ("mNNO(f(X),X)", "mNNO(f(X),Y)", "mNNO(X,Y)")


class ReportError(XmodalError):
    """The report cannot be made: unknown study, no results, or an unwritable directory."""


@attrs.frozen
class Table:
    """A titled table: rendered as Markdown in report.md and with rich in the terminal."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "| " + " | ".join("---" for _ in self.columns) + " |",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@attrs.frozen
class Report:
    """What `build_report` wrote, and the headline table to print."""

    study: str
    directory: Path
    markdown: Path
    figures: tuple[Path, ...]
    headline: Table | None


# -- reading --------------------------------------------------------------------------------------


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _ensure_views(store: Store) -> None:
    """Databases written before the views existed get them (migration 2) on first report."""
    with store.reading() as con:
        present = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'paper_%'"
            ).fetchall()
        }
        has_studies = bool(
            con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'studies'"
            ).fetchone()[0]
        )
    if not has_studies:
        raise ReportError(f"{store.path}: no studies recorded yet (run one with `xmodal run`)")
    if not set(VIEW_NAMES) <= present:
        with store.writing():
            pass  # opening for writing applies the pending migrations


def _study_row(con: duckdb.DuckDBPyConnection, store: Store, study: str) -> Row:
    names = [n for (n,) in con.execute("SELECT DISTINCT name FROM studies ORDER BY 1").fetchall()]
    if study not in names:
        close = difflib.get_close_matches(study, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(names) if names else "none"
        raise ReportError(
            f"no study named {study!r} in {store.path}{hint}\n"
            f"  studies there: {known}\n"
            "  (STUDY is the [study] name from the TOML file, as `xmodal status` lists it)"
        )
    return _fetch(
        con,
        "SELECT name, hash, path, source, created FROM studies WHERE name = ? "
        "ORDER BY created DESC LIMIT 1",
        [study],
    )[0]


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


# -- formatting -----------------------------------------------------------------------------------


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    value = float(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def _pm(mean: Any, std: Any, digits: int = 3) -> str:
    text = _num(mean, digits)
    if std is None or mean is None or math.isnan(float(std)):
        return text
    return f"{text} ± {float(std):.{digits}f}"


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


# -- the report -----------------------------------------------------------------------------------


def build_report(store: Store, study: str, out: Path) -> Report:
    """Write `out`/report.md and the figures of `study` (latest version) from the store."""
    _ensure_views(store)
    with store.reading() as con:
        meta = _study_row(con, store, study)
        counts = _fetch(
            con,
            """SELECT count(*) AS planned,
                      count(*) FILTER (WHERE r.status = 'finished') AS finished,
                      count(*) FILTER (WHERE r.status = 'failed') AS failed
               FROM study_runs sr LEFT JOIN runs r USING (run_id)
               WHERE sr.study = ? AND sr.study_hash = ?""",
            [study, meta["hash"]],
        )[0]
        if not counts["finished"]:
            where = f" `xmodal run {meta['path']}`" if meta["path"] else " `xmodal run STUDY.toml`"
            raise ReportError(
                f"study {study!r} has no finished runs in {store.path} "
                f"({counts['planned']} planned, {counts['failed']} failed): run it first with{where}"
            )
        q = [study]
        table1 = _fetch(con, "SELECT * FROM paper_table1 WHERE study = ?", q)
        depth = _fetch(con, "SELECT * FROM paper_depth WHERE study = ?", q)
        fit = _fetch(con, "SELECT * FROM paper_fit WHERE study = ?", q)
        curves = _fetch(con, "SELECT * FROM paper_curves WHERE study = ? AND metric = 'mnno'", q)
        ratings = _fetch(con, "SELECT * FROM paper_ratings WHERE study = ?", q)
        prov = _fetch(
            con,
            """SELECT DISTINCT r.xmodal_version, r.git_commit, r.torch_version, r.numpy_version
               FROM paper_runs p JOIN runs r USING (run_id) WHERE p.study = ?""",
            q,
        )
        datasets = sorted({r["dataset"] for r in _fetch(
            con, "SELECT DISTINCT dataset FROM paper_runs WHERE study = ?", q)})  # fmt: skip

    _prepare(out)
    k = _headline_k([r["k"] for r in table1])
    split = _pick([r["split"] for r in table1], "test")
    similarity = _pick([r["similarity"] for r in table1], "cosine")

    def sel(rows: list[Row], **eq: Any) -> list[Row]:
        return [r for r in rows if all(r.get(c) == v for c, v in eq.items())]

    base = {"k": k, "split": split, "similarity": similarity}
    trained = sorted(sel(table1, state="trained", **base), key=_order)
    untrained = sorted(sel(table1, state="untrained", **base), key=_order)

    sections: list[str] = []
    written: list[Path] = []
    headline: Table | None = None

    if trained:
        table = _table1(trained, k, split, similarity)
        headline = _compact(table, trained, k, split, "trained mappings")
        sections.append(_section(table))
        depth_rows = _on_depth_axis(sel(depth, state="trained", **base))
        if depth_rows:
            path = figures.depth_figure(depth_rows, out / "depth.png", study=study, k=k)
            written.append(path)
            sections.append(
                "### Figure: mNNO by depth (trained)\n\n"
                f"![mNNO@{k} by depth]({path.name})\n\n"
                "Blue: mNNO(f(X), X); red: mNNO(f(X), Y); grey dashed: the baseline mNNO(X, Y). "
                "Error bars: ± one standard deviation over folds and seeds."
            )
    if untrained:
        table = _untrained_table(untrained, k, split, similarity)
        headline = headline or _compact(table, untrained, k, split, "untrained networks")
        sections.append(_section(table))
        rows = _on_depth_axis(sel(depth, state="untrained", comparison="pred-input", **base))
        if rows:
            path = figures.untrained_figure(rows, out / "untrained.png", study=study, k=k)
            written.append(path)
            sections.append(
                "### Figure: untrained networks by depth\n\n"
                f"![untrained mNNO@{k}(f(X), X) by depth]({path.name})"
            )
    if curves:
        ck = _headline_k([r["k"] for r in curves])
        crows = [r for r in _on_depth_axis(curves) if r["k"] == ck
                 and r["similarity"] == _pick([c["similarity"] for c in curves], "cosine")
                 and r["comparison"] in ("pred-target", "input-target")]  # fmt: skip
        if crows:
            path = figures.curves_figure(crows, out / "curves.png", study=study, k=ck)
            written.append(path)
            sections.append(_curves_section(curves, ck, path))
    other_k = _other_k_table(table1, split, similarity)
    if other_k is not None:
        sections.append(_section(other_k))
    fit_rows = sorted(
        (r for r in fit if r["split"] == split), key=lambda r: (_order(r), r["state"])
    )
    if fit_rows:
        sections.append(_section(_fit_table(fit_rows, split)))
    if ratings:
        rated = sorted(ratings, key=lambda r: (r["source"], *_order(r), r["state"]))
        sections.append(_section(_ratings_table(rated)))
        plot_rows = [r for r in _on_depth_axis(rated) if r["state"] == "untrained"
                     and r["similarity"] == _pick([x["similarity"] for x in rated], "cosine")]  # fmt: skip
        if plot_rows:
            path = figures.ratings_figure(plot_rows, out / "ratings.png", study=study)
            written.append(path)
            sections.append(
                "### Figure: rating correlations before and after\n\n"
                f"![Spearman correlation with human ratings]({path.name})\n\n"
                "Dashed: ρ of the input vectors X (before); solid: ρ of the untrained network's "
                "output f(X) (after), mean ± std over seeds."
            )

    header = _header(meta, counts, datasets, prov, k, split, similarity)
    text = "\n\n".join([header, *sections]) + "\n"
    markdown = out / "report.md"
    try:
        markdown.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {markdown}: {exc.strerror or exc}") from None
    return Report(study, out, markdown, tuple(written), headline)


def _prepare(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(
            f"--out {out}: cannot create the directory ({exc.strerror or exc}); "
            "choose a directory you can write to"
        ) from None
    if not out.is_dir() or not os.access(out, os.W_OK | os.X_OK):
        raise ReportError(
            f"--out {out}: not a writable directory; choose a directory you can write to"
        )


def _section(table: Table) -> str:
    parts = [f"## {table.title}", table.markdown()]
    if table.note:
        parts.append(table.note)
    return "\n\n".join(parts)


def _header(
    meta: Row,
    counts: Row,
    datasets: list[str],
    prov: list[Row],
    k: int | None,
    split: str | None,
    similarity: str | None,
) -> str:
    versions = sorted({f"xmodal {p['xmodal_version']}, torch {p['torch_version']}, "
                       f"numpy {p['numpy_version']}" for p in prov})  # fmt: skip
    commits = sorted({(p["git_commit"] or "unknown")[:12] for p in prov})
    description = ""
    if meta["source"]:
        for line in meta["source"].splitlines():
            stripped = line.strip()
            if stripped.startswith("description"):
                description = stripped.split("=", 1)[1].strip().strip('"')
                break
    lines = [
        f"# {meta['name']}: report",
        "",
        *([description, ""] if description else []),
        f"- study file: `{meta['path']}` (version {meta['hash'][:12]}, recorded "
        f"{str(meta['created'])[:19]})",
        f"- dataset: {', '.join(datasets)}",
        f"- runs: {counts['finished']} finished of {counts['planned']} planned"
        + (f", {counts['failed']} failed" if counts["failed"] else ""),
        f"- software: {'; '.join(versions)}; git commit {', '.join(commits)}",
        f"- headline: mNNO at k = {k}, {similarity} similarity, on {split} items; mean ± sample "
        "std over folds × seeds (n runs)",
        "",
        "mNNO^k(V, Z) = 1/(kN) Σ_i |NN^k(v_i) ∩ NN^k(z_i)|: the share of each item's k nearest "
        "neighbours that two spaces have in common (Collell & Moens, 2018). X: the mapping's "
        "inputs, Y: the paired target vectors, f(X): the predictions.",
        "",
        "Every number comes from the views in docs/report.md; e.g. "
        f"`xmodal query \"SELECT * FROM paper_table1 WHERE study = '{meta['name']}' AND k = {k}\"`.",
    ]
    return "\n".join(lines)


def _table1(rows: list[Row], k: int, split: str, similarity: str) -> Table:
    body = []
    wins = 0
    for r in rows:
        win = (
            r["pred_input"] is not None
            and r["pred_target"] is not None
            and (r["pred_input"] > r["pred_target"])
        )
        wins += bool(win)
        body.append((
            r["dataset"], _pair(r), r["direction"], _mapping(r), str(r["depth"]), r["loss"] or "—",
            _pm(r["pred_input"], r["pred_input_std"]), _pm(r["pred_target"], r["pred_target_std"]),
            _pm(r["input_target"], r["input_target_std"]), "yes" if win else "no", str(r["n"]),
        ))  # fmt: skip
    return Table(
        title=f"Table 1: mNNO@{k} of trained mappings on {split} items ({similarity})",
        columns=(
            "dataset",
            "input → target",
            "direction",
            "mapping",
            "depth",
            "loss",
            *COMPARISON_HEADERS,
            "f(X),X > f(X),Y",
            "n",
        ),
        rows=tuple(body),
        note=f"mNNO(f(X),X) > mNNO(f(X),Y) in {wins} of {len(rows)} rows. Depth = hidden layers "
        "(0 = linear map). Source: view `paper_table1` (state = 'trained').",
    )


def _compact(table: Table, rows: list[Row], k: int, split: str, what: str) -> Table:
    """The headline for an 80-column terminal: means only (report.md has the ± std)."""
    body = tuple(
        (_pair(r), "linear" if r["depth"] == 0 else f"{r['mapping']}{r['depth']}",
         r["loss"] or "—", _num(r["pred_input"]), _num(r["pred_target"]),
         _num(r["input_target"]), str(r["n"]))
        for r in rows
    )  # fmt: skip
    return Table(
        title=f"mNNO@{k}, {what}, {split} items (mean over n runs)",
        columns=("input → target", "map", "loss", "f(X),X", "f(X),Y", "X,Y", "n"),
        rows=body,
        note=table.note.split(" Depth =")[0].split(" Source:")[0],
    )


def _untrained_table(rows: list[Row], k: int, split: str, similarity: str) -> Table:
    body = tuple(
        (r["dataset"], _pair(r), r["direction"], _mapping(r), str(r["depth"]),
         _pm(r["pred_input"], r["pred_input_std"]), _pm(r["pred_target"], r["pred_target_std"]),
         _pm(r["input_target"], r["input_target_std"]), str(r["n"]))
        for r in rows
    )  # fmt: skip
    return Table(
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


def _other_k_table(rows: list[Row], split: str, similarity: str) -> Table | None:
    ks = sorted({r["k"] for r in rows if r["k"] is not None})
    if len(ks) < 2:
        return None
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        if r["split"] == split and r["similarity"] == similarity:
            groups.setdefault((r["state"], _pair(r), r["k"]), []).append(r)

    def mean(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    body = tuple(
        (state, pair, str(k), *(_num(mean([r[c] for r in g]))
                                for c in ("pred_input", "pred_target", "input_target")))
        for (state, pair, k), g in sorted(groups.items())
    )  # fmt: skip
    return Table(
        title=f"mNNO at every recorded k ({split} items, {similarity}; mean over mappings, depths, "
        "losses)",
        columns=("state", "input → target", "k", *COMPARISON_HEADERS),
        rows=body,
        note="Source: view `paper_table1`, averaged over its rows per state, pair and k.",
    )


def _fit_table(rows: list[Row], split: str) -> Table:
    body = tuple(
        (_pair(r), _mapping(r), str(r["depth"]), r["loss"] or "—", r["state"],
         _pm(r["mse"], r["mse_std"], 4), _pm(r["r2"], r["r2_std"]), _num(r["recall_at_1"]),
         _pm(r["recall_at_10"], r["recall_at_10_std"]), _num(r["mrr"]), _num(r["median_rank"], 1),
         str(r["n"]))
        for r in rows
    )  # fmt: skip
    return Table(
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


def _ratings_table(rows: list[Row]) -> Table:
    low = sorted({r["source"] for r in rows if r["coverage"] is not None and r["coverage"] < 0.05})
    warning = (
        f" **Low coverage** ({', '.join(low)}: under 5 % of the rated pairs): those correlations "
        "rest on few pairs and are noisy."
        if low
        else ""
    )
    body = tuple(
        (r["source"], _pair(r), _mapping(r), str(r["depth"]), r["state"], _num(r["coverage"], 2),
         _pm(r["rho_before"], r["rho_before_std"]), _pm(r["rho_after"], r["rho_after_std"]),
         _pm(r["rho_change"], r["rho_change_std"]), str(r["n"]))
        for r in rows
    )  # fmt: skip
    return Table(
        title="Spearman correlation with human similarity ratings, before and after the mapping",
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
        note="Coverage: share of the rated pairs whose two words are both probed items. Source: "
        "view `paper_ratings` (before = comparison input-<ratings>, after = pred-<ratings>)."
        + warning,
    )


def _curves_section(curves: list[Row], k: int, path: Path) -> str:
    last = max(r["epoch"] for r in curves)
    summary: dict[tuple[str, str], list[float]] = {}
    for r in curves:
        wanted = r["k"] == k and r["comparison"] == "pred-target" and r["epoch"] in (0, last)
        if wanted and r["mean"] is not None:
            key = (r["split"], "first" if r["epoch"] == 0 else "last")
            summary.setdefault(key, []).append(float(r["mean"]))
    parts = [
        "### Figure: mNNO(f(X), Y) over epochs, training vs held-out items",
        f"![mNNO@{k}(f(X), Y) over epochs]({path.name})",
    ]
    if summary:
        lines = ["| items | epoch 0 | epoch " + str(last) + " |", "| --- | --- | --- |"]
        for split in ("train", "test"):
            first = summary.get((split, "first"), [])
            end = summary.get((split, "last"), [])
            lines.append(
                f"| {'training' if split == 'train' else 'held-out'} | "
                f"{_num(sum(first) / len(first) if first else None)} | "
                f"{_num(sum(end) / len(end) if end else None)} |"
            )
        parts.append(
            f"mNNO@{k}(f(X), Y) averaged over every pair, loss and depth:\n\n" + "\n".join(lines)
        )
    parts.append(
        "Source: view `paper_curves` (metric = 'mnno'). Training and held-out mNNO are not on the "
        "same scale: mNNO depends on the number of items, hence each split's own grey baseline."
    )
    return "\n\n".join(parts)
