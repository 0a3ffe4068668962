"""The `collell2018` dataset: the feature files Collell & Moens (ACL 2018) released.

One CSV per split and feature set, named `<TR|TS>_<feature set>.csv` (e.g. `TR_lang_biGRU.csv`,
`TS_vis_vgg128.csv`): no header; the first field holds the item's label ids separated by spaces,
the rest are the vector's components. Row i of every file of a split is the same item, so ids
are `TR0`, `TR1`, … and `TS0`, … (the files carry no item ids). Rows are kept as released,
duplicates included.

The directory is the `data_dir` parameter, else `$XMODAL_DATA_DIR`; with `benchmark` set, the
files are read from its sub-directory (e.g. `XMODAL_DATA_DIR=/data` and `benchmark =
"iaprtc12"`). When both splits are present the dataset carries them (use `split_strategy = "dataset"`);
when only one is (as for the IAPR TC-12 test files shipped here), `PairedData.split_marks` is None
and the study must say `split_strategy = "kfold"` or `"random"` — marking every item "test" would only
make `split_strategy = "dataset"` fail later with an empty training set.

Its fingerprint is a digest of the bytes of every CSV it reads (with their file names), so
replacing a file gives new runs; moving the directory does not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xmodal import (
    DatasetSpec,
    FeatureSetInfo,
    PairedData,
    Param,
    XmodalError,
    combine,
    files_digest,
    hookimpl,
)

READER_VERSION = "1"  # bump when the same files would load as other data
SPLITS = {"TR": "train", "TS": "test"}
FILE_PATTERN = re.compile(r"^(TR|TS)_(.+)\.csv$")
PARAMS = {
    "data_dir": Param(str, default="", doc="directory of the CSVs (default: $XMODAL_DATA_DIR)"),
    "benchmark": Param(str, default="", doc="sub-directory of data_dir, e.g. iaprtc12, wiki"),
}


class Collell2018Error(XmodalError):
    """The released CSV files are missing or do not match their format."""


def data_dir(params: Mapping[str, Any]) -> Path:
    raw = params["data_dir"] or os.environ.get("XMODAL_DATA_DIR", "")
    if not raw:
        raise Collell2018Error(
            "collell2018: no data directory; set data_dir in [data.params] or $XMODAL_DATA_DIR"
        )
    path = Path(raw).expanduser()
    if params["benchmark"]:
        path = path / params["benchmark"]
    if not path.is_dir():
        raise Collell2018Error(
            f"collell2018: data directory {path} does not exist (cwd: {Path.cwd()})"
        )
    return path


def files(directory: Path) -> dict[str, dict[str, Path]]:
    """{feature set: {"TR"/"TS": path}} for the CSVs found."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(directory.iterdir()):
        match = FILE_PATTERN.match(path.name)
        if match:
            found.setdefault(match.group(2), {})[match.group(1)] = path
    if not found:
        raise Collell2018Error(f"collell2018: no TR_*.csv or TS_*.csv files in {directory}")
    prefixes = {frozenset(v) for v in found.values()}
    if len(prefixes) > 1:
        raise Collell2018Error(
            f"collell2018: in {directory} the feature sets do not all have the same splits: "
            + ", ".join(f"{name} has {'/'.join(sorted(v))}" for name, v in found.items())
        )
    return found


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """(label fields, (n, d) float32 vectors) of one released CSV."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise Collell2018Error(f"{path}: cannot read ({exc})") from None
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise Collell2018Error(f"{path}: the file is empty")
    labels, values = [], []
    for line in lines:
        head, _, rest = line.partition(",")
        labels.append(head)
        values.append(rest.rstrip(","))
    widths = {v.count(",") for v in values}
    if len(widths) > 1:
        counts = [v.count(",") + 1 for v in values]
        bad = next(i for i, c in enumerate(counts) if c != counts[0])
        raise Collell2018Error(
            f"{path}:{bad + 1}: has {counts[bad]} components, line 1 has {counts[0]}"
        )
    try:
        flat = np.array(",".join(values).split(","), dtype=np.float64)
    except ValueError as exc:
        raise Collell2018Error(f"{path}: a component is not a number ({exc})") from None
    matrix = flat.reshape(len(values), -1).astype(np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad_rows):
        raise Collell2018Error(f"{path}:{bad_rows[0] + 1}: NaN or infinite components")
    return labels, matrix


def _label_set(path: Path, row: int, field: str) -> frozenset[int]:
    try:
        return frozenset(int(t) for t in field.split())
    except ValueError:
        raise Collell2018Error(
            f"{path}:{row + 1}: label field {field!r} is not space-separated ints"
        ) from None


def feature_sets(params: Mapping[str, Any]) -> list[str]:
    return list(files(data_dir(params)))


def fingerprint(params: Mapping[str, Any]) -> str:
    """A digest of every CSV the dataset reads (bytes and file name)."""
    paths = [path for by_split in files(data_dir(params)).values() for path in by_split.values()]
    return combine("collell2018", READER_VERSION, files_digest(paths))


def load(params: Mapping[str, Any]) -> PairedData:
    directory = data_dir(params)
    found = files(directory)
    prefixes = [p for p in SPLITS if p in next(iter(found.values()))]
    ids: list[str] = []
    marks: list[str] = []
    labels: list[frozenset[int]] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in found}
    for prefix in prefixes:
        first_labels: list[str] | None = None
        first_path: Path | None = None
        for name, paths in found.items():
            label_fields, matrix = read_csv(paths[prefix])
            if first_labels is None:
                first_labels, first_path = label_fields, paths[prefix]
            elif len(label_fields) != len(first_labels):
                raise Collell2018Error(
                    f"{paths[prefix]} has {len(label_fields)} rows but {first_path} has {len(first_labels)}"
                )
            elif label_fields != first_labels:
                row = next(
                    i
                    for i, (a, b) in enumerate(zip(label_fields, first_labels, strict=True))
                    if a != b
                )
                raise Collell2018Error(
                    f"{paths[prefix]}:{row + 1}: labels differ from {first_path} (rows are not paired)"
                )
            parts[name].append(matrix)
        assert first_labels is not None and first_path is not None
        ids.extend(f"{prefix}{i}" for i in range(len(first_labels)))
        marks.extend([SPLITS[prefix]] * len(first_labels))
        labels.extend(_label_set(first_path, i, f) for i, f in enumerate(first_labels))
    return PairedData(
        ids=tuple(ids),
        features={name: np.concatenate(chunks) for name, chunks in parts.items()},
        split_marks=np.array(marks) if len(prefixes) == 2 else None,
        labels=tuple(labels),
        source=f"collell2018: {directory}",
    )


def describe(params: Mapping[str, Any]) -> list[FeatureSetInfo]:
    infos = []
    for name, paths in files(data_dir(params)).items():
        n, dim = 0, None
        for path in paths.values():
            with path.open(encoding="utf-8") as f:
                first = f.readline()
                n += 1 + sum(1 for line in f if line.strip())
            dim = first.rstrip().rstrip(",").count(",")
        found = [SPLITS[p] for p in SPLITS if p in paths]
        splits = "train+test split" if len(found) == 2 else f"{found[0]} split only (use kfold)"
        infos.append(
            FeatureSetInfo(
                name,
                n,
                dim,
                f"{', '.join(p.name for p in paths.values())} in {path.parent}",
                splits,
            )
        )
    return infos


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="collell2018",
            load=load,
            feature_sets=feature_sets,
            describe=describe,
            params=PARAMS,
            fingerprint=fingerprint,
            description="Collell & Moens (2018) released CSVs (TR_/TS_<features>.csv), e.g. IAPR TC-12",
        )
    )
