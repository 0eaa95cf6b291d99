"""What a FedTREK-LM client sends and receives per round: the LoRA adapter tensors of a Qwen3 model, measured from
the real PEFT adapter tensors of a model built on the ``meta`` device (shapes and dtypes, no weights, no memory).

Qwen3 shapes are those of the published configs (Qwen/Qwen3-0.6B, -1.7B, -4B ``config.json``); the reference code
(brains-group/TREK-LM, ``conf/federated_Qwen3-*``) puts rank-16 adapters (alpha 64) on ``q_proj, k_proj, v_proj,
o_proj, gate_proj, up_proj, down_proj``. For Qwen3-0.6B that is 10,092,544 parameters, 38.5 MiB in float32, each
way per round.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ffmrec.tasks.base import payload_bytes

QWEN3_SHAPES = {
    "0.6B": {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": True},
    "1.7B": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": True},
    "4B": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
           "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "tie_word_embeddings": True},
}
REFERENCE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def meta_lora_model(size: str, r: int = 16, alpha: float = 64.0, targets: Sequence[str] = REFERENCE_TARGETS,
                    dtype: torch.dtype = torch.float32):
    """A Qwen3 model of the given published size with PEFT LoRA adapters, on the meta device (no weights)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen3Config

    if size not in QWEN3_SHAPES:
        raise ValueError(f"Qwen3 size {size!r} is unknown: use one of {', '.join(QWEN3_SHAPES)}")
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(Qwen3Config(**QWEN3_SHAPES[size]), dtype=dtype)
        return get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), task_type="CAUSAL_LM"))


def lora_payload(size: str, r: int = 16, alpha: float = 64.0, targets: Sequence[str] = REFERENCE_TARGETS,
                 dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """``{"tensors", "parameters", "bytes"}`` of the adapter tensors a client sends (and receives) per round."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(meta_lora_model(size, r, alpha, targets, dtype))
    return {"tensors": len(state), "parameters": int(sum(t.numel() for t in state.values())),
            "bytes": payload_bytes(state)}
