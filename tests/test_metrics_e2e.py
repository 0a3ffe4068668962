"""The new metrics end to end: named in a study, run through the CLI, queried from DuckDB."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from tests.conftest import rows, study_toml


def metrics_study(ratings: Path, retrieval_k: tuple[int, ...] = (1, 5)) -> str:
    """One forward linear mapping on clustered synthetic items, trained and untrained, measured
    on the test split by every new metric (`ratings`: the item-pair ratings file)."""
    return study_toml(
        study={"name": "metrics"},
        data={"directions": ["forward"],
              "params": {"n_items": 200, "dim_text": 12, "dim_image": 16, "clusters": 4}},
        mapping=[{"name": "linear"}],
        train={"epochs": 2},
        runs={"trained": True, "untrained": True},
        measure={"splits": ["test"]},
        metric=[
            {"name": "retrieval", "k": list(retrieval_k),
             "directions": ["pred-target", "target-pred"], "map_at": "all"},
            {"name": "cka"},
            {"name": "rsa"},
            {"name": "knn_jaccard", "k": [5]},
            {"name": "similarity_correlation", "ratings_file": [str(ratings)]},
        ],
    )  # fmt: skip


def test_a_study_naming_every_new_metric_runs_and_is_queryable(cli, write_study, db, tmp_path):
    ratings = tmp_path / "itempairs.tsv"
    pairs = itertools.combinations(range(30), 2)
    ratings.write_text("".join(f"item{a}\titem{b}\t{(a * 7 + b * 3) % 11}\n" for a, b in pairs))
    study = write_study(metrics_study(ratings))
    result = cli("run", study, "--db", db)
    assert result.code == 0, result.output
    assert "2 ran" in result.output

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
    result = cli("run", write_study(metrics_study(ratings, retrieval_k=(1, 5000))), "--db", db)
    assert result.code != 0
    assert "metric[0].k" in result.output and "5000" in result.output


def test_built_in_metrics_say_how_the_report_shows_their_rows():
    """Label, digits and direction of every row metric the built-ins write; None where no
    direction is meaningful (measures of how alike two spaces are, coverage of the ratings)."""
    from xmodal.plugins import get_registry

    metrics = get_registry().metrics
    rows_of = {
        "mnno": ["mnno"],
        "regression": ["mse", "r2"],
        "retrieval": ["recall", "median_rank", "mrr", "label_precision", "label_map"],
        "similarity_correlation": ["spearman", "coverage"],
        "cka": ["cka"],
        "rsa": ["rsa"],
        "knn_jaccard": ["knn_jaccard"],
    }
    shown = {
        row: (d.label, d.digits, d.higher_is_better)
        for spec, rows in rows_of.items()
        for row in rows
        for d in [metrics[spec].display(row)]
    }
    assert shown == {
        "mnno": ("mNNO", 3, None),
        "mse": ("MSE", 4, False),
        "r2": ("R²", 3, True),
        "recall": ("Recall@k", 3, True),
        "median_rank": ("Median rank", 1, False),
        "mrr": ("MRR", 3, True),
        "label_precision": ("Label precision@k", 3, True),
        "label_map": ("Label mAP", 3, True),
        "spearman": ("Spearman ρ", 3, True),
        "coverage": ("Coverage", 3, None),
        "cka": ("CKA", 3, None),
        "rsa": ("RSA", 3, None),
        "knn_jaccard": ("k-NN Jaccard", 3, None),
    }
