"""Reading one feature file (.npy, .npz, .parquet, .csv, .safetensors) into a checked matrix.

Every error names the file. Nothing is unpickled: .npy/.npz load with `allow_pickle=False`.
Before anything is read the path is checked (a directory, a symlink loop or a broken link is
named as such), and .npy headers (also inside .npz) are checked against the file's size, so a
corrupt header is reported instead of numpy trying to allocate petabytes. A .parquet, .npz or
.safetensors file can supply several feature sets, each naming its column ("path:column").
pyarrow (parquet) is optional: `pip install 'xmodal[files]'`.

Bigger than RAM: .npy files and .safetensors tensors are memory-mapped, not read (`MEMORY_MAP`).
A float32 matrix stays an `np.memmap` of the file: the operating system pages rows in as they
are used, and they do not count against the process's own (anonymous) memory. Other dtypes are
converted to float32 in memory. Checks that must see every value (no NaN, no infinity) read the
file in row blocks of `ROW_BLOCK_BYTES`. A .safetensors header is parsed here (the format is a
length, a JSON header and raw little-endian data), so reading one needs no extra package.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import stat
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import numpy as np

from xmodal import XmodalError, require

FORMATS = (".npy", ".npz", ".parquet", ".csv", ".safetensors")

# Memory-map .npy and .safetensors feature files instead of reading them (False: read them into
# memory, as before; benchmarks/bench_memory.py compares the two).
MEMORY_MAP = True
# Bytes of rows checked (or converted) at a time when a whole matrix is scanned.
ROW_BLOCK_BYTES = 32 << 20


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
    column: str | None = None  # the column/array the vectors came from (None: the whole file)


@attrs.frozen
class Columns:
    """Which columns/arrays hold ids, labels and split marks, and which one holds the vectors.

    `select` is the column (parquet), array (.npz) or tensor (.safetensors) that one feature set
    names for itself ("image=feats.parquet:image"); it wins over `vector`, the parquet list column
    shared by every file.
    """

    id: str = "id"
    labels: str = "labels"
    split: str = "split"
    vector: str = ""
    header: bool = True
    select: str = ""


# Formats holding several named arrays, so that a feature-set entry may name one ("path:column").
SELECTABLE = (".npz", ".parquet", ".safetensors")


def split_path_column(path: str) -> tuple[str, str]:
    """ "feats.parquet:image" -> ("feats.parquet", "image"); any other path -> (path, "").

    Only the text after the last ':' counts as a column, and only when the text before it ends
    with a known feature-file extension, so paths that merely contain ':' stay paths.
    """
    head, colon, tail = path.rpartition(":")
    if colon and tail.strip() and "/" not in tail and head.lower().endswith(FORMATS):
        return head, tail.strip()
    return path, ""


def check_path(path: str | Path, what: str = "a file") -> None:
    """A readable regular file at `path`, or an error saying what is there instead."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise FeatureFileError(
                f"{path}: is a broken symbolic link (it points to {os.readlink(path)!r}, which "
                "does not exist)"
            ) from None
        raise FeatureFileError(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FeatureFileError(
                f"{path}: is a symbolic link loop (following it leads back to itself); "
                "point it at the real file"
            ) from None
        raise FeatureFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise FeatureFileError(f"{path}: is a directory, not {what}")
    if not stat.S_ISREG(info.st_mode):
        raise FeatureFileError(f"{path}: is not a regular file (a device, pipe or socket?)")


def read_features(path: str | Path, name: str = "", columns: Columns | None = None) -> FeatureTable:
    """Read and check `path`; `name` (the feature-set name) picks the array in .npz/.safetensors
    unless `columns.select` names one."""
    path, columns = Path(path), columns or Columns()
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise FeatureFileError(
            f"{path}: unsupported format {suffix!r} (use one of {', '.join(FORMATS)})"
        )
    if columns.select and suffix not in SELECTABLE:
        raise FeatureFileError(
            f"{path}:{columns.select}: a {suffix} file holds one matrix, so no column can be "
            f"named; drop ':{columns.select}' (columns can be named in {', '.join(SELECTABLE)})"
        )
    check_path(path, "a feature file")
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


def row_blocks(matrix: np.ndarray, block_bytes: int | None = None) -> Iterator[slice]:
    """Slices of consecutive rows of `matrix`, each about `block_bytes` (default:
    `ROW_BLOCK_BYTES`), at least one row."""
    row_bytes = max(1, matrix.itemsize * math.prod(matrix.shape[1:]))
    step = max(1, (block_bytes or ROW_BLOCK_BYTES) // row_bytes)
    for start in range(0, matrix.shape[0], step):
        yield slice(start, min(start + step, matrix.shape[0]))


def _to_float32(matrix: np.ndarray) -> np.ndarray:
    """`matrix` itself when it is already native float32 (a memmap stays a memmap), else a
    float32 copy in memory, converted in row blocks (no temporary of the whole matrix)."""
    if matrix.dtype == np.float32:
        return matrix
    out = np.empty(matrix.shape, dtype=np.float32)
    for rows in row_blocks(matrix):
        out[rows] = matrix[rows]
    return out


def _non_finite_rows(matrix: np.ndarray) -> np.ndarray:
    """Indices of the rows holding NaN or infinity, scanned in row blocks."""
    found = [
        rows.start + np.flatnonzero(~np.isfinite(matrix[rows]).all(axis=1))
        for rows in row_blocks(matrix)
    ]
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def check_matrix(path: Path, matrix: Any) -> np.ndarray:
    """A finite, non-empty (n, d) float32 matrix, or an error saying what is wrong with it.

    A float32 `np.memmap` is returned as it is (never copied); the checks read it in row blocks.
    """
    matrix = np.asanyarray(matrix)
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
    matrix = _to_float32(matrix)
    rows = _non_finite_rows(matrix)
    if rows.size:
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
    except MemoryError as exc:
        raise FeatureFileError(f"{path}: too large to load into memory ({exc})") from None


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _npy_header(f: IO[bytes], size: int, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an .npy stream's header declares, checked against its `size` in bytes.

    Refuses what `np.load` would mishandle: a stream that is not .npy at all (it would be taken
    for a pickle), object arrays, and a header claiming more data than the file holds (it would
    try to allocate it: "Unable to allocate 35.5 PiB").
    """
    fmt = np.lib.format
    start = f.read(len(NPY_MAGIC))
    if start != NPY_MAGIC:
        raise FeatureFileError(
            f"{where}: is not a valid .npy file (it does not start with the .npy signature "
            "\\x93NUMPY); write arrays with numpy.save"
        )
    f.seek(0)
    try:
        version = fmt.read_magic(f)
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        shape, _, dtype = read_header[version](f)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise FeatureFileError(f"{where}: is not a valid .npy file (bad header: {exc})") from None
    if dtype.hasobject:
        raise FeatureFileError(
            f"{where}: holds Python objects (ragged rows?), which are never unpickled; save a "
            "numeric (items, dims) array"
        )
    claimed = math.prod(shape) * dtype.itemsize
    available = size - f.tell()
    if claimed > available:
        raise FeatureFileError(
            f"{where}: is truncated or corrupt: its header declares a {dtype} array of shape "
            f"{tuple(shape)} ({_size(claimed)}) but the file holds {_size(max(available, 0))} "
            "of data"
        )
    return tuple(shape), dtype


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The checked shape and dtype of an .npy file, read from its header only."""
    try:
        with path.open("rb") as f:
            return _npy_header(f, os.fstat(f.fileno()).st_size, str(path))
    except OSError as exc:
        raise FeatureFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _check_npz(path: Path) -> None:
    """Every .npy member of an .npz archive has a sound header (see `_npy_header`)."""
    with path.open("rb") as f:
        start = f.read(4)
    if start not in ZIP_MAGIC:
        raise FeatureFileError(
            f"{path}: is not a valid .npz file (not a zip archive); write it with numpy.savez"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        _npy_header(member, info.file_size, f"{path}[{info.filename[:-4]}]")
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise FeatureFileError(f"{path}: not a readable .npz file ({exc})") from None


def _npy(path: Path, name: str, columns: Columns) -> FeatureTable:
    npy_header(path)
    with _numpy_errors(path, ".npy"):
        return FeatureTable(
            path, np.load(path, mmap_mode="r" if MEMORY_MAP else None, allow_pickle=False)
        )


def _pick(path: Path, keys: Sequence[str], name: str, reserved: set[str], select: str = "") -> str:
    if select:
        if select not in keys:
            raise FeatureFileError(
                f"{path}: has no array {select!r} (arrays: {', '.join(keys) or 'none'})"
            )
        return select
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
    _check_npz(path)
    with _numpy_errors(path, ".npz"), np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        reserved = {columns.id, columns.labels, columns.split, "ids"}
        key = _pick(path, keys, name, reserved, columns.select)
        arrays = {k: archive[k] for k in keys if k == key or k in reserved}
    ids = arrays.get(columns.id, arrays.get("ids"))
    return FeatureTable(
        path,
        arrays[key],
        ids=_ids(path, ids) if ids is not None else None,
        labels=_labels(path, arrays[columns.labels]) if columns.labels in arrays else None,
        split=_split(path, arrays[columns.split]) if columns.split in arrays else None,
        column=key,
    )


# safetensors dtype names -> numpy dtypes (little-endian). BF16 has no numpy dtype: it is read as
# uint16 and widened to float32 (`_bf16_to_float32`).
SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}  # fmt: skip
SAFETENSORS_MAX_HEADER = 100 << 20  # the format's own limit on the JSON header


@attrs.frozen
class TensorInfo:
    """One tensor of a .safetensors file: its dtype name, shape and byte range in the file."""

    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offset of its first byte in the file
    nbytes: int


def safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """The tensors a .safetensors file declares, checked against its size; nothing else is read.

    The file is an 8-byte little-endian header length, a JSON header {name: {"dtype", "shape",
    "data_offsets": [begin, end]}} (plus an optional "__metadata__"), then the raw data.
    """

    def bad(why: str) -> FeatureFileError:
        return FeatureFileError(f"{path}: not a readable .safetensors file ({why})")

    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise bad("too short for a header")
            length = int.from_bytes(head, "little")
            if length > min(size - 8, SAFETENSORS_MAX_HEADER):
                raise bad(f"its header claims {_size(length)} but the file holds {_size(size)}")
            raw = f.read(length)
    except OSError as exc:
        raise FeatureFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"the header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    data_start, data_size = 8 + length, size - 8 - length
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = entry["dtype"], tuple(entry["shape"])
            begin, end = entry["data_offsets"]
            if not (isinstance(begin, int) and isinstance(end, int)) or any(
                not isinstance(n, int) or n < 0 for n in shape
            ):
                raise TypeError("offsets and shape must be non-negative integers")
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"tensor {name!r} has a malformed entry ({exc})") from None
        if dtype not in SAFETENSORS_DTYPES:
            raise FeatureFileError(
                f"{path}: tensor {name!r} has dtype {dtype}, which is not read (use one of "
                f"{', '.join(SAFETENSORS_DTYPES)}; float32 is memory-mapped without a copy)"
            )
        nbytes = math.prod(shape) * np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
        if not 0 <= begin <= end <= data_size or end - begin != nbytes:
            raise bad(
                f"tensor {name!r} of shape {shape} needs {_size(nbytes)} but its offsets "
                f"[{begin}, {end}] do not fit the {_size(data_size)} of data (truncated?)"
            )
        out[name] = TensorInfo(dtype, shape, data_start + begin, nbytes)
    return out


def _bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values (as uint16 bit patterns) widened to float32, in row blocks."""
    if bits.ndim == 0:
        return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)
    out = np.empty(bits.shape, dtype=np.float32)
    wide = out.view(np.uint32)
    for rows in row_blocks(bits):
        wide[rows] = bits[rows].astype(np.uint32) << 16
    return out


def read_tensor(path: Path, info: TensorInfo, memory_map: bool | None = None) -> np.ndarray:
    """One tensor of a .safetensors file: an `np.memmap` of its bytes (read-only), or an array
    read into memory when `memory_map` is False (default: `MEMORY_MAP`). BF16 becomes float32."""
    dtype = np.dtype(SAFETENSORS_DTYPES[info.dtype])
    if info.nbytes == 0:
        array: np.ndarray = np.zeros(info.shape, dtype=dtype)
    elif MEMORY_MAP if memory_map is None else memory_map:
        array = np.memmap(path, dtype=dtype, mode="r", offset=info.start, shape=info.shape)
    else:
        with path.open("rb") as f:
            f.seek(info.start)
            array = np.fromfile(f, dtype=dtype, count=math.prod(info.shape)).reshape(info.shape)
    return _bf16_to_float32(array) if info.dtype == "BF16" else array


def header_shape(
    path: str | Path, name: str = "", columns: Columns | None = None
) -> tuple[int, ...] | None:
    """The shape of the matrix `read_features` would read, from the file's header alone (.npy,
    .safetensors); None for formats whose shape needs the data read."""
    path, columns = Path(path), columns or Columns()
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".safetensors"):
        return None
    check_path(path, "a feature file")
    if suffix == ".npy":
        return npy_header(path)[0]
    tensors = safetensors_header(path)
    return tensors[_pick(path, list(tensors), name, {columns.labels}, columns.select)].shape


def _safetensors(path: Path, name: str, columns: Columns) -> FeatureTable:
    tensors = safetensors_header(path)
    key = _pick(path, list(tensors), name, {columns.labels}, columns.select)
    labels = tensors.get(columns.labels)
    return FeatureTable(
        path,
        read_tensor(path, tensors[key]),
        labels=_labels(path, read_tensor(path, labels, memory_map=False)) if labels else None,
        column=key,
    )


def _parquet(path: Path, name: str, columns: Columns) -> FeatureTable:
    pq = require("pyarrow.parquet", "files", f"reading {path}", package="pyarrow")
    pa = require("pyarrow", "files", f"reading {path}")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise FeatureFileError(f"{path}: not a readable parquet file ({exc})") from None
    names = list(schema.names)
    meta = {columns.id: "item ids", columns.labels: "labels", columns.split: "split marks"}
    rest = [c for c in names if c not in meta]
    is_list = lambda c: any(  # noqa: E731
        test(schema.field(c).type)
        for test in (pa.types.is_list, pa.types.is_fixed_size_list, pa.types.is_large_list)
    )
    lists = [c for c in rest if is_list(c)]
    if columns.select and columns.select in meta:
        raise FeatureFileError(
            f"{path}:{columns.select}: that column holds {meta[columns.select]}, not vectors"
        )
    vector = columns.select or columns.vector or (lists[0] if len(lists) == 1 else "")
    if vector and vector not in names:
        raise FeatureFileError(f"{path}: no column {vector!r} (columns: {', '.join(names)})")
    if vector and not is_list(vector):
        raise FeatureFileError(
            f"{path}: column {vector!r} is not a list column (one vector per row); its type is "
            f"{schema.field(vector).type}"
        )
    if not vector and lists:
        raise FeatureFileError(
            f"{path}: has several vector (list) columns ({', '.join(lists)}); name the one each "
            f'feature set reads, e.g. "{name or "name"}={path.name}:{lists[0]}"'
        )
    if not vector:
        bad = [c for c in rest if not (pa.types.is_floating(schema.field(c).type)
                                       or pa.types.is_integer(schema.field(c).type))]  # fmt: skip
        if bad:
            raise FeatureFileError(
                f"{path}: column(s) {', '.join(bad[:5])} are not numeric; vectors are read from "
                f"one list column, or one numeric column per dimension (id column: {columns.id!r})"
            )
    wanted = [c for c in names if c in meta or (c == vector if vector else True)]
    try:
        table = pq.read_table(path, columns=wanted)  # only the columns this feature set needs
    except (pa.ArrowException, OSError) as exc:
        raise FeatureFileError(f"{path}: not a readable parquet file ({exc})") from None
    if vector:
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
        if any(table.column(c).null_count for c in rest):
            raise FeatureFileError(f"{path}: some vector columns have missing (null) values")
        matrix = (
            np.column_stack([table.column(c).to_numpy() for c in rest])
            if rest
            else np.zeros((table.num_rows, 0))
        )
    get = lambda c: table.column(c).to_pylist() if c in names else None  # noqa: E731
    out = _table(path, matrix, get(columns.id), get(columns.labels), get(columns.split))
    return attrs.evolve(out, column=vector or None)


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
    check_path(path, "an id file")
    if path.suffix.lower() == ".npy":
        npy_header(path)
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
