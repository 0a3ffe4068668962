"""The `files` dataset: your own paired feature files, named by path in the study.

    [data]
    dataset = "files"
    split = "kfold"
    [data.params]
    features = ["text=feats/text.npy", "image=feats/image.parquet"]

Each `features` entry is "name=path" (or just a path: the feature set is named after the file
stem). Relative paths resolve against `base_dir` when set, else the current directory (the
runner does not know the study file's directory). Items pair up by id (an id column/array in the
file, or an `ids` file); when no file has ids, rows pair up by position.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xmodal import hookimpl
from xmodal.alignment import AlignmentError, align, check_unique
from xmodal.components import DatasetSpec, FeatureSetInfo
from xmodal.data import PairedData
from xmodal.featurefiles import (
    FORMATS,
    Columns,
    FeatureFileError,
    FeatureTable,
    read_features,
    read_id_list,
)
from xmodal.params import Param

PARAMS = {
    "features": Param(
        str, many=True, doc='"name=path" per feature set (.npy .npz .parquet .csv .safetensors)'
    ),
    "ids": Param(
        str, default=[], many=True, doc='id files: "name=path", or one path for every set'
    ),
    "id_column": Param(str, default="id", doc="column (or .npz array) holding item ids"),
    "label_column": Param(
        str, default="labels", doc="column/array of label ids (int, list or 'a b c')"
    ),
    "split_column": Param(str, default="split", doc="column/array of 'train'/'test' marks"),
    "vector_column": Param(
        str, default="", doc="parquet list column of vectors (auto if only one)"
    ),
    "split_files": Param(str, default=[], many=True, doc='"train=ids.txt", "test=ids.txt"'),
    "drop_unpaired": Param(bool, default=False, doc="drop ids missing from some file (else error)"),
    "base_dir": Param(
        str, default="", doc="directory relative paths resolve against (default: cwd)"
    ),
    "header": Param(bool, default=True, doc="CSV files start with a header row"),
}


def _named(entries: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        name, eq, path = entry.partition("=")
        if not eq:
            name, path = Path(entry).stem, entry
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise FeatureFileError(f'{what} entry {entry!r} is not of the form "name=path"')
        if name in out:
            raise FeatureFileError(f"{what}: feature set {name!r} is named twice")
        out[name] = path
    return out


def _resolve(params: Mapping[str, Any], path: str) -> Path:
    base = Path(params["base_dir"]).expanduser() if params["base_dir"] else Path.cwd()
    full = Path(path).expanduser()
    return full if full.is_absolute() else base / full


def feature_sets(params: Mapping[str, Any]) -> list[str]:
    named = _named(params["features"], "features")
    for name, path in named.items():
        if Path(path).suffix.lower() not in FORMATS:
            raise FeatureFileError(
                f"features: {name!r} = {path!r} has an unsupported format (use {', '.join(FORMATS)})"
            )
    if len(named) < 2:
        raise FeatureFileError("features: name at least two feature files to pair")
    return list(named)


def _tables(params: Mapping[str, Any]) -> dict[str, FeatureTable]:
    columns = Columns(
        id=params["id_column"], labels=params["label_column"], split=params["split_column"],
        vector=params["vector_column"], header=params["header"],
    )  # fmt: skip
    tables = {}
    id_files = params["ids"]
    shared_ids = id_files[0] if len(id_files) == 1 and "=" not in id_files[0] else None
    per_set = _named(id_files, "ids") if id_files and shared_ids is None else {}
    for name, path in _named(params["features"], "features").items():
        table = read_features(_resolve(params, path), name, columns)
        id_path = per_set.get(name, shared_ids)
        if id_path is not None:
            ids = read_id_list(_resolve(params, id_path))
            if len(ids) != table.matrix.shape[0]:
                raise FeatureFileError(
                    f"{_resolve(params, id_path)}: has {len(ids)} ids but {table.path} has "
                    f"{table.matrix.shape[0]} rows"
                )
            table = FeatureTable(table.path, table.matrix, ids, table.labels, table.split)
        tables[name] = table
    return tables


def _ids(tables: Mapping[str, FeatureTable]) -> dict[str, tuple[str, ...]]:
    with_ids = [t for t in tables.values() if t.ids is not None]
    if with_ids and len(with_ids) < len(tables):
        missing = [str(t.path) for t in tables.values() if t.ids is None]
        raise AlignmentError(
            f"some files carry item ids and {', '.join(missing)} do not; give their ids with "
            '`ids = ["name=ids.txt"]` or drop the id column to pair rows by position'
        )
    if with_ids:
        return {str(t.path): t.ids for t in tables.values()}  # type: ignore[misc]
    counts = {str(t.path): t.matrix.shape[0] for t in tables.values()}
    if len(set(counts.values())) > 1:
        raise AlignmentError(
            "without item ids, rows pair up by position, but the files have different row counts: "
            + ", ".join(f"{p} has {n}" for p, n in counts.items())
        )
    n = next(iter(counts.values()))
    return {p: tuple(str(i) for i in range(n)) for p in counts}


def _split_marks(params: Mapping[str, Any], ids: tuple[str, ...], tables: Mapping[str, FeatureTable],
                 index: Mapping[str, np.ndarray]) -> np.ndarray | None:  # fmt: skip
    if params["split_files"]:
        marks = np.full(len(ids), "", dtype=object)
        position = {item: i for i, item in enumerate(ids)}
        for which, path in _named(params["split_files"], "split_files").items():
            if which not in ("train", "test"):
                raise FeatureFileError(f"split_files: {which!r} must be 'train' or 'test'")
            listed = read_id_list(_resolve(params, path))
            check_unique(str(_resolve(params, path)), listed)
            for item in listed:
                if item in position:
                    if marks[position[item]]:
                        raise FeatureFileError(
                            f"split_files: id {item!r} is in both train and test"
                        )
                    marks[position[item]] = which
        return marks.astype(str)
    for table in tables.values():
        if table.split is not None:
            return np.array([table.split[r] for r in index[str(table.path)]])
    return None


def load(params: Mapping[str, Any]) -> PairedData:
    tables = _tables(params)
    ids, index = align(_ids(tables), params["drop_unpaired"])
    features = {name: t.matrix[index[str(t.path)]] for name, t in tables.items()}
    labels = next(
        (
            tuple(t.labels[r] for r in index[str(t.path)])
            for t in tables.values()
            if t.labels is not None
        ),
        None,
    )
    return PairedData(
        ids=ids,
        features=features,
        split=_split_marks(params, ids, tables, index),
        labels=labels,
        source="files: " + ", ".join(f"{n}={t.path}" for n, t in tables.items()),
    )


def describe(params: Mapping[str, Any]) -> list[FeatureSetInfo]:
    infos = []
    for name, path in _named(params["features"], "features").items():
        full = _resolve(params, path)
        if full.suffix.lower() == ".npy" and full.is_file():
            try:
                shape = np.load(full, mmap_mode="r", allow_pickle=False).shape
            except (OSError, ValueError) as exc:
                raise FeatureFileError(f"{full}: not a readable .npy file ({exc})") from None
        else:
            shape = read_features(full, name).matrix.shape
        infos.append(
            FeatureSetInfo(name, shape[0], shape[1] if len(shape) > 1 else None, str(full))
        )
    return infos


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="files",
            load=load,
            feature_sets=feature_sets,
            describe=describe,
            params=PARAMS,
            description="your paired feature files (.npy .npz .parquet .csv .safetensors), by id",
        )
    )
