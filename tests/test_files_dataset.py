"""The `files` dataset: a study that names only the paths of your feature files runs on them.

Items pair up by id; unpaired ids are reported (and dropped only when asked); broken files give
errors that name the file. parquet and safetensors need `xmodal[files]`.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pytest
from xmodal_plugins import files

from xmodal.alignment import AlignmentError
from xmodal.featurefiles import FeatureFileError, read_features

RNG = np.random.default_rng(0)


def params(**given):
    return {**{k: p.default for k, p in files.PARAMS.items() if not p.required}, **given}


def test_a_study_naming_two_npy_paths_runs_end_to_end(cli, tmp_path, db, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("text.npy", RNG.standard_normal((120, 8)).astype(np.float32))
    np.save("image.npy", RNG.standard_normal((120, 12)).astype(np.float32))
    Path("study.toml").write_text(
        textwrap.dedent("""\
        [study]
        name = "mine"
        [data]
        dataset = "files"
        split = "kfold"
        folds = 3
        directions = ["forward"]
        [data.params]
        features = ["text=text.npy", "image=image.npy"]
        [[mapping]]
        name = "linear"
        [train]
        epochs = 2
        [[metric]]
        name = "mnno"
        k = [5]
        """)
    )
    result = cli("run", "study.toml", "--db", db)
    assert result.code == 0, result.output
    assert "finished" in result.output


def test_rows_pair_by_position_when_no_file_has_ids(tmp_path):
    a, b = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 4))
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    data = files.load(params(features=["a.npy", "b.npy"], base_dir=str(tmp_path)))
    assert data.ids == ("0", "1", "2", "3", "4")
    assert set(data.features) == {"a", "b"}  # a bare path is named after its file
    np.testing.assert_allclose(data.features["b"], b.astype(np.float32))
    assert data.features["a"].dtype == np.float32


def test_items_are_aligned_by_id_across_formats(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"w{i}" for i in range(6)]
    text = RNG.standard_normal((6, 3))
    np.savez(tmp_path / "text.npz", features=text, ids=np.array(ids))
    order = [5, 3, 1, 0, 2, 4]  # the image file lists the same items in another order
    image = RNG.standard_normal((6, 4))
    pq.write_table(
        pa.table({"id": [ids[i] for i in order], "vec": [list(image[i]) for i in order],
                  "labels": [[i % 2] for i in order], "split": ["train"] * 4 + ["test"] * 2}),
        tmp_path / "image.parquet",
    )  # fmt: skip
    data = files.load(
        params(features=["text=text.npz", "image=image.parquet"], base_dir=str(tmp_path))
    )
    assert data.ids == tuple(ids)
    np.testing.assert_allclose(data.features["image"], image.astype(np.float32), rtol=1e-6)
    assert data.labels == tuple(frozenset([i % 2]) for i in range(6))
    assert sorted(data.split[i] for i in range(6)).count("test") == 2


def test_parquet_with_one_column_per_dimension_and_csv_with_header(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"id": ["a", "b", "c"], "d0": [1.0, 2.0, 3.0], "d1": [0, 1, 0]}),
        tmp_path / "x.parquet",
    )
    (tmp_path / "y.csv").write_text("id,v0,v1,v2\nc,1,2,3\na,4,5,6\nb,7,8,9\n")
    data = files.load(params(features=["x=x.parquet", "y=y.csv"], base_dir=str(tmp_path)))
    assert data.ids == ("a", "b", "c")
    assert data.features["x"].shape == (3, 2)
    np.testing.assert_array_equal(data.features["y"][0], [4, 5, 6])


def test_safetensors_files_are_read(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    st.save_file(
        {"text": RNG.standard_normal((4, 2)).astype(np.float32)}, str(tmp_path / "t.safetensors")
    )
    np.save(tmp_path / "i.npy", np.ones((4, 3)))
    data = files.load(
        params(features=["text=t.safetensors", "image=i.npy"], base_dir=str(tmp_path))
    )
    assert data.features["text"].shape == (4, 2)


def test_separate_id_files_and_split_files(tmp_path):
    np.save(tmp_path / "a.npy", RNG.standard_normal((4, 2)))
    np.save(tmp_path / "b.npy", RNG.standard_normal((4, 2)))
    (tmp_path / "a.txt").write_text("p\nq\nr\ns\n")
    (tmp_path / "b.txt").write_text("s\nr\nq\np\n")
    (tmp_path / "train.txt").write_text("p\nq\nr\n")
    (tmp_path / "test.txt").write_text("s\n")
    data = files.load(params(
        features=["a=a.npy", "b=b.npy"], ids=["a=a.txt", "b=b.txt"],
        split_files=["train=train.txt", "test=test.txt"], base_dir=str(tmp_path),
    ))  # fmt: skip
    assert data.ids == ("p", "q", "r", "s")
    assert list(data.split) == ["train", "train", "train", "test"]


def test_unpaired_ids_are_an_error_listing_them_unless_dropping_is_asked(tmp_path, caplog):
    np.savez(tmp_path / "a.npz", features=np.ones((3, 2)), ids=np.array(["x", "y", "z"]))
    np.savez(tmp_path / "b.npz", features=np.ones((3, 2)), ids=np.array(["x", "y", "only_b"]))
    given = params(features=["a=a.npz", "b=b.npz"], base_dir=str(tmp_path))
    with pytest.raises(AlignmentError) as err:
        files.load(given)
    assert (
        "1 id(s)" in str(err.value)
        and "'only_b'" in str(err.value)
        and "drop_unpaired" in str(err.value)
    )
    with caplog.at_level(logging.WARNING):
        data = files.load({**given, "drop_unpaired": True})
    assert data.ids == ("x", "y")
    assert "only_b" in caplog.text


def test_duplicate_ids_name_the_file(tmp_path):
    np.savez(tmp_path / "a.npz", features=np.ones((3, 2)), ids=np.array(["x", "x", "y"]))
    np.savez(tmp_path / "b.npz", features=np.ones((3, 2)), ids=np.array(["x", "y", "z"]))
    with pytest.raises(AlignmentError, match=r"a\.npz.*more than once.*'x'"):
        files.load(params(features=["a=a.npz", "b=b.npz"], base_dir=str(tmp_path)))


def test_different_row_counts_without_ids_are_an_error(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 2)))
    np.save(tmp_path / "b.npy", np.ones((4, 2)))
    with pytest.raises(AlignmentError, match="different row counts"):
        files.load(params(features=["a.npy", "b.npy"], base_dir=str(tmp_path)))


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("nan.npy", lambda p: np.save(p, np.array([[1.0, np.nan], [0, 1]])), "NaN or infinite"),
        ("inf.npy", lambda p: np.save(p, np.array([[1.0, 2], [np.inf, 1]])), "first at row 1"),
        ("empty.npy", lambda p: p.write_bytes(b""), "empty"),
        ("zero.npy", lambda p: np.save(p, np.zeros((0, 3))), "no vectors"),
        ("text.npy", lambda p: np.save(p, np.array([["a", "b"]])), "dtype"),
        ("flat.npy", lambda p: np.save(p, np.ones(5)), "1-D"),
        ("pickled.npy", lambda p: np.save(p, np.array([[1], [1, 2]], dtype=object), allow_pickle=True), "Python objects"),
        ("ragged.csv", lambda p: p.write_text("id,a,b\nx,1,2\ny,1\n"), "ragged"),
        ("words.csv", lambda p: p.write_text("id,a\nx,one\n"), "not a number"),
        ("cut.npz", lambda p: p.write_bytes(b"PK\x03\x04garbage"), "not a readable .npz"),
    ],
)  # fmt: skip
def test_broken_files_give_errors_naming_the_file(tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(FeatureFileError) as err:
        read_features(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_truncated_npy_names_the_file(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.ones((100, 10)))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(FeatureFileError, match=r"cut\.npy"):
        read_features(path)


def test_a_corrupt_parquet_names_the_file(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(FeatureFileError, match=r"bad\.parquet.*not a readable parquet"):
        read_features(path)


def test_a_missing_optional_package_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(Exception, match=r"xmodal\[files\]"):
        read_features(path)


def test_validation_reports_bad_feature_entries_before_anything_loads(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text(
        textwrap.dedent("""\
        [study]
        name = "bad"
        [data]
        dataset = "files"
        split = "kfold"
        [data.params]
        features = ["text=a.txt", "image=b.npy"]
        [[mapping]]
        name = "linear"
        """)
    )
    result = cli("validate", "s.toml")
    assert result.code != 0
    assert "unsupported format" in result.output


def test_a_missing_file_becomes_a_study_problem(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("a.npy", np.ones((4, 2)))
    Path("s.toml").write_text(
        textwrap.dedent("""\
        [study]
        name = "missing"
        [data]
        dataset = "files"
        split = "kfold"
        [data.params]
        features = ["a.npy", "gone.npy"]
        [[mapping]]
        name = "linear"
        """)
    )
    result = cli("validate", "s.toml")
    assert result.code != 0
    assert "gone.npy: no such file" in result.output
