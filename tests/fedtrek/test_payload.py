"""LoRA payload of Qwen3 shapes from real (meta-device) adapter tensors: the paper's 38.5 MB for 0.6B."""

from __future__ import annotations

from ffmrec.fm.payload import lora_payload


def test_qwen3_06b_payload_matches_the_paper():
    payload = lora_payload("0.6B")
    # per layer r * (in + out): q 16*(1024+2048), k and v 16*(1024+1024), o 16*(2048+1024), gate/up/down 16*(1024+3072)
    per_layer = 16 * (3072 + 2048 + 2048 + 3072 + 3 * 4096)
    assert payload["parameters"] == 28 * per_layer == 10_092_544
    assert payload["bytes"] == 4 * 10_092_544 and round(payload["bytes"] / 2**20, 1) == 38.5
    assert payload["tensors"] == 28 * 7 * 2


def test_larger_shapes_grow():
    small, large = lora_payload("1.7B"), lora_payload("4B")
    assert small["parameters"] == 28 * 16 * (2048 + 2048 + 2048 + 1024 + 2048 + 1024 + 2048 + 2048 + 3 * (2048 + 6144))
    assert large["parameters"] == 36 * 16 * (2560 + 4096 + 2560 + 1024 + 2560 + 1024 + 4096 + 2560 + 3 * (2560 + 9728))
