"""Datasets of encoded items: feature sets made by encoders (the tuxpaint and ratings datasets).

A dataset offers raw inputs per modality; the study names encoders per modality in its
`[data.params]`; each encoder becomes one feature set named after it. `select_encoders` resolves
those names and options into an `EncoderSelection`; `encode_all` and `describe` use it.

Names: this module was `xmodal.encoded`, next to `xmodal.encoding`, and its `plan()` returned an
`EncodingPlan` while `xmodal.planning` plans a study's runs. It is about datasets whose items are
encoded (hence `encoded_datasets`); running one encoder lives in `encoders`; and choosing encoders
is a selection, not a plan, so nothing here is confused with study planning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from xmodal import EncoderSpec, FeatureSetInfo, combine
from xmodal_plugins.support import encoders

log = logging.getLogger("xmodal.data")


@attrs.frozen
class EncoderSelection:
    """Which encoders (with their filled-in parameters) make the feature sets of a dataset."""

    specs: tuple[tuple[EncoderSpec, Mapping[str, Any]], ...]

    @property
    def names(self) -> list[str]:
        return [spec.name for spec, _ in self.specs]

    def identity(self) -> str:
        """A digest of every encoder's identity (name, version, parameters, weights), in order."""
        return combine(
            "encoders", *(encoders.encoder_identity(spec, params) for spec, params in self.specs)
        )


def select_encoders(
    encoders_by_modality: Mapping[str, Sequence[str]], options: Sequence[str]
) -> EncoderSelection:
    """Resolve encoder names per modality and their "encoder.key=value" options (cheap)."""
    specs: list[EncoderSpec] = []
    for modality, names in encoders_by_modality.items():
        specs.extend(encoders.resolve(names, modality))
    if len({s.name for s in specs}) < len(specs):
        raise encoders.EncoderError("the same encoder is named twice")
    params = encoders.parse_options(options, specs)
    return EncoderSelection(tuple((s, params[s.name]) for s in specs))


def encode_all(
    selection: EncoderSelection, inputs: Mapping[str, Sequence[Any]], ids: Sequence[str], what: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Encode every feature set; drop (and report) items some encoder cannot represent.

    `inputs[modality]` holds one raw input per item, or a list of inputs per item whose
    vectors are averaged (e.g. several images of one stamp name). Returns the kept row indices and the
    feature matrices restricted to them.
    """
    features = {}
    for spec, params in selection.specs:
        items, groups = _flatten(inputs[spec.modality])
        if spec.coverage is not None:
            note = spec.coverage(items, params)
            if note:
                log.warning("%s: %s", what, note)
        label = f"{len(items)} {what} {spec.modality}s"
        matrix = encoders.encode(spec, items, params, label=label)
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
    selection: EncoderSelection, inputs: Mapping[str, Sequence[Any]], source: str
) -> list[FeatureSetInfo]:
    """One info per encoder: size, and whether the features are cached or encoded on first use."""
    infos = []
    for spec, params in selection.specs:
        items, _ = _flatten(inputs[spec.modality])
        cached = encoders.is_cached(spec, items, params)
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
