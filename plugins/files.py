"""The `files` dataset: your own paired feature files, named by path in the study.

    [data]
    dataset = "files"
    split = "kfold"
    [data.params]
    features = ["text=feats/text.npy", "image=feats/image.parquet"]

Each `features` entry is "name=path" (or just a path: the feature set is named after the file
stem). A path to a .parquet, .npz or .safetensors file may end in ":column" to name the column,
array or tensor this feature set reads ("image=feats.parquet:image"), so one file can supply
several feature sets; two sets reading the same data of the same file are refused. Relative paths
resolve against `base_dir` when set, else the current directory (the runner does not know the
study file's directory). Items pair up by id (an id column/array in the file, or an `ids` file);
when no file has ids, rows pair up by position.

Float32 .npy files and .safetensors tensors are memory-mapped (see featurefiles): the runs get
the map itself, or a view of it, whenever the files' rows pair up in file order.

Its fingerprint is a digest of the bytes of every file it reads (feature, id and split files,
each under its role) and of the parameters that decide how they are read; the paths themselves
are left out, so moving the files keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from xmodal import (
    DatasetSpec,
    FeatureSetInfo,
    PairedData,
    Param,
    combine,
    files_digest,
    hookimpl,
    value_digest,
)
from xmodal_plugins.support.alignment import AlignmentError, align, check_unique
from xmodal_plugins.support.featurefiles import (
    FORMATS,
    SELECTABLE,
    Columns,
    FeatureFileError,
    FeatureTable,
    check_path,
    header_shape,
    read_features,
    read_id_list,
    split_path_column,
)

READER_VERSION = "1"  # bump when the same files and parameters would load as other data
PARAMS = {
    "features": Param(
        str,
        many=True,
        doc='"name=path" or "name=path:column" per feature set (.npy .npz .parquet .csv '
        ".safetensors)",
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
        str, default="", doc="parquet list column of vectors for every file (auto if only one)"
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


@attrs.frozen
class Source:
    """Where one feature set's vectors come from: a file and, optionally, a column in it."""

    path: str  # as written in the study (relative to base_dir)
    column: str = ""


def _sources(params: Mapping[str, Any]) -> dict[str, Source]:
    """{feature set: source} from the `features` entries; a bare "f.parquet:col" is named col."""
    out: dict[str, Source] = {}
    for entry in params["features"]:
        name, eq, rest = entry.partition("=")
        path, column = split_path_column((rest if eq else entry).strip())
        if not eq:
            name = column or Path(path).stem
        name = name.strip()
        if not name or not path:
            raise FeatureFileError(
                f'features entry {entry!r} is not of the form "name=path" or "name=path:column"'
            )
        if name in out:
            raise FeatureFileError(f"features: feature set {name!r} is named twice")
        suffix = Path(path).suffix.lower()
        if suffix not in FORMATS:
            raise FeatureFileError(
                f"features: {name!r} = {path!r} has an unsupported format (use {', '.join(FORMATS)})"
            )
        if column and suffix not in SELECTABLE:
            raise FeatureFileError(
                f"features: {name!r} = {entry!r}: a {suffix} file holds one matrix, so no column "
                f"can be named (columns can be named in {', '.join(SELECTABLE)} files)"
            )
        out[name] = Source(path, column)
    return out


def _resolve(params: Mapping[str, Any], path: str) -> Path:
    base = Path(params["base_dir"]).expanduser() if params["base_dir"] else Path.cwd()
    full = Path(path).expanduser()
    return full if full.is_absolute() else base / full


def _same_file_key(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a symlink loop: reported when the file is read
        return str(path.absolute())


def _refuse_shared(reads: Mapping[str, tuple[Path, str | None]]) -> None:
    """Two feature sets reading the same vectors of the same file is almost surely a mistake
    (e.g. both reading `vector_column`); refuse it, naming both. `column` is the column read,
    None for the whole file (.npy, .csv), "" for a parquet file whose column is not named."""
    seen: dict[tuple[str, str | None], str] = {}
    for name, (path, column) in reads.items():
        key = (_same_file_key(path), column)
        first = seen.setdefault(key, name)
        if first == name:
            continue
        if column is None:
            raise FeatureFileError(
                f"features: {first!r} and {name!r} both read {path}, so they would be the same "
                "feature set; name different files (to pair a set with itself, copy the file)"
            )
        which = f"column {column!r} of {path}" if column else f"{path} without naming a column"
        raise FeatureFileError(
            f"features: {first!r} and {name!r} both read {which}; name the column each one "
            f'reads, e.g. "{first}={path.name}:<column>", "{name}={path.name}:<other column>"'
        )


def feature_sets(params: Mapping[str, Any]) -> list[str]:
    sources = _sources(params)
    if len(sources) < 2:
        raise FeatureFileError("features: name at least two feature files to pair")
    reads: dict[str, tuple[Path, str | None]] = {}
    for name, source in sources.items():
        suffix = Path(source.path).suffix.lower()
        if source.column:
            reads[name] = (_resolve(params, source.path), source.column)
        elif suffix == ".parquet":  # every unnamed parquet read takes the same column
            reads[name] = (_resolve(params, source.path), params["vector_column"])
        elif suffix not in SELECTABLE:
            reads[name] = (_resolve(params, source.path), None)
        # .npz/.safetensors without a column pick the array named after the set: checked on load
    _refuse_shared(reads)
    return list(sources)


def _columns(params: Mapping[str, Any], source: Source) -> Columns:
    return Columns(
        id=params["id_column"], labels=params["label_column"], split=params["split_column"],
        vector=params["vector_column"], header=params["header"], select=source.column,
    )  # fmt: skip


def _id_files(params: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """(one id file for every set, or None; {feature set: its own id file})."""
    id_files = params["ids"]
    shared_ids = id_files[0] if len(id_files) == 1 and "=" not in id_files[0] else None
    per_set = _named(id_files, "ids") if id_files and shared_ids is None else {}
    return shared_ids, per_set


def _tables(params: Mapping[str, Any]) -> dict[str, FeatureTable]:
    tables = {}
    shared_ids, per_set = _id_files(params)
    for name, source in _sources(params).items():
        table = read_features(_resolve(params, source.path), name, _columns(params, source))
        id_path = per_set.get(name, shared_ids)
        if id_path is not None:
            ids = read_id_list(_resolve(params, id_path))
            if len(ids) != table.matrix.shape[0]:
                raise FeatureFileError(
                    f"{_resolve(params, id_path)}: has {len(ids)} ids but {table.path} has "
                    f"{table.matrix.shape[0]} rows"
                )
            table = attrs.evolve(table, ids=ids)
        tables[name] = table
    _refuse_shared({name: (t.path, t.column) for name, t in tables.items()})
    return tables


def _where(table: FeatureTable, tables: Mapping[str, FeatureTable]) -> str:
    """The table's file, with its column when another feature set reads the same file."""
    shared = sum(t.path == table.path for t in tables.values()) > 1
    return f"{table.path}:{table.column}" if shared and table.column else str(table.path)


def _ids(tables: Mapping[str, FeatureTable]) -> dict[str, tuple[str, ...]]:
    with_ids = [t for t in tables.values() if t.ids is not None]
    if with_ids and len(with_ids) < len(tables):
        missing = [_where(t, tables) for t in tables.values() if t.ids is None]
        raise AlignmentError(
            f"some files carry item ids and {', '.join(missing)} do not; give their ids with "
            '`ids = ["name=ids.txt"]` or drop the id column to pair rows by position'
        )
    if with_ids:
        return {_where(t, tables): t.ids for t in tables.values()}  # type: ignore[misc]
    counts = {_where(t, tables): t.matrix.shape[0] for t in tables.values()}
    if len(set(counts.values())) > 1:
        raise AlignmentError(
            "without item ids, rows pair up by position, but the files have different row counts: "
            + ", ".join(f"{p} has {n}" for p, n in counts.items())
        )
    positions = tuple(str(i) for i in range(next(iter(counts.values()))))  # one, shared
    return dict.fromkeys(counts, positions)


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
            return np.array([table.split[r] for r in index[_where(table, tables)]])
    return None


def _rows(matrix: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`matrix[index]`, as a view (a memory-mapped file stays mapped) when `index` is a run of
    consecutive rows, as when rows pair up by position or the files list ids in the same order;
    otherwise a copy of the rows in the new order."""
    if len(index) and index[-1] - index[0] == len(index) - 1 and (np.diff(index) == 1).all():
        return matrix[int(index[0]) : int(index[-1]) + 1]
    return matrix[index]


def load(params: Mapping[str, Any]) -> PairedData:
    tables = _tables(params)
    ids, index = align(_ids(tables), params["drop_unpaired"])
    features = {name: _rows(t.matrix, index[_where(t, tables)]) for name, t in tables.items()}
    labels = next(
        (
            tuple(t.labels[r] for r in index[_where(t, tables)])
            for t in tables.values()
            if t.labels is not None
        ),
        None,
    )
    return PairedData(
        ids=ids,
        features=features,
        split_marks=_split_marks(params, ids, tables, index),
        labels=labels,
        source="files: " + ", ".join(f"{n}={_where(t, tables)}" for n, t in tables.items()),
    )


def describe(params: Mapping[str, Any]) -> list[FeatureSetInfo]:
    infos = []
    for name, source in _sources(params).items():
        full = _resolve(params, source.path)
        # .npy and .safetensors: the header is enough, nothing is loaded
        shape = header_shape(full, name, _columns(params, source))
        if shape is None:
            shape = read_features(full, name, _columns(params, source)).matrix.shape
        infos.append(
            FeatureSetInfo(
                name,
                shape[0] if shape else None,
                shape[1] if len(shape) > 1 else None,
                f"{full}:{source.column}" if source.column else str(full),
            )
        )
    return infos


def fingerprint(params: Mapping[str, Any]) -> str:
    """A digest of every file read (feature, id and split files, each under its role) and of
    the parameters deciding how they are read; not of the paths (moved files keep it)."""
    roles: list[tuple[str, Path]] = []
    for name, source in _sources(params).items():
        roles.append((f"features:{name}:{source.column}", _resolve(params, source.path)))
    shared_ids, per_set = _id_files(params)
    if shared_ids is not None:
        roles.append(("ids:*", _resolve(params, shared_ids)))
    roles.extend((f"ids:{name}", _resolve(params, path)) for name, path in per_set.items())
    roles.extend(
        (f"split:{which}", _resolve(params, path))
        for which, path in _named(params["split_files"], "split_files").items()
    )
    for role, path in roles:
        kind = role.partition(":")[0]
        check_path(path, {"features": "a feature file", "ids": "an id file"}.get(kind, "a file"))
    how = {
        key: params[key]
        for key in ("id_column", "label_column", "split_column", "vector_column", "header",
                    "drop_unpaired")
    }  # fmt: skip
    return combine("files", READER_VERSION, files_digest(roles), value_digest(how))


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="files",
            load=load,
            feature_sets=feature_sets,
            describe=describe,
            fingerprint=fingerprint,
            params=PARAMS,
            description="your paired feature files (.npy .npz .parquet .csv .safetensors), by id",
        )
    )
