"""What a trained run leaves for later measurements: its predicted vectors, content-addressed.

A run's *train* stage ends with the predictions of its probed splits; its *measure* stage needs
nothing else (the input and target spaces come from the data). So the predictions are kept, one
file per run, in `<database>.artifacts/`, named by a digest of their content: a new metric or k
measures them again without retraining.

Crash safety: a file is written under a temporary name, flushed and fsynced, then renamed; only
the final name is ever read, and reading checks the content against the digest in the name. A
kill -9 leaves at most a temporary file (removed by `xmodal gc`) or a finished file that no run
refers to yet (the run was not recorded; the rerun retrains and writes the same content).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
import numpy as np

from xmodal.errors import XmodalError

SUFFIX = ".npz"
_TEMP_PREFIX = ".tmp-"


class ArtifactError(XmodalError):
    """A stored artifact is missing or does not match its digest."""


def artifacts_dir(db: str | Path) -> Path:
    """Where the artifacts of a results database live (keyed on the file, not on its spelling)."""
    real = Path(os.path.realpath(db))
    return real.with_name(real.name + ".artifacts")


def digest_of(arrays: Mapping[str, np.ndarray]) -> str:
    """Content digest of named arrays: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.data)
    return h.hexdigest()[:32]


@attrs.frozen
class GcReport:
    kept: int
    removed: int
    removed_bytes: int
    temporary: int


class ArtifactStore:
    """The artifacts directory of one results database."""

    def __init__(self, db: str | Path) -> None:
        self.root = artifacts_dir(db)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}{SUFFIX}"

    def has(self, digest: str | None) -> bool:
        return bool(digest) and self.path(str(digest)).is_file()

    def put(self, arrays: Mapping[str, np.ndarray]) -> str:
        """Store named arrays (atomically, durably) and return their digest."""
        digest = digest_of(arrays)
        final = self.path(digest)
        if final.is_file():
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=SUFFIX, dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return digest

    def load(self, digest: str) -> dict[str, np.ndarray]:
        """The arrays stored under `digest`, checked against it."""
        return load_artifact(self.path(digest), digest)

    def digests(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.root.glob(f"??/*{SUFFIX}")
                      if not p.name.startswith(_TEMP_PREFIX))  # fmt: skip

    def gc(self, keep: Iterable[str], dry_run: bool = False) -> GcReport:
        """Remove every artifact not in `keep`, and leftover temporary files.

        Call it only while holding the database's run lock: a runner writing at the same time
        could be between writing an artifact and recording the run that refers to it.
        """
        keep = set(keep)
        kept = removed = removed_bytes = temporary = 0
        if not self.root.is_dir():
            return GcReport(0, 0, 0, 0)
        for path in sorted(self.root.glob("??/*")):
            if path.name.startswith(_TEMP_PREFIX):
                temporary += 1
            elif path.name.endswith(SUFFIX) and path.name[: -len(SUFFIX)] in keep:
                kept += 1
                continue
            else:
                removed += 1
            removed_bytes += path.stat().st_size
            if not dry_run:
                path.unlink(missing_ok=True)
        if not dry_run:
            for sub in self.root.glob("??"):
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
        return GcReport(kept, removed, removed_bytes, temporary)


def load_artifact(path: str | Path, digest: str) -> dict[str, np.ndarray]:
    """The arrays of one artifact file, checked against the digest it was stored under."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise ArtifactError(f"artifact {path} is missing (removed by `xmodal gc`?)") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"artifact {path} cannot be read: {exc}") from None
    if digest_of(arrays) != digest:
        raise ArtifactError(f"artifact {path} does not match its digest (corrupted)")
    return arrays


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
