"""Bigger than RAM: feature files are memory-mapped, not read, and stay mapped up to the runs.

A float32 .npy file or .safetensors tensor reaches `PairedData` as an `np.memmap` of the file;
whole-matrix checks and fingerprints read it in row blocks; predictions of a mapping are made in
batches of rows, equal to one pass over all rows to float tolerance.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_files_dataset import params, write_files_study
from xmodal import fingerprint
from xmodal import train as train_module
from xmodal.studydata import _mapped_npy
from xmodal_plugins import files
from xmodal_plugins.support import featurefiles
from xmodal_plugins.support.featurefiles import (
    FeatureFileError,
    header_shape,
    read_features,
    safetensors_header,
)

RNG = np.random.default_rng(14)


def matrix(n: int, d: int, dtype: type = np.float32) -> np.ndarray:
    return RNG.standard_normal((n, d)).astype(dtype)


def save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A .safetensors file written by the format's own library (numpy flavour)."""
    st = pytest.importorskip("safetensors.numpy")
    st.save_file(tensors, str(path))


def mapped_file(array: np.ndarray) -> Path | None:
    """The file an array is a memory map of (None: it is in memory)."""
    return Path(array.filename).resolve() if isinstance(array, np.memmap) else None


# --- .npy ---------------------------------------------------------------------------------------


def test_a_float32_npy_file_stays_a_memmap_through_paired_data(tmp_path):
    text, image = matrix(50, 6), matrix(50, 4)
    np.save(tmp_path / "text.npy", text)
    np.save(tmp_path / "image.npy", image)
    data = files.load(params(features=["text.npy", "image.npy"], base_dir=str(tmp_path)))
    for name, expected in (("text", text), ("image", image)):
        assert mapped_file(data.features[name]) == (tmp_path / f"{name}.npy").resolve()
        assert not data.features[name].flags.writeable  # mapped read-only: the file is safe
        np.testing.assert_array_equal(data.features[name], expected)


def test_rows_dropped_at_the_end_keep_the_map_and_reordered_rows_are_copied(tmp_path):
    text, image = matrix(6, 3), matrix(5, 2)
    np.save(tmp_path / "text.npy", text)
    np.save(tmp_path / "image.npy", image)
    (tmp_path / "text.txt").write_text("\n".join(f"i{i}" for i in range(6)))
    order = [4, 0, 3, 1, 2]  # the image file lists i0..i4 in another order; i5 is unpaired
    (tmp_path / "image.txt").write_text("\n".join(f"i{i}" for i in order))
    data = files.load(
        params(features=["text.npy", "image.npy"], ids=["text=text.txt", "image=image.txt"],
               drop_unpaired=True, base_dir=str(tmp_path))
    )  # fmt: skip
    assert data.ids == tuple(f"i{i}" for i in range(5))
    assert mapped_file(data.features["text"]) == (tmp_path / "text.npy").resolve()
    np.testing.assert_array_equal(data.features["text"], text[:5])
    assert mapped_file(data.features["image"]) is None
    np.testing.assert_array_equal(data.features["image"], image[np.argsort(order)])


def test_a_float64_file_is_converted_to_float32_in_memory(tmp_path):
    values = matrix(20, 5, np.float64)
    np.save(tmp_path / "x.npy", values)
    table = read_features(tmp_path / "x.npy")
    assert mapped_file(table.matrix) is None and table.matrix.dtype == np.float32
    np.testing.assert_array_equal(table.matrix, values.astype(np.float32))


def test_memory_map_off_reads_the_file_into_memory(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", matrix(10, 3))
    monkeypatch.setattr(featurefiles, "MEMORY_MAP", False)
    assert mapped_file(read_features(tmp_path / "x.npy").matrix) is None


def test_non_finite_rows_are_found_across_row_blocks(tmp_path, monkeypatch):
    values = matrix(100, 4)
    values[37, 1] = np.nan
    values[81, 3] = np.inf
    np.save(tmp_path / "x.npy", values)
    monkeypatch.setattr(featurefiles, "ROW_BLOCK_BYTES", 10 * 4 * 4)  # ten rows a block
    with pytest.raises(FeatureFileError, match=r"x\.npy: 2 row\(s\) contain NaN .*first at row 37"):
        read_features(tmp_path / "x.npy")


def test_float64_is_converted_in_row_blocks_exactly(tmp_path, monkeypatch):
    values = matrix(33, 5, np.float64)
    np.save(tmp_path / "x.npy", values)
    monkeypatch.setattr(featurefiles, "ROW_BLOCK_BYTES", 4 * 8 * 5)  # four rows a block
    np.testing.assert_array_equal(
        read_features(tmp_path / "x.npy").matrix, values.astype(np.float32)
    )


# --- .safetensors -------------------------------------------------------------------------------


def test_a_safetensors_tensor_read_equals_the_written_one_and_is_mapped(tmp_path):
    image, text = matrix(30, 8), matrix(30, 5)
    save_safetensors(tmp_path / "feats.safetensors", {"image": image, "text": text})
    for name, expected in (("image", image), ("text", text)):
        table = read_features(tmp_path / "feats.safetensors", name)
        assert table.column == name
        assert mapped_file(table.matrix) == (tmp_path / "feats.safetensors").resolve()
        np.testing.assert_array_equal(table.matrix, expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.uint8])
def test_other_safetensors_dtypes_are_read_as_float32(tmp_path, dtype):
    values = (RNG.standard_normal((7, 3)) * 10).astype(dtype)
    save_safetensors(tmp_path / "x.safetensors", {"features": values})
    got = read_features(tmp_path / "x.safetensors").matrix
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values.astype(np.float32))


def test_bfloat16_safetensors_are_widened_to_float32(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    values = torch.randn(9, 4, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    st.save_file({"features": values}, str(tmp_path / "x.safetensors"))
    got = read_features(tmp_path / "x.safetensors").matrix
    np.testing.assert_array_equal(got, values.float().numpy())


def test_the_shape_of_a_safetensors_tensor_comes_from_the_header_alone(tmp_path):
    save_safetensors(tmp_path / "f.safetensors", {"a": matrix(12, 3), "b": matrix(12, 7)})
    assert header_shape(tmp_path / "f.safetensors", "b") == (12, 7)
    info = files.describe(
        params(features=["x=f.safetensors:a", "y=f.safetensors:b"], base_dir=str(tmp_path))
    )
    assert [(i.name, i.n_items, i.dim) for i in info] == [("x", 12, 3), ("y", 12, 7)]


def test_safetensors_labels_tensor_gives_labels(tmp_path):
    save_safetensors(
        tmp_path / "f.safetensors",
        {"features": matrix(4, 2), "labels": np.array([0, 1, 1, 2], dtype=np.int64)},
    )
    table = read_features(tmp_path / "f.safetensors")
    assert table.labels == (frozenset([0]), frozenset([1]), frozenset([1]), frozenset([2]))


def _raw_safetensors(path: Path, header: object, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"x": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]}}, b"\0" * 16,
         r"x.safetensors: not a readable .safetensors file \(tensor 'x' .*\(truncated\?\)\)$"),
        ({"x": {"dtype": "F8_E4M3", "shape": [2, 2], "data_offsets": [0, 4]}}, b"\0" * 4,
         r"x.safetensors: tensor 'x' has dtype F8_E4M3, which is not read"),
        ({"x": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, r"tensor 'x' has a malformed entry"),
        ([1, 2], b"", r"the header is not a JSON object"),
    ],
    ids=["truncated", "unknown-dtype", "no-offsets", "not-an-object"],
)  # fmt: skip
def test_a_broken_safetensors_file_is_a_one_line_error_naming_it(tmp_path, header, data, message):
    _raw_safetensors(tmp_path / "x.safetensors", header, data)
    with pytest.raises(FeatureFileError, match=message):
        read_features(tmp_path / "x.safetensors")


def test_a_safetensors_header_longer_than_the_file_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(FeatureFileError, match=r"its header claims 931.3 GiB but the file holds"):
        safetensors_header(path)


# --- fingerprints -------------------------------------------------------------------------------


def test_the_fingerprint_of_a_mapped_matrix_is_that_of_the_same_matrix_in_memory(
    tmp_path, monkeypatch
):
    values = matrix(101, 7)
    np.save(tmp_path / "c.npy", values)
    np.save(tmp_path / "f.npy", np.asfortranarray(values))  # not C-contiguous when mapped
    expected = fingerprint.array_digest(values)
    monkeypatch.setattr(fingerprint, "BLOCK_BYTES", 3 * 7 * 4)  # three rows a block
    for name in ("c.npy", "f.npy"):
        mapped = np.load(tmp_path / name, mmap_mode="r")
        assert fingerprint.array_digest(mapped) == expected
    assert fingerprint.array_digest(values[:100]) != expected


# --- batched predictions ------------------------------------------------------------------------


def mlp(in_dim: int, out_dim: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, 16), torch.nn.Tanh(), torch.nn.Dropout(0.5),
        torch.nn.Linear(16, out_dim),
    )  # fmt: skip


@pytest.mark.parametrize("batch_rows", [1, 7, 64, 1000])
def test_batched_predictions_equal_one_pass_over_all_rows(batch_rows):
    model, x = mlp(6, 3), matrix(200, 6)
    with torch.no_grad():
        model.eval()
        expected = model(torch.from_numpy(x)).numpy()
    got = train_module.predict(model, x, batch_rows=batch_rows)
    assert got.dtype == np.float32 and got.shape == (200, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_predictions_of_indexed_rows_are_those_rows_predictions():
    model, x = mlp(5, 4), matrix(90, 5)
    rows = np.array([88, 3, 3, 40, 0, 17, 60], dtype=np.int64)
    got = train_module.predict(model, x, rows=rows, batch_rows=3)
    np.testing.assert_allclose(got, train_module.predict(model, x[rows]), rtol=1e-5, atol=1e-6)


def test_predictions_of_a_read_only_memmap_need_no_copy_of_it_and_warn_nothing(tmp_path):
    x = matrix(50, 4)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    model = mlp(4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about arrays that are not writable
        got = train_module.predict(model, mapped, batch_rows=8)
    np.testing.assert_allclose(got, train_module.predict(model, x), rtol=1e-5, atol=1e-6)


def test_an_empty_selection_of_rows_predicts_an_empty_matrix():
    got = train_module.predict(mlp(3, 2), matrix(5, 3), rows=np.zeros(0, dtype=np.int64))
    assert got.shape == (0, 2)


# --- studies ------------------------------------------------------------------------------------


def test_process_pool_workers_map_the_feature_file_itself(tmp_path):
    np.save(tmp_path / "x.npy", matrix(10, 3))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert _mapped_npy(mapped) == str(tmp_path / "x.npy")
    assert _mapped_npy(mapped[:5]) is None  # a part of the file: exported as a copy
    assert _mapped_npy(np.array(mapped)) is None


@pytest.mark.parametrize("formats", [("npy", "npy"), ("safetensors", "npy")])
def test_a_study_on_mapped_files_runs_with_batched_predictions(
    cli, tmp_path, db, monkeypatch, formats
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train_module, "PREDICT_BATCH_BYTES", 10 * 8 * 4)  # ten rows a batch
    text, image = matrix(90, 8), matrix(90, 6)
    paths = []
    for name, values, fmt in (("text", text, formats[0]), ("image", image, formats[1])):
        if fmt == "npy":
            np.save(f"{name}.npy", values)
        else:
            save_safetensors(Path(f"{name}.safetensors"), {name: values})
        paths.append(f"{name}={name}.{fmt}")
    study = write_files_study(
        paths, data={"folds": 3, "directions": ["forward"]}, train={"epochs": 2},
        metric=[{"name": "mnno", "k": [5]}],
    )  # fmt: skip
    result = cli("run", study, "--db", db)
    assert result.code == 0, result.output
    assert "0 failed" in result.output


@pytest.mark.parametrize("early_stopping", [0, 2])
def test_training_on_indexed_rows_equals_training_on_a_copy_of_those_rows(early_stopping):
    from xmodal.plugins import get_registry

    registry = get_registry()
    x, y = matrix(120, 5), matrix(120, 3)
    rows = np.sort(RNG.choice(120, size=80, replace=False))
    settings = {
        "epochs": 3, "batch_size": 16, "optimizer": "adam", "lr": 1e-2, "weight_decay": 0.0,
        "momentum": 0.0, "shuffle": True, "grad_clip": 0.0, "early_stopping": early_stopping,
        "validation_fraction": 0.25,
    }  # fmt: skip
    loss = registry.losses["mse"]
    params = {k: p.default for k, p in loss.params.items() if not p.required}
    copied = train_module.train(mlp(5, 3), loss, params, x[rows], y[rows], settings, seed=3)
    indexed = train_module.train(mlp(5, 3), loss, params, x, y, settings, seed=3, rows=rows)
    np.testing.assert_allclose(indexed.losses, copied.losses, rtol=1e-6)
    np.testing.assert_allclose(indexed.val_losses, copied.val_losses, rtol=1e-6)
    for a, b in zip(indexed.model.parameters(), copied.model.parameters(), strict=True):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


# --- what is held in memory (numpy's allocations, as tracemalloc sees them) ----------------------


def peak_allocated(work) -> int:
    """Peak bytes numpy (and Python) allocated while `work()` ran, beyond what was held before
    (its second time: imports and caches of the first are not counted). Memory-mapped pages are
    not allocations; torch's own buffers are not traced."""
    import tracemalloc

    work()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        work()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


N, D = 20_000, 64  # 5 MB per matrix: large against everything else the code allocates


def test_loading_mapped_files_allocates_a_small_part_of_them(tmp_path, monkeypatch):
    n, d = 2_000, 2_048  # wide rows: the per-item Python objects (ids) stay small against them
    for name in ("text", "image"):
        np.save(tmp_path / f"{name}.npy", matrix(n, d))
    monkeypatch.setattr(featurefiles, "ROW_BLOCK_BYTES", 256 << 10)
    config = params(features=["text.npy", "image.npy"], base_dir=str(tmp_path))
    matrix_bytes = n * d * 4
    assert peak_allocated(lambda: files.load(config)) < matrix_bytes / 4
    monkeypatch.setattr(featurefiles, "MEMORY_MAP", False)  # the same, read into memory
    assert peak_allocated(lambda: files.load(config)) > 2 * matrix_bytes


def test_predictions_hold_the_output_and_one_batch_not_a_copy_of_the_rows(tmp_path):
    np.save(tmp_path / "x.npy", matrix(N, D))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows = np.arange(0, N, 2)  # half of the rows: 2.5 MB of input, 0.8 MB of output
    model = torch.nn.Linear(D, 10)
    output_bytes, input_bytes = len(rows) * 10 * 4, len(rows) * D * 4
    peak = peak_allocated(lambda: train_module.predict(model, x, rows=rows, batch_rows=500))
    assert peak < output_bytes + input_bytes / 4
    assert peak_allocated(lambda: train_module.predict(model, x[rows])) > input_bytes


def test_training_on_indexed_rows_holds_one_batch_not_a_copy_of_the_rows(tmp_path):
    from xmodal.plugins import get_registry

    np.save(tmp_path / "x.npy", matrix(N, D))
    np.save(tmp_path / "y.npy", matrix(N, 8))
    x, y = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    rows = np.arange(N // 2)
    loss = get_registry().losses["mse"]
    settings = {
        "epochs": 1, "batch_size": 256, "optimizer": "sgd", "lr": 1e-3, "weight_decay": 0.0,
        "momentum": 0.0, "shuffle": True, "grad_clip": 0.0,
    }  # fmt: skip
    peak = peak_allocated(
        lambda: train_module.train(torch.nn.Linear(D, 8), loss, {}, x, y, settings, 0, rows=rows)
    )
    assert peak < len(rows) * D * 4 / 4


def test_process_pool_workers_on_mapped_files_give_the_results_of_one_process(
    cli, tmp_path, monkeypatch
):
    from tests.conftest import rows

    monkeypatch.chdir(tmp_path)
    np.save("text.npy", matrix(90, 8))
    np.save("image.npy", matrix(90, 6))
    study = write_files_study(
        ["text=text.npy", "image=image.npy"], data={"folds": 2, "directions": ["forward"]},
        train={"epochs": 2}, metric=[{"name": "mnno", "k": [5]}],
    )  # fmt: skip
    from xmodal.studydata import StudyData

    exported = []
    export = StudyData.export
    monkeypatch.setattr(
        StudyData, "export", lambda self, d: exported.append(export(self, d)) or exported[-1]
    )
    query = "SELECT run_id, metric, comparison, k, value FROM results ORDER BY ALL"
    found = {}
    for workers in ("1", "2"):
        db = tmp_path / f"j{workers}.duckdb"
        result = cli("run", study, "--db", db, "--workers", workers)
        assert result.code == 0, result.output
        found[workers] = rows(db, query)
    assert found["1"] and found["2"] == found["1"]
    (handle,) = exported  # the pool's workers were handed the feature files themselves
    (features,) = [d["features"] for d in handle.data.values()]
    assert features == {"text": str(tmp_path / "text.npy"), "image": str(tmp_path / "image.npy")}


def test_files_listing_the_same_ids_in_the_same_order_pair_without_an_id_dictionary(tmp_path):
    from xmodal_plugins.support.alignment import AlignmentError, align

    ids = tuple(f"i{i}" for i in range(5))
    order, index = align({"a": ids, "b": tuple(ids)}, drop_unpaired=False)
    assert order == ids and all(list(i) == [0, 1, 2, 3, 4] for i in index.values())
    with pytest.raises(AlignmentError, match=r"a: 1 id\(s\) occur more than once: 'x'"):
        align({"a": ("x", "y", "x"), "b": ("x", "y", "x")}, drop_unpaired=False)
