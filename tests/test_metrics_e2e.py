"""The new metrics end to end: named in a study, run through the CLI, queried from DuckDB."""

from __future__ import annotations

import itertools
import json

from tests.conftest import rows

STUDY = """\
[study]
name = "metrics"
seeds = [0]

[data]
dataset = "synthetic"
pairs = [["text", "image"]]
directions = ["forward"]

[data.params]
n_items = 200
dim_text = 12
dim_image = 16
clusters = 4

[[mapping]]
name = "linear"

[[loss]]
name = "mse"

[train]
epochs = 2
batch_size = 32

[probes]
trained = true
untrained = true
splits = ["test"]

[[metric]]
name = "retrieval"
k = [1, 5]
directions = ["pred-target", "target-pred"]
map_at = "all"

[[metric]]
name = "cka"

[[metric]]
name = "rsa"

[[metric]]
name = "knn_jaccard"
k = [5]

[[metric]]
name = "similarity_correlation"
ratings_file = ["{ratings}"]
"""


def test_a_study_naming_every_new_metric_runs_and_is_queryable(cli, write_study, db, tmp_path):
    ratings = tmp_path / "itempairs.tsv"
    pairs = itertools.combinations(range(30), 2)
    ratings.write_text("".join(f"item{a}\titem{b}\t{(a * 7 + b * 3) % 11}\n" for a, b in pairs))
    study = write_study(STUDY.format(ratings=ratings))
    result = cli("run", study, "--db", db)
    assert result.code == 0, result.output
    assert "2 trained" in result.output

    found = set(rows(db, "SELECT DISTINCT metric, comparison FROM results"))
    expected = {
        *(
            (m, c)
            for m in ("recall", "median_rank", "mrr", "label_precision", "label_map")
            for c in ("pred-target", "target-pred")
        ),
        *(("cka", c) for c in ("pred-input", "pred-target", "input-target")),
        *(("rsa", c) for c in ("pred-input", "pred-target", "input-target")),
        *(("knn_jaccard", c) for c in ("pred-input", "pred-target", "input-target")),
        *(
            (m, f"{s}-itempairs")
            for m in ("spearman", "coverage")
            for s in ("input", "pred", "target")
        ),
    }
    assert found == expected

    # Every value lies in its metric's declared range, and per-row ranges hold.
    for metric, low, high in rows(
        db, "SELECT metric, min(value), max(value) FROM results GROUP BY metric"
    ):
        if metric == "median_rank":
            assert 1 <= low <= high <= 200
        else:
            assert -1 <= low <= high <= 1, metric
    (coverage,) = {v for (v,) in rows(db, "SELECT value FROM results WHERE metric = 'coverage'")}
    assert 0 < coverage < 1

    # Untrained linear maps keep the input's structure: CKA pred-input is far above pred-target's
    # floor, and input-target is the same for both states (it does not depend on the mapping).
    out = cli("query", "SELECT state, comparison, value FROM study_results WHERE metric = 'cka' ORDER BY ALL",
              "--db", db, "--format", "json")  # fmt: skip
    cka = {(r["state"], r["comparison"]): r["value"] for r in json.loads(out.out)}
    assert abs(cka["trained", "input-target"] - cka["untrained", "input-target"]) < 1e-9
    assert cka["untrained", "pred-input"] > 0.5


def test_validation_catches_k_larger_than_the_split(cli, write_study, db, tmp_path):
    ratings = tmp_path / "r.tsv"
    ratings.write_text("item1\titem2\t1\n")
    text = STUDY.format(ratings=ratings).replace("k = [1, 5]\n", "k = [1, 5000]\n")
    result = cli("run", write_study(text), "--db", db)
    assert result.code != 0
    assert "metric[0].k" in result.output and "5000" in result.output
