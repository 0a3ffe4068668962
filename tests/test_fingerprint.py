"""Data fingerprints: a short digest that changes exactly when the data a dataset reads changes.

File digests are remembered by (resolved path, size, mtime, inode) so an unchanged large file is
hashed once; a corrupt cache is ignored; a just-modified file is not remembered.
"""

from __future__ import annotations

import builtins
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from xmodal import fingerprint as fp
from xmodal.data import PairedData

OLD = 1_600_000_000  # an mtime far from "now", so digests are remembered (not racy)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XMODAL_CACHE_DIR", str(tmp_path / "cache"))
    fp.clear_memo()
    yield
    fp.clear_memo()


def write(path: Path, data: bytes, mtime: int = OLD) -> Path:
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def opened(monkeypatch):
    """The paths the fingerprint module opens for reading."""
    seen: list[str] = []
    real_open = builtins.open

    def spy(file, mode="r", *args, **kwargs):
        if "b" in mode and "r" in mode:
            seen.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(fp, "open", spy, raising=False)
    return seen


def test_digest_is_short_hex_and_changes_with_one_byte(tmp_path):
    a = write(tmp_path / "a.bin", b"x" * 10_000)
    before = fp.file_digest(a)
    assert len(before) == fp.LENGTH and int(before, 16) >= 0
    write(a, b"x" * 9_999 + b"y", mtime=OLD + 1)
    assert fp.file_digest(a) != before


def test_same_size_rewrite_within_one_mtime_tick_is_still_seen(tmp_path):
    """A file just written is not remembered: its next rewrite could keep size and mtime."""
    a = tmp_path / "a.bin"
    a.write_bytes(b"1234")
    first = fp.file_digest(a)
    stat = a.stat()
    a.write_bytes(b"1235")
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime, same inode
    assert fp.file_digest(a) != first


def test_touching_a_file_keeps_its_digest(tmp_path):
    a = write(tmp_path / "a.bin", b"content")
    before = fp.file_digest(a)
    os.utime(a, (OLD + 100, OLD + 100))
    assert fp.file_digest(a) == before


def test_unchanged_file_is_read_once_even_across_processes(tmp_path, opened):
    a = write(tmp_path / "big.bin", os.urandom(3 * fp.CHUNK + 5))
    first = fp.file_digest(a)
    fp.clear_memo()  # as a new process would start: only the cache file remains
    assert fp.file_digest(a) == first
    assert opened.count(str(a.resolve())) == 1


def test_changed_file_is_read_again(tmp_path, opened):
    a = write(tmp_path / "a.bin", b"one")
    fp.file_digest(a)
    write(a, b"two", mtime=OLD + 1)
    fp.file_digest(a)
    assert opened.count(str(a.resolve())) == 2


def test_corrupt_cache_is_ignored_and_replaced(tmp_path, opened):
    a = write(tmp_path / "a.bin", b"data")
    expected = fp.file_digest(a)
    for garbage in (b"{not json", b"\xff\xfe", b"[1, 2]", b'{"version": 1, "entries": 3}'):
        fp.cache_path().write_bytes(garbage)
        fp.clear_memo()
        assert fp.file_digest(a) == expected
    assert opened.count(str(a.resolve())) == 5
    fp.clear_memo()
    fp.file_digest(a)  # the last call rewrote a valid cache
    assert opened.count(str(a.resolve())) == 5


def test_unwritable_cache_directory_only_costs_rehashing(tmp_path, monkeypatch):
    blocker = write(tmp_path / "not-a-dir", b"")
    monkeypatch.setenv("XMODAL_CACHE_DIR", str(blocker))
    a = write(tmp_path / "a.bin", b"data")
    assert fp.file_digest(a) == fp.file_digest(a)


def test_missing_file_and_directory_are_clear_errors(tmp_path):
    with pytest.raises(fp.FingerprintError, match=r"missing\.bin"):
        fp.file_digest(tmp_path / "missing.bin")
    (tmp_path / "d.npy").mkdir()
    with pytest.raises(fp.FingerprintError, match=r"d\.npy.*not a regular file"):
        fp.file_digest(tmp_path / "d.npy")


def test_files_digest_depends_on_roles_and_contents_not_order_or_folder(tmp_path):
    a = write(tmp_path / "a.bin", b"A")
    b = write(tmp_path / "b.bin", b"B")
    base = fp.files_digest([("text", a), ("image", b)])
    assert fp.files_digest([("image", b), ("text", a)]) == base
    assert fp.files_digest({"text": a, "image": b}) == base
    assert fp.files_digest([("text", b), ("image", a)]) != base
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy2(a, moved / "a.bin")
    shutil.copy2(b, moved / "b.bin")
    assert fp.files_digest([("text", moved / "a.bin"), ("image", moved / "b.bin")]) == base
    assert fp.files_digest([a, b]) == fp.files_digest([("a.bin", a), ("b.bin", b)])


def test_combine_is_ordered_and_unambiguous():
    assert fp.combine("ab", "c") != fp.combine("a", "bc")
    assert fp.combine("a", "b") != fp.combine("b", "a")
    assert fp.combine("a", "b") == fp.combine("a", "b")
    assert len(fp.combine()) == fp.LENGTH


def test_array_digest_sees_dtype_shape_and_values_not_memory_layout():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = fp.array_digest(x)
    assert fp.array_digest(np.asfortranarray(x)) == base
    assert fp.array_digest(x.T.copy().T) == base
    assert fp.array_digest(x.reshape(4, 3)) != base
    assert fp.array_digest(x.astype(np.float64)) != base
    y = x.copy()
    y[2, 3] = np.nextafter(y[2, 3], np.float32(100))
    assert fp.array_digest(y) != base
    assert fp.array_digest(x, x) != fp.array_digest(x)


def paired(**change) -> PairedData:
    fields = dict(
        ids=("a", "b", "c"),
        features={"t": np.eye(3, dtype=np.float32), "i": np.ones((3, 2), np.float32)},
        split=np.array(["train", "train", "test"]),
        labels=(frozenset([1]), frozenset([2, 3]), frozenset()),
        source="somewhere",
    )
    return PairedData(**{**fields, **change})


def test_paired_data_digest_covers_ids_features_split_labels_but_not_source():
    base = fp.paired_data_digest(paired())
    assert fp.paired_data_digest(paired(source="elsewhere")) == base
    for change in (
        dict(ids=("a", "b", "d")),
        dict(features={"t": np.eye(3, dtype=np.float32), "j": np.ones((3, 2), np.float32)}),
        dict(features={"t": np.eye(3, dtype=np.float32), "i": np.zeros((3, 2), np.float32)}),
        dict(split=np.array(["train", "test", "test"])),
        dict(split=None),
        dict(labels=(frozenset([1]), frozenset([2]), frozenset())),
        dict(labels=None),
    ):
        assert fp.paired_data_digest(paired(**change)) != base, change
