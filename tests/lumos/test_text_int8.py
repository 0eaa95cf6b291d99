"""The text encoder's dtypes: int8 ONNX close to float32 on real catalogue texts, unit norm, built once into the cache,
its tables never mixing with other dtypes' in the cache; ``auto`` is bfloat16 only on a CPU with bf16 units."""

import sys

import pytest
import torch
from lumos_helpers import CATALOGUE

from ffmrec.data import load_dataset
from ffmrec.errors import ConfigError, FFMRecError
from ffmrec.fm import text
from ffmrec.fm.text import default_model_path, encode_texts, load_encoder, resolve_dtype, text_cache_key
from ffmrec.utils.cpu import has_bf16_units, saturates_int8


@pytest.fixture(scope="module")
def beauty_texts():
    """Real item texts of the beauty catalogue: its longest, its shortest and every 40th (by length, then text: the
    same sample in every process, whatever its string hash seed)."""
    try:
        dataset = load_dataset("beauty")
    except FFMRecError as e:  # a clone that is not beside the staged data: skipped like the other real-data tests
        pytest.skip(f"beauty is not under $FFMREC_DATA_DIR: {e}")
    texts = sorted({str(t) for t in dataset.item_text[1:]}, key=lambda t: (len(t), t))
    return [texts[-1], texts[0], *texts[::40]]


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FFMREC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield load_encoder(None, "int8-onnx")


def test_int8_embeddings_of_real_texts_are_unit_norm_and_within_cosine_099_of_float32(int8, beauty_texts):
    texts = beauty_texts + CATALOGUE
    fast = encode_texts(int8, texts, batch_size=64, progress=False)
    exact = encode_texts(load_encoder(None, "float32"), texts, progress=False)
    assert fast.shape == exact.shape == (len(texts), 384) and fast.dtype == torch.float32
    torch.testing.assert_close(fast.norm(dim=1), torch.ones(len(texts)), atol=1e-4, rtol=0)
    assert float((fast * exact).sum(1).min()) >= 0.99


def test_a_text_padded_to_the_longest_text_embeds_within_cosine_099_of_it_alone(int8, beauty_texts):
    alone = encode_texts(int8, beauty_texts[1:2], progress=False)  # the shortest text
    padded = encode_texts(int8, beauty_texts[:2], progress=False)[1:2]  # in one batch with the longest
    # not equal: activations are quantized per tensor, so a batch's range depends on every text in it
    assert float((alone * padded).sum()) >= 0.99


def test_the_int8_model_is_built_once_into_the_cache_dir(int8):
    files = list(int8.file.parent.glob("text-encoder-int8-*.onnx"))
    assert files == [int8.file] and int8.file.stat().st_size > 1_000_000
    assert not list(int8.file.parent.glob(".onnx-build-*"))  # no half-built leftovers
    assert load_encoder(None, "int8-onnx") is int8


def test_the_cache_key_differs_by_dtype():
    path = default_model_path()
    keys = {dtype: text_cache_key("beauty", ["0", "1"], ["", "lipstick"], path, dtype)
            for dtype in ("float32", "bfloat16", "int8-onnx")}
    assert len(set(keys.values())) == 3


def test_an_unknown_dtype_and_a_missing_onnxruntime_say_what_to_use(monkeypatch):
    with pytest.raises(ConfigError, match="'auto', 'float32', 'bfloat16' or 'int8-onnx'"):
        load_encoder(None, "int4")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="needs onnxruntime=="):
        load_encoder(None, "int8-onnx")


def test_auto_dtype_is_bfloat16_only_on_a_cpu_with_bf16_units(monkeypatch):
    zen3 = {"avx", "avx2", "fma", "sse4_2"}  # AVX2 only: bfloat16 would be emulated
    assert not has_bf16_units(zen3)
    assert has_bf16_units(zen3 | {"avx512f", "avx512_bf16"}) and has_bf16_units({"amx_bf16"})
    assert has_bf16_units({"fp", "asimd", "bf16"})  # Arm Features
    monkeypatch.setattr(text, "cpu_flags", lambda: frozenset(zen3))
    assert resolve_dtype("auto") == "float32"
    monkeypatch.setattr(text, "cpu_flags", lambda: frozenset(zen3 | {"avx512_bf16"}))
    assert resolve_dtype("auto") == "bfloat16"
    assert [resolve_dtype(d) for d in ("float32", "bfloat16", "int8-onnx")] == ["float32", "bfloat16", "int8-onnx"]


def test_saturating_int8_is_detected_only_on_x86_without_vnni_or_amx():
    zen3 = {"sse2", "avx", "avx2", "fma", "sse4_2"}  # pmaddubsw: int16 pair sums saturate
    assert saturates_int8(zen3)
    assert not saturates_int8(zen3 | {"avx512f", "avx512_vnni"}) and not saturates_int8(zen3 | {"avx_vnni"})
    assert not saturates_int8(zen3 | {"amx_int8"})
    assert not saturates_int8({"fp", "asimd", "asimddp"})  # Arm Features: sdot/udot do not saturate
    assert not saturates_int8(set())  # flags unreadable: full 8-bit weights
