"""Content fingerprints of the data a run reads: files, arrays, loaded datasets.

A fingerprint is a short hex string (20 characters, 80 bits of SHA-256) that changes whenever
the content it covers changes. Datasets build theirs (`DatasetSpec.fingerprint`) from these
pieces:

- `file_digest(path)`: the SHA-256 of a file's bytes, streamed. Digests are remembered in a
  small cache (`<cache dir>/fingerprints/files.json`, see `cache_dir`)
  keyed by the file's resolved path, size, modification time (ns) and inode, so an unchanged
  large file is hashed once, not once per `plan` or `run`. A file modified within the last
  `RACY_SECONDS` is hashed but not remembered (its next change could keep the same mtime,
  as git's "racy clean" problem), and a corrupt or unreadable cache is ignored.
- `files_digest(paths)`: many files at once, each with a role (its name in the dataset).
- `array_digest(*arrays)`, `paired_data_digest(data)`: the documented fallback for a dataset
  without a fingerprint of its own, computed from the loaded arrays.
- `value_digest(obj)`: JSON-serialisable parameters; `combine(*parts)`: several digests in one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.errors import XmodalError

LENGTH = 20  # hex characters in every digest this module returns
CHUNK = 1 << 20  # bytes read at a time when hashing a file
RACY_SECONDS = 2.0  # files modified more recently than this are not remembered
MAX_ENTRIES = 50_000  # the cache keeps the most recently added entries up to this count
CACHE_VERSION = 1

PathLike = str | os.PathLike[str]
_lock = threading.Lock()
_memo: dict[str, str] = {}  # this process's view of the cache (same keys, same rules)


class FingerprintError(XmodalError):
    """A file that a dataset's fingerprint covers cannot be read."""


def _short(h: Any) -> str:
    return h.hexdigest()[:LENGTH]


def combine(*parts: str) -> str:
    """One digest of several strings, in order (length-prefixed, so ("ab", "c") != ("a", "bc"))."""
    h = hashlib.sha256(b"xmodal-combine\0")
    for part in parts:
        data = str(part).encode()
        h.update(len(data).to_bytes(8, "little") + data)
    return _short(h)


def value_digest(value: Any) -> str:
    """A digest of JSON-serialisable data (dict keys sorted; other objects by str())."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return _short(hashlib.sha256(b"xmodal-value\0" + text.encode()))


def cache_dir() -> Path:
    """xmodal's cache root: $XMODAL_CACHE_DIR, else ~/.cache/xmodal.

    The core keeps its file-digest cache in `fingerprints/` under it; plugins may keep their own
    caches there too (the built-in encoders keep feature matrices in `<encoder name>/`).
    """
    raw = os.environ.get("XMODAL_CACHE_DIR")
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "xmodal"


def cache_path() -> Path:
    """Where file digests are remembered."""
    return cache_dir() / "fingerprints" / "files.json"


def _key(path: Path) -> tuple[Path, str, os.stat_result]:
    try:
        real = path.resolve(strict=True)
        st = real.stat()
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on older Pythons
        raise FingerprintError(f"{path}: cannot read it to fingerprint it ({_why(exc)})") from None
    if not real.is_file():
        raise FingerprintError(f"{path}: is not a regular file (a directory?)")
    return real, f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}", st


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise FingerprintError(f"{path}: cannot read it to fingerprint it ({_why(exc)})") from None
    return _short(h)


def _read_cache() -> dict[str, str]:
    try:
        raw = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(raw, dict) or raw.get("version") != CACHE_VERSION:
        return {}
    entries = raw.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {
        k: v
        for k, v in entries.items()
        if isinstance(k, str) and isinstance(v, str) and len(v) == LENGTH
    }


def _write_cache(new: Mapping[str, str]) -> None:
    """Merge `new` into the cache file atomically; a failure only costs re-hashing later."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read_cache()  # re-read: keep what concurrent processes added meanwhile
        for key in new:
            entries.pop(key, None)  # re-insert at the end: newest last
        entries.update(new)
        if len(entries) > MAX_ENTRIES:
            entries = dict(list(entries.items())[-MAX_ENTRIES:])
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".files.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": CACHE_VERSION, "entries": entries}, f, separators=(",", ":"))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def _digests(paths: list[Path]) -> list[str]:
    """The content digest of each path, from the cache where the file is unchanged."""
    keyed = [_key(p) for p in paths]
    with _lock:
        known = dict(_memo)
    if any(key not in known for _, key, _ in keyed):
        known.update(_read_cache())
    fresh: dict[str, str] = {}
    out = []
    now_ns = time.time_ns()
    for real, key, st in keyed:
        digest = known.get(key) or fresh.get(key)
        if digest is None:
            digest = _hash_file(real)
            if now_ns - st.st_mtime_ns > RACY_SECONDS * 1e9:
                fresh[key] = digest
        out.append(digest)
    with _lock:
        _memo.update({k: known[k] for _, k, _ in keyed if k in known})
        _memo.update(fresh)
    if fresh:
        _write_cache(fresh)
    return out


def file_digest(path: PathLike) -> str:
    """The SHA-256 (first 20 hex characters) of the file's bytes; cached while it is unchanged."""
    return _digests([Path(path)])[0]


def files_digest(paths: Iterable[PathLike | tuple[str, PathLike]] | Mapping[str, PathLike]) -> str:
    """One digest of several files, each with its role: a (role, path) pair or a mapping.

    A bare path's role is its file name. The result does not depend on the order the files are
    given in (entries are sorted by role, then content), but it does depend on the roles: the
    same bytes under another name are other data. Directories holding the files are not part
    of it, so moving a dataset keeps its fingerprint.
    """
    items = paths.items() if isinstance(paths, Mapping) else paths
    pairs: list[tuple[str, Path]] = []
    for item in items:
        if isinstance(item, tuple):
            role, path = item
            pairs.append((str(role), Path(path)))
        else:
            pairs.append((Path(item).name, Path(item)))
    digests = _digests([p for _, p in pairs])
    entries = sorted(zip((r for r, _ in pairs), digests, strict=True))
    return combine("files", *(f"{role}\0{digest}" for role, digest in entries))


def clear_memo() -> None:
    """Forget this process's remembered digests (the cache file stays); for tests."""
    with _lock:
        _memo.clear()


BLOCK_BYTES = 16 << 20  # bytes of rows hashed at a time by `array_digest`


def array_digest(*arrays: Any) -> str:
    """A digest of arrays: each one's dtype, shape and bytes in C order.

    The bytes are hashed in blocks of rows (`BLOCK_BYTES`), so a memory-mapped or
    non-contiguous matrix is never copied whole: only one block at a time is.
    """
    h = hashlib.sha256(b"xmodal-arrays\0")
    for array in arrays:
        a = np.asanyarray(array)
        if a.dtype == object:
            text = json.dumps(a.tolist(), default=str, sort_keys=True).encode()
            h.update(b"O" + str(a.shape).encode() + len(text).to_bytes(8, "little") + text)
            continue
        if a.ndim == 0:
            a = a.reshape(1)  # a scalar is digested as one value of shape (1,)
        head = f"{a.dtype.str}{a.shape}".encode()
        h.update(b"A" + len(head).to_bytes(8, "little") + head)
        if a.size:
            step = max(1, BLOCK_BYTES // (a.itemsize * (a.size // a.shape[0])))
            for start in range(0, a.shape[0], step):
                block = np.ascontiguousarray(a[start : start + step])
                h.update(block.reshape(-1).view(np.uint8))
    return _short(h)


def paired_data_digest(data: Any) -> str:
    """The fallback fingerprint of a loaded `PairedData`: its ids, every feature set (name and
    matrix), its split marks, its labels and its fold numbers (if any). Its `source` text is left
    out (it names paths)."""
    ids = value_digest(list(data.ids))
    features = [f"{name}\0{array_digest(data.features[name])}" for name in sorted(data.features)]
    split = "none" if data.split is None else array_digest(np.asarray(data.split).astype(str))
    labels = "none" if data.labels is None else value_digest([sorted(s) for s in data.labels])
    # Fold numbers enter only when present, so data without them keeps its digest.
    fold = getattr(data, "fold", None)
    folds = () if fold is None else ("fold\0" + array_digest(np.asarray(fold, np.int64)),)
    return combine("paired-data", ids, *features, split, labels, *folds)
