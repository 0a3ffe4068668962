"""On-disk cache of encoded feature matrices, keyed by a content hash.

Lives in xmodal's cache directory (`xmodal.cache_dir()`: `$XMODAL_CACHE_DIR`, else
`~/.cache/xmodal`), which the core also uses for its file-fingerprint cache. Each entry is
`<encoder>/<key>.npy` (loaded with `allow_pickle=False`) plus a `<key>.json` sidecar saying what
it holds. Entries are written to a temporary file and renamed into place, so a crash never leaves
a half-written matrix.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xmodal import cache_dir


def content_key(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (bytes are hashed, not serialised)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes | bytearray):
            digest.update(b"B" + hashlib.sha256(part).digest())
        else:
            text = json.dumps(part, sort_keys=True, separators=(",", ":"), default=str)
            digest.update(b"J" + text.encode())
    return digest.hexdigest()[:32]


def entry_path(namespace: str, key: str, root: Path | None = None) -> Path:
    return (root or cache_dir()) / namespace / f"{key}.npy"


def load(namespace: str, key: str, root: Path | None = None) -> np.ndarray | None:
    """The cached matrix, or None when absent or unreadable (it is then recomputed)."""
    path = entry_path(namespace, key, root)
    if not path.exists():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def save(
    namespace: str, key: str, matrix: np.ndarray, info: dict[str, Any], root: Path | None = None
) -> Path:
    """Store `matrix` under `key` atomically, with `info` as its JSON sidecar."""
    path = entry_path(namespace, key, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix, write in (
        (".json", lambda f: f.write(json.dumps(info, indent=2, default=str).encode())),
        (".npy", lambda f: np.save(f, matrix, allow_pickle=False)),
    ):
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shareable
            os.replace(tmp, path.with_suffix(suffix))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path
