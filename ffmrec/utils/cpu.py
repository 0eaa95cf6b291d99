"""What this CPU computes natively, read from ``/proc/cpuinfo``: the text encoder picks its dtype and its int8
weights' range by it."""

from __future__ import annotations

import functools
import re
from pathlib import Path


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``); empty where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    match = re.search(r"^(?:flags|Features)\s*:(.*)$", text, re.MULTILINE)
    return frozenset(match.group(1).split()) if match else frozenset()


def has_bf16_units(flags: set[str] | frozenset[str]) -> bool:
    """Whether a CPU with these flags computes bfloat16 natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16)."""
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def saturates_int8(flags: set[str] | frozenset[str]) -> bool:
    """Whether a CPU with these flags multiplies uint8 by int8 through ``pmaddubsw``, whose int16 pair sums saturate:
    x86 (``sse2``) without VNNI (``avx512_vnni``, ``avx_vnni``) or AMX int8. ONNX Runtime's documentation advises
    7-bit weights (``reduce_range``) there, for per-channel models especially."""
    return "sse2" in flags and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}
