"""SQL views that reproduce the tables and figures of Collell & Moens (2018).

They are schema migration 2 (`xmodal.store.MIGRATIONS`): once applied, never edit this text —
change a view with a new migration (`CREATE OR REPLACE VIEW ...`). docs/report.md shows each
view's SQL and columns; `xmodal report` reads nothing but these views, so every number in a report
can be re-queried with `xmodal query`.

Every view covers the latest version of each study (the `studies` row with the newest `created`),
through the runs that version plans (`study_runs`), and finished runs only. Means and sample
standard deviations are over the runs that differ only in fold and seed (`n` counts them).
"""

from __future__ import annotations

# Names of the views, in the order they are created (later ones read earlier ones).
VIEW_NAMES: tuple[str, ...] = (
    "paper_runs",
    "paper_depth",
    "paper_table1",
    "paper_untrained",
    "paper_fit",
    "paper_curves",
    "paper_ratings",
)

PAPER_RUNS = """
CREATE VIEW paper_runs AS
    WITH latest AS (
        SELECT name, arg_max(hash, created) AS hash FROM studies GROUP BY name
    )
    SELECT sr.study, r.run_id, r.dataset, r.input_features, r.target_features, r.direction,
           r.fold, r.mapping, r.depth, r.loss, r.state, r.seed, r.epochs
    FROM latest l
    JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
    JOIN runs r ON r.run_id = sr.run_id
    WHERE r.status = 'finished';
"""

PAPER_DEPTH = """
CREATE VIEW paper_depth AS
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, p.state, x.split, x.similarity, x.k, x.comparison,
           count(*) AS n, avg(x.value) AS mean, stddev_samp(x.value) AS std
    FROM paper_runs p
    JOIN results x ON x.run_id = p.run_id
    WHERE x.metric = 'mnno'
    GROUP BY ALL;
"""

PAPER_TABLE1 = """
CREATE VIEW paper_table1 AS
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, p.state, x.split, x.similarity, x.k,
           count(DISTINCT p.run_id) AS n,
           avg(x.value) FILTER (WHERE x.comparison = 'pred-input') AS pred_input,
           stddev_samp(x.value) FILTER (WHERE x.comparison = 'pred-input') AS pred_input_std,
           avg(x.value) FILTER (WHERE x.comparison = 'pred-target') AS pred_target,
           stddev_samp(x.value) FILTER (WHERE x.comparison = 'pred-target') AS pred_target_std,
           avg(x.value) FILTER (WHERE x.comparison = 'input-target') AS input_target,
           stddev_samp(x.value) FILTER (WHERE x.comparison = 'input-target') AS input_target_std
    FROM paper_runs p
    JOIN results x ON x.run_id = p.run_id
    WHERE x.metric = 'mnno'
    GROUP BY ALL;
"""

PAPER_UNTRAINED = """
CREATE VIEW paper_untrained AS
    SELECT study, dataset, input_features, target_features, direction, mapping, depth, split,
           similarity, k, n, pred_input, pred_input_std, pred_target, pred_target_std,
           input_target
    FROM paper_table1
    WHERE state = 'untrained';
"""

PAPER_FIT = """
CREATE VIEW paper_fit AS
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
    JOIN results x ON x.run_id = p.run_id
    WHERE x.metric IN ('mse', 'r2')
       OR (x.metric IN ('recall', 'mrr', 'median_rank') AND x.comparison = 'pred-target'
           AND coalesce(x.similarity, 'cosine') = 'cosine')
    GROUP BY ALL;
"""

PAPER_CURVES = """
CREATE VIEW paper_curves AS
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, c.epoch, c.split, c.metric, c.comparison, c.k, c.similarity,
           count(*) AS n, avg(c.value) AS mean, stddev_samp(c.value) AS std
    FROM paper_runs p
    JOIN curves c ON c.run_id = p.run_id
    GROUP BY ALL;
"""

PAPER_RATINGS = """
CREATE VIEW paper_ratings AS
    WITH rows AS (
        SELECT p.*, x.split, x.metric, x.similarity, x.value,
               regexp_extract(x.comparison, '^(input|pred|target)-(.+)$', 1) AS space,
               regexp_extract(x.comparison, '^(input|pred|target)-(.+)$', 2) AS source
        FROM paper_runs p
        JOIN results x ON x.run_id = p.run_id
        WHERE x.metric IN ('spearman', 'coverage')
    ),
    per_run AS (
        SELECT study, run_id, dataset, input_features, target_features, direction, mapping,
               depth, loss, state, split, source, similarity,
               max(value) FILTER (WHERE space = 'input') AS rho_before,
               max(value) FILTER (WHERE space = 'pred') AS rho_after,
               max(value) FILTER (WHERE space = 'target') AS rho_target
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
           avg(c.coverage) AS coverage
    FROM per_run r
    LEFT JOIN coverage c USING (run_id, split, source)
    GROUP BY ALL;
"""

VIEWS: dict[str, str] = dict(
    zip(
        VIEW_NAMES,
        (
            PAPER_RUNS,
            PAPER_DEPTH,
            PAPER_TABLE1,
            PAPER_UNTRAINED,
            PAPER_FIT,
            PAPER_CURVES,
            PAPER_RATINGS,
        ),
        strict=True,
    )
)

# Schema migration 2: every view above, in order.
MIGRATION: str = "".join(VIEWS.values())


def _over_current_results(sql: str) -> str:
    return sql.replace("CREATE VIEW", "CREATE OR REPLACE VIEW").replace(
        "JOIN results x ON x.run_id = p.run_id",
        "JOIN current_results x ON x.run_id = p.run_id AND x.study = p.study",
    )


# Schema migration 4: the same views over `current_results` (the measurements each study's
# current version plans), so a metric whose parameters changed shows only its current rows.
OVER_CURRENT_RESULTS: str = "".join(_over_current_results(v) for v in VIEWS.values())
