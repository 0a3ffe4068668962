"""Reading one feature file (.npy, .npz, .parquet, .csv, .safetensors) into a checked matrix.

Every error names the file. Nothing is unpickled: .npy/.npz load with `allow_pickle=False`.
pyarrow (parquet) and safetensors are optional: `pip install 'xmodal[files]'`.
"""

from __future__ import annotations

import contextlib
import csv
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from xmodal.errors import XmodalError
from xmodal.optional import require

FORMATS = (".npy", ".npz", ".parquet", ".csv", ".safetensors")


class FeatureFileError(XmodalError):
    """A feature file is missing, malformed, or holds values that are not usable features."""


@attrs.frozen(eq=False)
class FeatureTable:
    """One file's vectors, with the item ids, labels and split marks it carries (if any)."""

    path: Path
    matrix: np.ndarray
    ids: tuple[str, ...] | None = None
    labels: tuple[frozenset[int], ...] | None = None
    split: tuple[str, ...] | None = None


@attrs.frozen
class Columns:
    """Which columns/arrays hold ids, labels and split marks, and which one holds the vectors."""

    id: str = "id"
    labels: str = "labels"
    split: str = "split"
    vector: str = ""
    header: bool = True


def read_features(path: str | Path, name: str = "", columns: Columns | None = None) -> FeatureTable:
    """Read and check `path`; `name` (the feature-set name) picks the array in .npz/.safetensors."""
    path, columns = Path(path), columns or Columns()
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FeatureFileError(
            f"{path}: unsupported format {suffix!r} (use one of {', '.join(FORMATS)})"
        )
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise FeatureFileError(f"{path}: the file is empty")
    reader = {
        ".npy": _npy,
        ".npz": _npz,
        ".parquet": _parquet,
        ".csv": _csv,
        ".safetensors": _safetensors,
    }
    table = reader[suffix](path, name, columns)
    return attrs.evolve(table, matrix=check_matrix(path, table.matrix))


def check_matrix(path: Path, matrix: Any) -> np.ndarray:
    """A finite, non-empty (n, d) float32 matrix, or an error saying what is wrong with it."""
    matrix = np.asarray(matrix)
    if matrix.dtype == object:
        raise FeatureFileError(f"{path}: rows are not numeric vectors of one length (ragged?)")
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise FeatureFileError(f"{path}: values have dtype {matrix.dtype}; expected numbers")
    if matrix.ndim == 1:
        raise FeatureFileError(
            f"{path}: holds a 1-D array of {matrix.shape[0]} values; expected (items, dims)"
        )
    if matrix.ndim != 2:
        raise FeatureFileError(
            f"{path}: holds a {matrix.ndim}-D array {matrix.shape}; expected (items, dims)"
        )
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise FeatureFileError(f"{path}: holds no vectors (shape {matrix.shape})")
    matrix = matrix.astype(np.float32, copy=False)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise FeatureFileError(
            f"{path}: {len(rows)} row(s) contain NaN or infinite values (first at row {rows[0]})"
        )
    return matrix


@contextlib.contextmanager
def _numpy_errors(path: Path, kind: str) -> Iterator[None]:
    """numpy's load errors as one-line FeatureFileErrors; object arrays are refused, never unpickled."""
    try:
        yield
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise FeatureFileError(
                f"{path}: holds Python objects (ragged rows?); not loaded"
            ) from None
        raise FeatureFileError(f"{path}: not a readable {kind} file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FeatureFileError(f"{path}: not a readable {kind} file ({exc})") from None


def _npy(path: Path, name: str, columns: Columns) -> FeatureTable:
    with _numpy_errors(path, ".npy"):
        return FeatureTable(path, np.load(path, allow_pickle=False))


def _pick(path: Path, keys: Sequence[str], name: str, reserved: set[str]) -> str:
    candidates = [k for k in keys if k not in reserved]
    for key in (name, "features"):
        if key and key in keys:
            return key
    if len(candidates) == 1:
        return candidates[0]
    raise FeatureFileError(
        f"{path}: cannot tell which array holds the {name or 'feature'} vectors among "
        f"{', '.join(keys) or 'no arrays'}; name one after the feature set or call it 'features'"
    )


def _npz(path: Path, name: str, columns: Columns) -> FeatureTable:
    with _numpy_errors(path, ".npz"), np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        reserved = {columns.id, columns.labels, columns.split, "ids"}
        key = _pick(path, keys, name, reserved)
        arrays = {k: archive[k] for k in keys if k == key or k in reserved}
    ids = arrays.get(columns.id, arrays.get("ids"))
    return FeatureTable(
        path,
        arrays[key],
        ids=_ids(path, ids) if ids is not None else None,
        labels=_labels(path, arrays[columns.labels]) if columns.labels in arrays else None,
        split=_split(path, arrays[columns.split]) if columns.split in arrays else None,
    )


def _safetensors(path: Path, name: str, columns: Columns) -> FeatureTable:
    st = require("safetensors.numpy", "files", f"reading {path}", package="safetensors")
    try:
        tensors = st.load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError for corrupt headers
        raise FeatureFileError(f"{path}: not a readable .safetensors file ({exc})") from None
    key = _pick(path, list(tensors), name, {columns.labels})
    labels = tensors.get(columns.labels)
    return FeatureTable(
        path, tensors[key], labels=_labels(path, labels) if labels is not None else None
    )


def _parquet(path: Path, name: str, columns: Columns) -> FeatureTable:
    pq = require("pyarrow.parquet", "files", f"reading {path}", package="pyarrow")
    pa = require("pyarrow", "files", f"reading {path}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise FeatureFileError(f"{path}: not a readable parquet file ({exc})") from None
    names = table.column_names
    meta = {columns.id, columns.labels, columns.split}
    rest = [c for c in names if c not in meta]
    lists = [c for c in rest if pa.types.is_list(table.schema.field(c).type)
             or pa.types.is_fixed_size_list(table.schema.field(c).type)
             or pa.types.is_large_list(table.schema.field(c).type)]  # fmt: skip
    vector = columns.vector or (lists[0] if len(lists) == 1 else "")
    if vector:
        if vector not in names:
            raise FeatureFileError(f"{path}: no column {vector!r} (columns: {', '.join(names)})")
        rows = table.column(vector).to_pylist()
        if any(r is None for r in rows):
            raise FeatureFileError(f"{path}: column {vector!r} has missing (null) vectors")
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise FeatureFileError(
                f"{path}: column {vector!r} has vectors of lengths {sorted(lengths)[:5]} (ragged)"
            )
        try:
            matrix = np.array(rows, dtype=np.float64) if rows else np.zeros((0, 0))
        except (TypeError, ValueError):
            raise FeatureFileError(f"{path}: column {vector!r} does not hold numbers") from None
    else:
        if lists:
            raise FeatureFileError(
                f"{path}: several list columns ({', '.join(lists)}); set vector_column"
            )
        bad = [c for c in rest if not (pa.types.is_floating(table.schema.field(c).type)
                                       or pa.types.is_integer(table.schema.field(c).type))]  # fmt: skip
        if bad:
            raise FeatureFileError(
                f"{path}: column(s) {', '.join(bad[:5])} are not numeric; vectors are read from "
                f"one numeric column per dimension (id column: {columns.id!r})"
            )
        if any(table.column(c).null_count for c in rest):
            raise FeatureFileError(f"{path}: some vector columns have missing (null) values")
        matrix = (
            np.column_stack([table.column(c).to_numpy() for c in rest])
            if rest
            else np.zeros((table.num_rows, 0))
        )
    get = lambda c: table.column(c).to_pylist() if c in names else None  # noqa: E731
    return _table(path, matrix, get(columns.id), get(columns.labels), get(columns.split))


def _csv(path: Path, name: str, columns: Columns) -> FeatureTable:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FeatureFileError(f"{path}: not a readable CSV file ({exc})") from None
    header = rows.pop(0) if columns.header and rows else None
    if not rows:
        raise FeatureFileError(f"{path}: has no data rows")
    width = len(header) if header else len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            line = i + (2 if header else 1)
            raise FeatureFileError(
                f"{path}:{line}: has {len(row)} fields, expected {width} (ragged rows)"
            )
    named = {c: i for i, c in enumerate(header)} if header else {}
    meta = {named[c]: c for c in (columns.id, columns.labels, columns.split) if c in named}
    value_cols = [i for i in range(width) if i not in meta]
    try:
        matrix = np.array([[float(row[i]) for i in value_cols] for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise FeatureFileError(
            f"{path}: a vector value is not a number ({exc}); columns other than "
            f"{columns.id!r}, {columns.labels!r} and {columns.split!r} must be numeric"
        ) from None
    col = lambda c: [row[named[c]] for row in rows] if c in named else None  # noqa: E731
    return _table(path, matrix, col(columns.id), col(columns.labels), col(columns.split))


def _table(path: Path, matrix: np.ndarray, ids: Any, labels: Any, split: Any) -> FeatureTable:
    """A FeatureTable from a matrix and the (optional) raw id, label and split columns."""
    return FeatureTable(
        path,
        matrix,
        ids=_ids(path, ids) if ids is not None else None,
        labels=_labels(path, labels) if labels is not None else None,
        split=_split(path, split) if split is not None else None,
    )


def _ids(path: Path, values: Any) -> tuple[str, ...]:
    values = np.asarray(values).tolist() if isinstance(values, np.ndarray) else list(values)
    if any(v is None or v == "" for v in values):
        raise FeatureFileError(f"{path}: some item ids are empty")
    return tuple(str(v) for v in values)


def _labels(path: Path, values: Any) -> tuple[frozenset[int], ...]:
    """Labels as ints, lists of ints, or strings of space-separated ints (one entry per item)."""
    values = np.asarray(values).tolist() if isinstance(values, np.ndarray) else list(values)
    out = []
    for v in values:
        try:
            if isinstance(v, str):
                out.append(frozenset(int(t) for t in v.split()))
            elif isinstance(v, list | tuple):
                out.append(frozenset(int(t) for t in v))
            elif v is None:
                out.append(frozenset())
            else:
                out.append(frozenset([int(v)]))
        except (TypeError, ValueError):
            raise FeatureFileError(f"{path}: label {v!r} is not an integer label id") from None
    return tuple(out)


def _split(path: Path, values: Any) -> tuple[str, ...]:
    values = [
        str(v) for v in (np.asarray(values).tolist() if isinstance(values, np.ndarray) else values)
    ]
    bad = sorted(set(values) - {"train", "test"})
    if bad:
        raise FeatureFileError(f"{path}: split marks must be 'train' or 'test', found {bad[:3]}")
    return tuple(values)


def read_id_list(path: str | Path) -> tuple[str, ...]:
    """Item ids from a text file (one per line) or a .npy array of strings or integers."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            return _ids(path, np.load(path, allow_pickle=False).reshape(-1))
        except (ValueError, OSError, EOFError) as exc:
            raise FeatureFileError(f"{path}: not a readable .npy id array ({exc})") from None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FeatureFileError(f"{path}: cannot read ids ({exc})") from None
    ids = tuple(line.strip() for line in lines if line.strip())
    if not ids:
        raise FeatureFileError(f"{path}: holds no ids")
    return ids
