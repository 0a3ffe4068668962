"""The `files` dataset: a study that names only the paths of your feature files runs on them.

Items pair up by id; unpaired ids are reported (and dropped only when asked); broken files give
errors that name the file. parquet and safetensors need `xmodal[files]`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from xmodal.testing import to_toml
from xmodal_plugins import files
from xmodal_plugins.support.alignment import AlignmentError
from xmodal_plugins.support.featurefiles import (
    Columns,
    FeatureFileError,
    read_features,
    read_id_list,
)

RNG = np.random.default_rng(0)


def params(**given):
    return {**{k: p.default for k, p in files.PARAMS.items() if not p.required}, **given}


def write_files_study(
    features: list[str],
    dataset_params: Mapping = MappingProxyType({}),
    data: Mapping = MappingProxyType({}),
    **tables: object,
) -> Path:
    """study.toml in the current directory: the `files` dataset reading `features` (with
    `dataset_params`), k-fold split, `data`'s other keys, a linear mapping and `tables`; its path."""
    study = {
        "study": {"name": "mine"},
        "data": {"dataset": "files", "split": "kfold", **data,
                 "params": {"features": features, **dataset_params}},
        "mapping": [{"name": "linear"}],
        **tables,
    }  # fmt: skip
    path = Path("study.toml")
    path.write_text(to_toml(study))
    return path


def test_a_study_naming_two_npy_paths_runs_end_to_end(cli, tmp_path, db, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("text.npy", RNG.standard_normal((120, 8)).astype(np.float32))
    np.save("image.npy", RNG.standard_normal((120, 12)).astype(np.float32))
    study = write_files_study(
        ["text=text.npy", "image=image.npy"], data={"folds": 3, "directions": ["forward"]},
        train={"epochs": 2}, metric=[{"name": "mnno", "k": [5]}],
    )  # fmt: skip
    result = cli("run", study, "--db", db)
    assert result.code == 0, result.output
    assert "0 failed" in result.output


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
    result = cli("validate", write_files_study(["text=a.txt", "image=b.npy"]))
    assert result.code != 0
    assert "unsupported format" in result.output


def test_a_missing_file_becomes_a_study_problem(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("a.npy", np.ones((4, 2)))
    result = cli("validate", write_files_study(["a.npy", "gone.npy"]))
    assert result.code != 0
    assert "gone.npy: no such file" in result.output


# One file, several feature sets: each set may name its column ("name=path:column").


def write_multi_parquet(path: Path, n: int = 5) -> dict[str, np.ndarray]:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    vectors = {
        "image": RNG.standard_normal((n, 4)),
        "glove": RNG.standard_normal((n, 3)),
        "minilm": RNG.standard_normal((n, 2)),
    }
    columns = {"id": [f"w{i}" for i in range(n)]}
    columns.update({name: [list(row) for row in m] for name, m in vectors.items()})
    pq.write_table(pa.table(columns), path)
    return vectors


def test_one_parquet_file_supplies_two_feature_sets_by_named_columns(tmp_path):
    vectors = write_multi_parquet(tmp_path / "feats.parquet")
    given = params(
        features=["image=feats.parquet:image", "text=feats.parquet:glove"], base_dir=str(tmp_path)
    )
    assert files.feature_sets(given) == ["image", "text"]
    data = files.load(given)
    np.testing.assert_allclose(data.features["image"], vectors["image"].astype(np.float32))
    np.testing.assert_allclose(data.features["text"], vectors["glove"].astype(np.float32))
    assert data.ids == tuple(f"w{i}" for i in range(5))


def test_a_bare_path_with_a_column_is_named_after_the_column(tmp_path):
    write_multi_parquet(tmp_path / "feats.parquet")
    given = params(features=["feats.parquet:image", "feats.parquet:minilm"], base_dir=str(tmp_path))
    assert files.feature_sets(given) == ["image", "minilm"]
    assert files.load(given).features["minilm"].shape == (5, 2)


def test_a_named_column_wins_over_vector_column(tmp_path):
    vectors = write_multi_parquet(tmp_path / "feats.parquet")
    data = files.load(
        params(
            features=["image=feats.parquet:image", "text=feats.parquet"],
            vector_column="glove",
            base_dir=str(tmp_path),
        )
    )
    np.testing.assert_allclose(data.features["image"], vectors["image"].astype(np.float32))
    np.testing.assert_allclose(data.features["text"], vectors["glove"].astype(np.float32))


def test_npz_arrays_and_safetensors_tensors_can_be_named_too(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    a, b = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 2))
    np.savez(tmp_path / "both.npz", vis=a, lang=b)
    data = files.load(
        params(features=["x=both.npz:vis", "y=both.npz:lang"], base_dir=str(tmp_path))
    )
    np.testing.assert_allclose(data.features["y"], b.astype(np.float32))
    st.save_file(
        {"p": a.astype(np.float32), "q": b.astype(np.float32)}, str(tmp_path / "t.safetensors")
    )
    data = files.load(
        params(features=["x=t.safetensors:q", "y=t.safetensors:p"], base_dir=str(tmp_path))
    )
    np.testing.assert_allclose(data.features["x"], b.astype(np.float32))
    with pytest.raises(
        FeatureFileError, match=r"both\.npz: has no array 'nope' \(arrays: vis, lang\)"
    ):
        files.load(params(features=["x=both.npz:nope", "y=both.npz:lang"], base_dir=str(tmp_path)))


def test_a_colon_is_a_column_only_after_a_known_extension(tmp_path):
    """Directories may contain ':'; only "<file>.<known ext>:<column>" names a column."""
    odd = tmp_path / "run:3"
    odd.mkdir()
    np.save(odd / "a.npy", np.ones((3, 2)))
    np.save(odd / "b.npy", np.zeros((3, 2)))
    data = files.load(params(features=["a=run:3/a.npy", "b=run:3/b.npy"], base_dir=str(tmp_path)))
    assert set(data.features) == {"a", "b"}


def test_a_column_on_a_single_matrix_format_is_refused(tmp_path):
    with pytest.raises(
        FeatureFileError, match=r"holds one matrix.*\.npz, \.parquet, \.safetensors"
    ):
        files.feature_sets(params(features=["a=a.npy:x", "b=b.npy"]))


@pytest.mark.parametrize(
    ("features", "extra", "message"),
    [
        # The reported bug: vector_column applied to every file, both sets read glove.
        (["image=feats.parquet", "text=feats.parquet"], {"vector_column": "glove"},
         r"'image' and 'text' both read column 'glove' of .*feats\.parquet"),
        (["image=feats.parquet:glove", "text=feats.parquet:glove"], {},
         r"'image' and 'text' both read column 'glove'"),
        (["image=feats.parquet", "text=feats.parquet"], {},
         r"both read .*feats\.parquet without naming a column"),
        (["a=x.npy", "b=./x.npy"], {}, r"'a' and 'b' both read .*x\.npy.*copy the file"),
    ],
)  # fmt: skip
def test_two_sets_reading_the_same_data_are_refused_before_loading(
    tmp_path, features, extra, message
):
    with pytest.raises(FeatureFileError, match=message):
        files.feature_sets(params(features=features, base_dir=str(tmp_path), **extra))


def test_two_sets_landing_on_the_same_npz_array_are_refused_on_load(tmp_path):
    np.savez(tmp_path / "one.npz", features=np.ones((3, 2)))
    given = params(features=["a=one.npz", "b=one.npz"], base_dir=str(tmp_path))
    files.feature_sets(given)  # which array each picks is only known on reading
    with pytest.raises(FeatureFileError, match=r"'a' and 'b' both read column 'features'"):
        files.load(given)


def test_a_parquet_file_with_several_vector_columns_needs_one_named(tmp_path):
    write_multi_parquet(tmp_path / "feats.parquet")
    np.save(tmp_path / "other.npy", np.ones((5, 2)))
    with pytest.raises(FeatureFileError) as err:
        files.load(params(features=["a=feats.parquet", "b=other.npy"], base_dir=str(tmp_path)))
    message = str(err.value)
    assert "feats.parquet" in message and "image, glove, minilm" in message
    assert '"a=feats.parquet:image"' in message


def test_naming_an_id_column_or_a_scalar_column_as_vectors_is_refused(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"id": ["a", "b"], "v": [[1.0], [2.0]], "x": [1.0, 2.0]}), tmp_path / "f.parquet"
    )
    with pytest.raises(FeatureFileError, match=r"f\.parquet:id: that column holds item ids"):
        read_features(tmp_path / "f.parquet", "a", Columns(select="id"))
    with pytest.raises(FeatureFileError, match=r"column 'x' is not a list column"):
        read_features(tmp_path / "f.parquet", "a", Columns(select="x"))


def test_validate_refuses_two_sets_reading_one_column(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_multi_parquet(tmp_path / "feats.parquet")
    result = cli(
        "validate",
        write_files_study(
            ["image=feats.parquet", "text=feats.parquet"], dataset_params={"vector_column": "glove"}
        ),
    )
    assert result.code != 0
    assert "both read column 'glove'" in result.output
    assert "Traceback" not in result.output


# Files that are not what their name says: each error names the file and says what is wrong.


def test_a_directory_named_like_a_feature_file(tmp_path):
    (tmp_path / "a.npy").mkdir()
    with pytest.raises(FeatureFileError, match=r"a\.npy: is a directory, not a feature file"):
        read_features(tmp_path / "a.npy")


def test_a_symlink_loop(tmp_path):
    loop = tmp_path / "loop.npy"
    loop.symlink_to("loop.npy")
    with pytest.raises(FeatureFileError, match=r"loop\.npy: is a symbolic link loop"):
        read_features(loop)
    with pytest.raises(FeatureFileError, match=r"loop\.npy: is a symbolic link loop"):
        files.fingerprint(params(features=["loop.npy", "b.npy"], base_dir=str(tmp_path)))


def test_a_broken_symlink_says_where_it_points(tmp_path):
    (tmp_path / "a.npy").symlink_to("gone.npy")
    with pytest.raises(FeatureFileError, match=r"a\.npy: is a broken symbolic link.*'gone\.npy'"):
        read_features(tmp_path / "a.npy")


def npy_with_header(
    path: Path, shape: tuple[int, ...], dtype: str = "<f4", data: bytes = b""
) -> Path:
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    path.write_bytes(header.getvalue() + data)
    return path


def test_a_npy_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    path = npy_with_header(tmp_path / "huge.npy", (2**50, 8), data=b"\0" * 64)
    with pytest.raises(FeatureFileError) as err:
        read_features(path)
    message = str(err.value)
    assert str(path) in message and "truncated or corrupt" in message
    assert "(1125899906842624, 8)" in message and "32.0 PiB" in message and "64 bytes" in message


def test_a_npz_member_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    import zipfile

    member = npy_with_header(tmp_path / "m.npy", (2**40, 1000), data=b"\0" * 16).read_bytes()
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        archive.writestr("features.npy", member)
    with pytest.raises(FeatureFileError, match=r"huge\.npz\[features\]: is truncated or corrupt"):
        read_features(tmp_path / "huge.npz")


def test_a_huge_npy_id_file_is_refused_too(tmp_path):
    path = npy_with_header(tmp_path / "ids.npy", (2**50,), dtype="<i8")
    with pytest.raises(FeatureFileError, match=r"ids\.npy: is truncated or corrupt"):
        read_id_list(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_random_bytes_are_not_a_valid_file_rather_than_python_objects(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(FeatureFileError) as err:
        read_features(path)
    assert f"noise{suffix}: is not a valid {suffix} file" in str(err.value)
    assert "Python objects" not in str(err.value)


def test_datasets_describe_reads_only_npy_headers_and_checks_them(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((7, 3), np.float32))
    np.save(tmp_path / "b.npy", np.ones((7, 2), np.float32))
    infos = files.describe(params(features=["a.npy", "b.npy"], base_dir=str(tmp_path)))
    assert [(i.name, i.n_items, i.dim) for i in infos] == [("a", 7, 3), ("b", 7, 2)]
    npy_with_header(tmp_path / "b.npy", (2**50, 8))
    with pytest.raises(FeatureFileError, match=r"b\.npy: is truncated or corrupt"):
        files.describe(params(features=["a.npy", "b.npy"], base_dir=str(tmp_path)))
