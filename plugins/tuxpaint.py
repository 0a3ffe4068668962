"""The `tuxpaint` dataset: Tux Paint's stamp images paired with their English names.

Stamps come from the Debian package `tuxpaint-stamps-default` (files under
/usr/share/tuxpaint/stamps): each stamp is an image (`x.png` and/or `x.svg`; the PNG is used
when both exist) with a description file `x.txt` whose first line is its English name, e.g.
"A turkey.". The item id is that name lower-cased, without a leading article or the final full
stop ("turkey"); stamps with the same id are merged into one item whose image features are the
mean over its images. Mirrored variants without their own .txt are skipped. The label of an
item is its top-level stamp category (animals, food, …). There is no train/test split of its
own: use split_strategy = "kfold" or "random".

Feature sets are made by encoders named in the study (`text_encoders`, `image_encoders`), and
cached on disk after the first encoding.

Its fingerprint covers the bytes of every kept stamp's image and .txt file (by their paths
under `root`), the category names (labels are their indices), the selection parameters and
each encoder's name, version, parameters and weights.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from xmodal import (
    DatasetSpec,
    FeatureSetInfo,
    PairedData,
    Param,
    XmodalError,
    combine,
    files_digest,
    hookimpl,
    value_digest,
)
from xmodal_plugins.support import encoded_datasets

DEFAULT_ROOT = "/usr/share/tuxpaint/stamps"
READER_VERSION = "1"  # bump when the same stamp files would load as other items or labels
INSTALL = (
    "install the stamps with: apt-get update && "
    "apt-get install -y --no-install-recommends tuxpaint-stamps-default"
)
PARAMS = {
    "root": Param(str, default=DEFAULT_ROOT, doc="the stamps directory"),
    "text_encoders": Param(str, default=["glove"], many=True, doc="encoders for the names"),
    "image_encoders": Param(
        str, default=["efficientnet_lite0"], many=True, doc="encoders for the images"
    ),
    "encoder_options": Param(
        str, default=[], many=True, doc='"encoder.key=value", e.g. "efficientnet_lite0.fit=crop"'
    ),
    "categories": Param(
        str, default=[], many=True, doc="top-level stamp categories to keep (default all)"
    ),
    "max_items": Param(int, default=0, min=0, doc="keep the first N items by id (0 keeps all)"),
}


class TuxPaintError(XmodalError):
    """The stamps are missing or unreadable."""


@attrs.frozen
class Stamp:
    id: str
    images: tuple[Path, ...]
    category: str


def stamp_id(name: str) -> str:
    """'A Christmas tree.' -> 'christmas tree'."""
    text = name.replace("’", "'").replace("“", '"').replace("”", '"').strip().lower()
    text = re.sub(r"^(a|an|the)\s+", "", text)
    text = text.rstrip(".!? ").strip()
    return re.sub(r"\s+", " ", text)


@functools.cache
def scan(root: str) -> tuple[Stamp, ...]:
    """Every named stamp under `root`, merged by id, sorted by id."""
    base = Path(root)
    if not base.is_dir():
        raise TuxPaintError(f"tuxpaint: no stamps at {base}; {INSTALL}")
    merged: dict[str, tuple[list[Path], str]] = {}
    for txt in sorted(base.rglob("*.txt")):
        image = next(
            (p for p in (txt.with_suffix(".png"), txt.with_suffix(".svg")) if p.is_file()), None
        )
        if image is None:
            continue
        try:
            with txt.open(encoding="utf-8") as f:
                first = f.readline()
        except (OSError, UnicodeDecodeError):
            continue
        item = stamp_id(first)
        if not item:
            continue
        category = txt.relative_to(base).parts[0]
        merged.setdefault(item, ([], category))[0].append(image)
    if not merged:
        raise TuxPaintError(f"tuxpaint: no named stamps under {base}; {INSTALL}")
    return tuple(Stamp(i, tuple(images), cat) for i, (images, cat) in sorted(merged.items()))


def stamps(params: Mapping[str, Any]) -> list[Stamp]:
    found = list(scan(params["root"]))
    if params["categories"]:
        known = sorted({s.category for s in found})
        unknown = [c for c in params["categories"] if c not in known]
        if unknown:
            raise TuxPaintError(
                f"tuxpaint: unknown categories {unknown} (known: {', '.join(known)})"
            )
        found = [s for s in found if s.category in params["categories"]]
    return found[: params["max_items"]] if params["max_items"] else found


def _encoders(params: Mapping[str, Any]) -> encoded_datasets.EncoderSelection:
    return encoded_datasets.select_encoders(
        {"text": params["text_encoders"], "image": params["image_encoders"]},
        params["encoder_options"],
    )


def feature_sets(params: Mapping[str, Any]) -> list[str]:
    return _encoders(params).names


def _inputs(items: list[Stamp]) -> dict[str, list[Any]]:
    return {"text": [s.id for s in items], "image": [list(s.images) for s in items]}


def fingerprint(params: Mapping[str, Any]) -> str:
    """A digest of the kept stamps' files, the categories, the selection and the encoders."""
    root = Path(params["root"])
    roles = []
    for stamp in stamps(params):
        for image in stamp.images:
            for path in (image, image.with_suffix(".txt")):
                roles.append((path.relative_to(root).as_posix(), path))
    selection = {"categories": list(params["categories"]), "max_items": params["max_items"]}
    return combine(
        "tuxpaint",
        READER_VERSION,
        files_digest(roles),
        value_digest(sorted({s.category for s in scan(params["root"])})),
        value_digest(selection),
        _encoders(params).identity(),
    )


def load(params: Mapping[str, Any]) -> PairedData:
    selection = _encoders(params)
    items = stamps(params)
    keep, features = encoded_datasets.encode_all(
        selection, _inputs(items), [s.id for s in items], "tuxpaint"
    )
    categories = sorted({s.category for s in scan(params["root"])})
    kept = [items[i] for i in keep]
    return PairedData(
        ids=tuple(s.id for s in kept),
        features=features,
        split_marks=None,
        labels=tuple(frozenset([categories.index(s.category)]) for s in kept),
        source=f"tuxpaint: {params['root']}",
    )


def describe(params: Mapping[str, Any]) -> list[FeatureSetInfo]:
    return encoded_datasets.describe(
        _encoders(params), _inputs(stamps(params)), f"tuxpaint stamps in {params['root']}"
    )


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="tuxpaint",
            load=load,
            feature_sets=feature_sets,
            describe=describe,
            params=PARAMS,
            fingerprint=fingerprint,
            description="Tux Paint stamp images ↔ their English names (apt tuxpaint-stamps-default)",
        )
    )
