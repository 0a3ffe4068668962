"""Hook `register_encoders`: an EncoderSpec registered by a plugin is known to the registry and
listed by `xmodal plugins` (docs/plugins.md "register_encoders")."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmodal import EncoderSpec
from xmodal.testing import XmodalTester


def test_hook_encoders_a_registered_encoder_is_listed_with_its_plugin(xmodal_tester: XmodalTester):
    spec = EncoderSpec(
        "lengths",
        "text",
        lambda batch, params: np.array([[len(s)] for s in batch], np.float32),
        dim=1,
    )
    xmodal_tester.register({"register_encoders": lambda register: register(spec)}, name="enc")
    assert xmodal_tester.registry.encoders["lengths"] is spec
    assert xmodal_tester.registry.owners[("encoders", "lengths")] == "enc"
    listing = json.loads(xmodal_tester.cli("plugins", "--json").assert_ok().out)
    assert listing["enc"]["encoders"] == ["lengths"]


def test_hook_encoders_a_modality_other_than_text_or_image_is_refused_when_made():
    with pytest.raises(ValueError, match="modality"):
        EncoderSpec("x", "audio", lambda batch, params: None)
