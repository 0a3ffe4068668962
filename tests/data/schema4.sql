-- The schema of an xmodal database before report views moved into plugins (schema 4): its
-- four migrations verbatim, for the test that such a database still reports and queries.
-- migration 1
CREATE TABLE studies (
        name VARCHAR NOT NULL,
        hash VARCHAR NOT NULL,
        path VARCHAR,
        source VARCHAR,
        created TIMESTAMP NOT NULL,
        PRIMARY KEY (name, hash)
    );
    CREATE TABLE study_runs (
        study VARCHAR NOT NULL,
        study_hash VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (study, study_hash, run_id)
    );
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        study VARCHAR,
        dataset VARCHAR,
        input_features VARCHAR,
        target_features VARCHAR,
        direction VARCHAR,
        split VARCHAR,
        fold INTEGER,
        mapping VARCHAR,
        depth INTEGER,
        loss VARCHAR,
        state VARCHAR,
        seed INTEGER,
        epochs INTEGER,
        batch_size VARCHAR,
        optimizer VARCHAR,
        lr DOUBLE,
        n_train INTEGER,
        n_test INTEGER,
        config JSON,
        status VARCHAR NOT NULL,
        error VARCHAR,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        train_seconds DOUBLE,
        probe_seconds DOUBLE,
        torch_threads INTEGER,
        xmodal_version VARCHAR,
        git_commit VARCHAR,
        torch_version VARCHAR,
        numpy_version VARCHAR
    );
    CREATE TABLE results (
        run_id VARCHAR NOT NULL,
        split VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        comparison VARCHAR NOT NULL,
        k INTEGER,
        similarity VARCHAR,
        epoch INTEGER,
        value DOUBLE
    );
    CREATE TABLE curves (
        run_id VARCHAR NOT NULL,
        epoch INTEGER NOT NULL,
        split VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        comparison VARCHAR,
        k INTEGER,
        similarity VARCHAR,
        value DOUBLE
    );
    CREATE VIEW study_results AS
        SELECT sr.study, r.*, res.split AS result_split, res.metric, res.comparison, res.k,
               res.similarity, res.epoch, res.value
        FROM study_runs sr
        JOIN studies s ON s.name = sr.study AND s.hash = sr.study_hash
        JOIN runs r USING (run_id)
        JOIN results res USING (run_id);
-- migration 2
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

CREATE VIEW paper_depth AS
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, p.state, x.split, x.similarity, x.k, x.comparison,
           count(*) AS n, avg(x.value) AS mean, stddev_samp(x.value) AS std
    FROM paper_runs p
    JOIN results x ON x.run_id = p.run_id
    WHERE x.metric = 'mnno'
    GROUP BY ALL;

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

CREATE VIEW paper_untrained AS
    SELECT study, dataset, input_features, target_features, direction, mapping, depth, split,
           similarity, k, n, pred_input, pred_input_std, pred_target, pred_target_std,
           input_target
    FROM paper_table1
    WHERE state = 'untrained';

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

CREATE VIEW paper_curves AS
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, c.epoch, c.split, c.metric, c.comparison, c.k, c.similarity,
           count(*) AS n, avg(c.value) AS mean, stddev_samp(c.value) AS std
    FROM paper_runs p
    JOIN curves c ON c.run_id = p.run_id
    GROUP BY ALL;

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
-- migration 3
CREATE VIEW current_studies AS
        SELECT name, arg_max(hash, created) AS hash, max(created) AS created
        FROM studies GROUP BY name;
    CREATE OR REPLACE VIEW study_results AS
        SELECT sr.study, r.* EXCLUDE (study), res.split AS result_split, res.metric,
               res.comparison, res.k, res.similarity, res.epoch, res.value
        FROM current_studies l
        JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
        JOIN runs r USING (run_id)
        JOIN results res USING (run_id);
-- migration 4
ALTER TABLE runs ADD COLUMN data_fingerprint VARCHAR;
    ALTER TABLE runs ADD COLUMN artifact VARCHAR;
    ALTER TABLE results ADD COLUMN measurement_id VARCHAR;
    CREATE TABLE measurements (
        measurement_id VARCHAR PRIMARY KEY,
        run_id VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        params JSON,
        include_self BOOLEAN,
        status VARCHAR NOT NULL,
        error VARCHAR,
        seconds DOUBLE,
        measured_at TIMESTAMP
    );
    CREATE TABLE study_measurements (
        study VARCHAR NOT NULL,
        study_hash VARCHAR NOT NULL,
        measurement_id VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        PRIMARY KEY (study, study_hash, measurement_id)
    );
    CREATE VIEW current_results AS
        SELECT sr.study, res.*
        FROM current_studies l
        JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
        JOIN results res ON res.run_id = sr.run_id
        WHERE res.measurement_id IS NULL
           OR EXISTS (SELECT 1 FROM study_measurements sm
                      WHERE sm.study = l.name AND sm.study_hash = l.hash
                        AND sm.measurement_id = res.measurement_id);
    CREATE OR REPLACE VIEW study_results AS
        SELECT x.study, r.* EXCLUDE (study), x.split AS result_split, x.metric, x.comparison,
               x.k, x.similarity, x.epoch, x.value, x.measurement_id
        FROM current_results x
        JOIN runs r USING (run_id);
    
CREATE OR REPLACE VIEW paper_runs AS
    WITH latest AS (
        SELECT name, arg_max(hash, created) AS hash FROM studies GROUP BY name
    )
    SELECT sr.study, r.run_id, r.dataset, r.input_features, r.target_features, r.direction,
           r.fold, r.mapping, r.depth, r.loss, r.state, r.seed, r.epochs
    FROM latest l
    JOIN study_runs sr ON sr.study = l.name AND sr.study_hash = l.hash
    JOIN runs r ON r.run_id = sr.run_id
    WHERE r.status = 'finished';

CREATE OR REPLACE VIEW paper_depth AS
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, p.state, x.split, x.similarity, x.k, x.comparison,
           count(*) AS n, avg(x.value) AS mean, stddev_samp(x.value) AS std
    FROM paper_runs p
    JOIN current_results x ON x.run_id = p.run_id AND x.study = p.study
    WHERE x.metric = 'mnno'
    GROUP BY ALL;

CREATE OR REPLACE VIEW paper_table1 AS
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
    JOIN current_results x ON x.run_id = p.run_id AND x.study = p.study
    WHERE x.metric = 'mnno'
    GROUP BY ALL;

CREATE OR REPLACE VIEW paper_untrained AS
    SELECT study, dataset, input_features, target_features, direction, mapping, depth, split,
           similarity, k, n, pred_input, pred_input_std, pred_target, pred_target_std,
           input_target
    FROM paper_table1
    WHERE state = 'untrained';

CREATE OR REPLACE VIEW paper_fit AS
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
    GROUP BY ALL;

CREATE OR REPLACE VIEW paper_curves AS
    SELECT p.study, p.dataset, p.input_features, p.target_features, p.direction, p.mapping,
           p.depth, p.loss, c.epoch, c.split, c.metric, c.comparison, c.k, c.similarity,
           count(*) AS n, avg(c.value) AS mean, stddev_samp(c.value) AS std
    FROM paper_runs p
    JOIN curves c ON c.run_id = p.run_id
    GROUP BY ALL;

CREATE OR REPLACE VIEW paper_ratings AS
    WITH rows AS (
        SELECT p.*, x.split, x.metric, x.similarity, x.value,
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
