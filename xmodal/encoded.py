"""Shared plumbing for datasets whose feature sets come from encoders (tuxpaint, ratings).

A dataset offers raw inputs per modality; the study names encoders per modality in its
`[data.params]`; each encoder becomes one feature set named after it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from xmodal import encoding, fingerprint
from xmodal.components import EncoderSpec, FeatureSetInfo

log = logging.getLogger("xmodal.data")


@attrs.frozen
class EncodingPlan:
    """Which encoders (with their filled-in parameters) make the feature sets of a dataset."""

    specs: tuple[tuple[EncoderSpec, Mapping[str, Any]], ...]

    @property
    def names(self) -> list[str]:
        return [spec.name for spec, _ in self.specs]

    def identity(self) -> str:
        """A digest of every encoder's identity (name, version, parameters, weights), in order."""
        return fingerprint.combine(
            "encoders", *(encoding.encoder_identity(spec, params) for spec, params in self.specs)
        )


def plan(encoders_by_modality: Mapping[str, Sequence[str]], options: Sequence[str]) -> EncodingPlan:
    """Resolve encoder names per modality and their "encoder.key=value" options (cheap)."""
    specs: list[EncoderSpec] = []
    for modality, names in encoders_by_modality.items():
        specs.extend(encoding.resolve(names, modality))
    if len({s.name for s in specs}) < len(specs):
        raise encoding.EncoderError("the same encoder is named twice")
    params = encoding.parse_options(options, specs)
    return EncodingPlan(tuple((s, params[s.name]) for s in specs))


def encode_all(
    plan_: EncodingPlan, inputs: Mapping[str, Sequence[Any]], ids: Sequence[str], what: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Encode every feature set; drop (and report) items some encoder cannot represent.

    `inputs[modality]` holds one raw input per item, or a list of inputs per item whose
    vectors are averaged (e.g. several images of one stamp name). Returns the kept row indices and the
    feature matrices restricted to them.
    """
    features = {}
    for spec, params in plan_.specs:
        items, groups = _flatten(inputs[spec.modality])
        if spec.check is not None:
            note = spec.check(items, params)
            if note:
                log.warning("%s: %s", what, note)
        label = f"{len(items)} {what} {spec.modality}s"
        matrix = encoding.encode(spec, items, params, label=label)
        if groups is not None:
            matrix = np.stack([matrix[g].mean(axis=0) for g in groups])
        features[spec.name] = matrix
    ok = np.ones(len(ids), dtype=bool)
    for name, matrix in features.items():
        bad = ~np.isfinite(matrix).all(axis=1)
        if bad.any():
            examples = ", ".join(repr(ids[i]) for i in np.flatnonzero(bad)[:5])
            log.warning(
                "%s: dropping %d item(s) that %s cannot encode, e.g. %s",
                what,
                bad.sum(),
                name,
                examples,
            )
        ok &= ~bad
    keep = np.flatnonzero(ok)
    return keep, {name: matrix[keep] for name, matrix in features.items()}


def describe(
    plan_: EncodingPlan, inputs: Mapping[str, Sequence[Any]], source: str
) -> list[FeatureSetInfo]:
    """One info per encoder: size, and whether the features are cached or encoded on first use."""
    infos = []
    for spec, params in plan_.specs:
        items, _ = _flatten(inputs[spec.modality])
        cached = encoding.is_cached(spec, items, params)
        note = "cached" if cached else "(encoded on first use)"
        n = len(inputs[spec.modality])
        infos.append(
            FeatureSetInfo(
                spec.name, n, spec.dim, f"{source}, {spec.modality} via {spec.name}", note
            )
        )
    return infos


def _flatten(values: Sequence[Any]) -> tuple[list[Any], list[list[int]] | None]:
    if not values or not isinstance(values[0], list | tuple):
        return list(values), None
    flat: list[Any] = []
    groups = []
    for group in values:
        groups.append(list(range(len(flat), len(flat) + len(group))))
        flat.extend(group)
    return flat, groups
