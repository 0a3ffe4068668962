"""Reading image files for image encoders: raster formats via Pillow, SVG rendered via resvg-py.

Transparent pixels are composited onto white (stamps and icons are drawn on transparency, and a
CNN trained on photographs reads transparent-black as a black background).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from xmodal import XmodalError, require


class ImageError(XmodalError):
    """An image file could not be read or rendered."""


_UNITS = {"pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}


def svg_in_pixels(text: str) -> str:
    """The SVG with its root width/height in absolute units (pt, mm, …) converted to pixels.

    resvg-py rejects e.g. width="400pt" ("SVG has an invalid size"), which Inkscape-made
    stamps use; in pixels the same drawing renders.
    """
    root = re.search(r"<svg\b[^>]*>", text)
    if root is None:
        return text

    def to_px(match: re.Match[str]) -> str:
        value = float(match.group(2)) * _UNITS[match.group(3)]
        return f'{match.group(1)}="{value:g}"'

    tag = re.sub(r'\b(width|height)="([\d.]+)(pt|pc|mm|cm|in)"', to_px, root.group(0))
    return text[: root.start()] + tag + text[root.end() :]


def load_rgb(path: str | Path, render_size: int = 512) -> Any:
    """The image at `path` as an RGB `PIL.Image`; SVGs are rendered `render_size` pixels wide."""
    image_mod = require("PIL.Image", "encoders", "reading images", package="pillow")
    path = Path(path)
    try:
        if path.suffix.lower() in (".svg", ".svgz"):
            resvg = require("resvg_py", "encoders", "rendering SVG images", package="resvg-py")
            try:
                data = bytes(resvg.svg_to_bytes(svg_path=str(path), width=render_size))
            except ValueError:
                text = path.read_text(encoding="utf-8", errors="replace")
                data = bytes(resvg.svg_to_bytes(svg_string=svg_in_pixels(text), width=render_size))
            image = image_mod.open(io.BytesIO(data))
        else:
            image = image_mod.open(path)
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: cannot read image: {exc}") from None
    rgba = image.convert("RGBA")
    white = image_mod.new("RGBA", rgba.size, (255, 255, 255, 255))
    return image_mod.alpha_composite(white, rgba).convert("RGB")


def fit_square(image: Any, size: int, mode: str = "pad") -> Any:
    """Resize to `size`×`size`: "pad" fits the whole image on white, "crop" fills and centre-crops."""
    image_mod = require("PIL.Image", "encoders", "reading images", package="pillow")
    w, h = image.size
    if mode == "crop":
        scale = size / min(w, h)
        image = image.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), image_mod.BICUBIC
        )
        left, top = (image.width - size) // 2, (image.height - size) // 2
        return image.crop((left, top, left + size, top + size))
    scale = size / max(w, h)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), image_mod.BICUBIC)
    canvas = image_mod.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas
