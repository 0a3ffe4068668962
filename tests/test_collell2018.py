"""The `collell2018` dataset reads the CSVs Collell & Moens released, as they laid them out.

`TR_<features>.csv` / `TS_<features>.csv`; first field = space-separated label ids, then the
vector. The IAPR TC-12 test files are read from ../shared/data/iaprtc12 (never copied here).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from xmodal_plugins import collell2018
from xmodal_plugins.collell2018 import Collell2018Error

IAPR = REPO.parent / "shared" / "data" / "iaprtc12"
needs_iapr = pytest.mark.skipif(
    not (IAPR / "TS_vis_vgg128.csv").is_file(), reason=f"IAPR TC-12 files not found at {IAPR}"
)


def params(**given):
    return {"data_dir": "", "benchmark": "", **given}


def write_split(
    directory: Path, prefix: str, name: str, labels: list[str], vectors: np.ndarray
) -> None:
    lines = [
        f"{lab}," + ",".join(f"{v:g}" for v in row)
        for lab, row in zip(labels, vectors, strict=True)
    ]
    (directory / f"{prefix}_{name}.csv").write_text("\n".join(lines) + "\n")


@needs_iapr
def test_iaprtc12_test_files_load_fast_with_labels_and_no_split():
    t0 = time.perf_counter()
    data = collell2018.load(params(data_dir=str(IAPR)))
    seconds = time.perf_counter() - t0
    assert seconds < 2.0
    assert data.n_items == 1962
    assert data.features["lang_biGRU"].shape == (1962, 64)
    assert data.features["vis_vgg128"].shape == (1962, 128)
    assert data.ids[:2] == ("TS0", "TS1")
    assert data.split is None  # only TS exists: the study must split with kfold or random
    assert data.labels[0] == frozenset({40, 115, 122, 138, 158, 167, 172, 212, 219, 261})
    # the released files contain duplicate rows; they are kept as released
    assert len({row.tobytes() for row in data.features["vis_vgg128"]}) < 1962


@needs_iapr
def test_feature_set_names_come_from_the_files_found():
    assert sorted(collell2018.feature_sets(params(data_dir=str(IAPR)))) == [
        "lang_biGRU",
        "vis_vgg128",
    ]
    infos = {i.name: i for i in collell2018.describe(params(data_dir=str(IAPR)))}
    assert (infos["vis_vgg128"].n_items, infos["vis_vgg128"].dim) == (1962, 128)


@needs_iapr
def test_the_iaprtc12_study_validates_from_the_repository_root(cli, monkeypatch):
    monkeypatch.chdir(REPO)
    result = cli("validate", "studies/iaprtc12.toml")
    assert result.code == 0, result.output


@needs_iapr
def test_split_dataset_on_a_single_split_says_to_use_kfold(cli, tmp_path):
    study = tmp_path / "s.toml"
    study.write_text(f"""
[study]
name = "s"
[data]
dataset = "collell2018"
split = "dataset"
[data.params]
data_dir = "{IAPR}"
[[mapping]]
name = "linear"
""")
    result = cli("validate", study)
    assert result.code != 0
    assert "kfold" in result.output


def test_train_and_test_files_give_the_dataset_split(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("TR", 6), ("TS", 3)):
        labels = [f"{i} {i + 1}" for i in range(n)]
        write_split(tmp_path, prefix, "lang_x", labels, rng.standard_normal((n, 4)))
        write_split(tmp_path, prefix, "vis_y", labels, rng.standard_normal((n, 5)))
    data = collell2018.load(params(data_dir=str(tmp_path)))
    assert list(data.split) == ["train"] * 6 + ["test"] * 3
    assert data.ids[6] == "TS0"
    assert data.labels[7] == frozenset({1, 2})


def test_data_dir_defaults_to_the_environment_and_benchmark_picks_a_subdirectory(
    tmp_path, monkeypatch
):
    sub = tmp_path / "wiki"
    sub.mkdir()
    write_split(sub, "TS", "a", ["1", "2"], np.ones((2, 2)))
    write_split(sub, "TS", "b", ["1", "2"], np.ones((2, 3)))
    monkeypatch.setenv("XMODAL_DATA_DIR", str(tmp_path))
    assert collell2018.feature_sets(params(benchmark="wiki")) == ["a", "b"]
    monkeypatch.delenv("XMODAL_DATA_DIR")
    with pytest.raises(Collell2018Error, match="XMODAL_DATA_DIR"):
        collell2018.feature_sets(params())


def test_rows_that_do_not_pair_are_errors_naming_the_file(tmp_path):
    write_split(tmp_path, "TS", "a", ["1", "2", "3"], np.ones((3, 2)))
    write_split(tmp_path, "TS", "b", ["1", "9", "3"], np.ones((3, 2)))
    with pytest.raises(Collell2018Error, match=r"TS_b\.csv:2: labels differ"):
        collell2018.load(params(data_dir=str(tmp_path)))
    write_split(tmp_path, "TS", "b", ["1", "2"], np.ones((2, 2)))
    with pytest.raises(Collell2018Error, match=r"TS_b\.csv has 2 rows"):
        collell2018.load(params(data_dir=str(tmp_path)))


def test_ragged_or_non_numeric_rows_are_errors_with_the_line(tmp_path):
    (tmp_path / "TS_a.csv").write_text("1,0.1,0.2\n2,0.3\n")
    with pytest.raises(Collell2018Error, match=r"TS_a\.csv:2: has 1 components"):
        collell2018.read_csv(tmp_path / "TS_a.csv")
    (tmp_path / "TS_a.csv").write_text("1,0.1,x\n")
    with pytest.raises(Collell2018Error, match="not a number"):
        collell2018.read_csv(tmp_path / "TS_a.csv")


def test_a_directory_without_released_files_is_an_error(tmp_path):
    with pytest.raises(Collell2018Error, match="no TR_"):
        collell2018.feature_sets(params(data_dir=str(tmp_path)))
    with pytest.raises(Collell2018Error, match="does not exist"):
        collell2018.feature_sets(params(data_dir=str(tmp_path / "nope")))
