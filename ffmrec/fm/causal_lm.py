"""A small causal language model with LoRA adapters (Hu et al., ICLR 2022, arXiv:2106.09685) through PEFT.

The base model is either built offline from a config (a tiny Qwen3 or GPT-2, initialised from a seed, so every process
that builds it from the same :class:`CausalLMConfig` and seed holds the very same frozen weights) or loaded from a local
model folder (``path``; nothing is downloaded). :func:`build_lora_model` wraps it with PEFT LoRA adapters: only the
adapters' ``lora_A``/``lora_B`` matrices train, the base never moves.

:func:`get_adapter_state` and :func:`set_adapter_state` read and write exactly the adapter tensors, keyed by PEFT's
adapter-name-free state-dict names (``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``): these are the
names a federated client shares, stable across processes and identical to what ``PeftModel.save_pretrained`` writes.

No tokenizer can be downloaded either, so a config-built model reads text through :class:`ByteTokenizer`: UTF-8 bytes
shifted past three special ids (``pad=0, bos=1, eos=2``, bytes ``3..258``), which fits any ``vocab_size >= 259``. A
model folder brings its own tokenizer (:class:`HFTokenizer`).

``transformers`` and ``peft`` are imported by the functions that use them, so importing this module (the method
resolver does, for :class:`CausalLMConfig`) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ffmrec.errors import ConfigError

ARCHITECTURES = ("qwen3", "gpt2")
#: LoRA targets per architecture when ``lora_target_modules`` is empty: the attention's query and value projections.
DEFAULT_TARGETS = {"qwen3": ("q_proj", "v_proj"), "gpt2": ("c_attn",)}


@dataclass
class CausalLMConfig:
    """The base causal LM (built from a tiny config, or a local model folder) and its LoRA adapters."""

    architecture: str = field(default="qwen3", metadata={"help": "'qwen3' or 'gpt2': the architecture of a model built from this config (ignored when path is set)."})
    path: str | None = field(default=None, metadata={"help": "A local Hugging Face model folder (config, weights, tokenizer); null builds a fresh model from the fields below. Nothing is downloaded."})
    vocab_size: int = field(default=300, metadata={"help": "Vocabulary of a config-built model; >= 259 for the byte tokenizer (3 special ids + 256 bytes)."})
    hidden_size: int = field(default=32, metadata={"help": "Hidden width of a config-built model."})
    num_layers: int = field(default=2, metadata={"help": "Transformer blocks of a config-built model."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads of a config-built model; must divide hidden_size."})
    intermediate_size: int = field(default=64, metadata={"help": "Width of the feed-forward layer of a config-built model."})
    max_positions: int = field(default=256, metadata={"help": "Longest sequence (tokens) a config-built model reads."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout inside a config-built base model (embeddings, attention, residual)."})
    lora_r: int = field(default=4, metadata={"help": "LoRA rank r."})
    lora_alpha: float = field(default=8.0, metadata={"help": "LoRA scaling alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: tuple[str, ...] = field(default=(), metadata={"help": "Module names that get adapters; empty = the attention's query/value projections of the architecture (qwen3: q_proj, v_proj; gpt2: c_attn)."})

    def __post_init__(self) -> None:
        if self.path is None and self.architecture not in ARCHITECTURES:
            raise ConfigError(f"model.architecture={self.architecture!r} is unknown: use one of {', '.join(ARCHITECTURES)}, "
                              "or set model.path to a local model folder.")
        if self.path is not None and not Path(self.path).is_dir():
            raise ConfigError(f"model.path={self.path!r} is not a folder: give a local Hugging Face model folder "
                              "(models are never downloaded), or null to build a tiny model from the config.")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions", "lora_r"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be a positive integer.")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"model.num_heads={self.num_heads} does not divide model.hidden_size={self.hidden_size}: "
                              "choose num_heads among the divisors of hidden_size.")
        if self.path is None and self.vocab_size < ByteTokenizer.vocab_size:
            raise ConfigError(f"model.vocab_size={self.vocab_size} is too small for the byte tokenizer: use >= "
                              f"{ByteTokenizer.vocab_size} (3 special ids + 256 bytes).")
        for name in ("dropout", "lora_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name}={getattr(self, name)} is outside [0, 1): choose e.g. 0.0 or 0.1.")
        if self.lora_alpha <= 0:
            raise ConfigError(f"model.lora_alpha={self.lora_alpha} must be > 0 (e.g. 2 * lora_r).")

    @property
    def target_modules(self) -> tuple[str, ...]:
        if self.lora_target_modules:
            return tuple(self.lora_target_modules)
        if self.path is not None:
            raise ConfigError("model.lora_target_modules is empty and model.path is set: name the modules that get "
                              "adapters for that model, e.g. model.lora_target_modules=[q_proj,v_proj].")
        return DEFAULT_TARGETS[self.architecture]


# --- tokenizers ---------------------------------------------------------------------------------------------------------
class ByteTokenizer:
    """UTF-8 bytes as token ids: ``pad=0``, ``bos=1``, ``eos=2``, byte ``b`` is id ``b + 3`` (ids ``0..258``)."""

    pad_id, bos_id, eos_id = 0, 1, 2
    offset = 3
    vocab_size = 259
    special_ids = (0, 1, 2)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special ids)."""
        return [b + self.offset for b in text.encode("utf-8")]

    def decode(self, ids) -> str:
        """Text of ``ids``; special ids are dropped, invalid UTF-8 is replaced."""
        return bytes(int(i) - self.offset for i in ids if self.offset <= int(i) < self.vocab_size).decode("utf-8", "replace")


class HFTokenizer:
    """A local model folder's own tokenizer behind :class:`ByteTokenizer`'s interface."""

    def __init__(self, path: str):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ConfigError(f"the tokenizer in model.path={path!r} has no end-of-sequence token: use a causal LM folder.")
        self.eos_id = eos
        self.bos_id = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else eos
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        self.special_ids = tuple(sorted(set(self.tokenizer.all_special_ids)))
        self.vocab_size = len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


def build_tokenizer(config: CausalLMConfig) -> ByteTokenizer | HFTokenizer:
    """The model folder's tokenizer when ``config.path`` is set, else the byte tokenizer."""
    return HFTokenizer(config.path) if config.path is not None else ByteTokenizer()


# --- models ------------------------------------------------------------------------------------------------------------
def _hf_config(config: CausalLMConfig):
    from transformers import GPT2Config, Qwen3Config

    tok = ByteTokenizer
    if config.architecture == "qwen3":
        return Qwen3Config(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_heads, head_dim=config.hidden_size // config.num_heads,
            max_position_embeddings=config.max_positions, attention_dropout=config.dropout,
            pad_token_id=tok.pad_id, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, tie_word_embeddings=True,
        )
    return GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.max_positions, n_embd=config.hidden_size,
        n_layer=config.num_layers, n_head=config.num_heads, n_inner=config.intermediate_size,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        pad_token_id=tok.pad_id, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id,
    )


def build_base_model(config: CausalLMConfig, seed: int) -> torch.nn.Module:
    """The base causal LM in float32: loaded from ``config.path``, or built from the config with weights drawn from
    ``seed`` (torch's global generator is left as it was)."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.path is not None:
            model = AutoModelForCausalLM.from_pretrained(config.path, local_files_only=True, dtype=torch.float32)
        else:
            model = AutoModelForCausalLM.from_config(_hf_config(config), dtype=torch.float32)
    return model


def build_lora_model(config: CausalLMConfig, seed: int) -> torch.nn.Module:
    """The base model wrapped with LoRA adapters (a ``peft.PeftModel``): the base frozen, only ``lora_A``/``lora_B``
    trainable; the adapters' initial values are drawn from ``seed`` as well (``lora_B`` starts at zero)."""
    from peft import LoraConfig, get_peft_model

    base = build_base_model(config, seed)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM",
                      fan_in_fan_out=config.path is None and config.architecture == "gpt2")  # GPT-2's Conv1D
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = get_peft_model(base, lora)
    return model


# --- adapter tensors ---------------------------------------------------------------------------------------------------
def get_adapter_state(model) -> dict[str, torch.Tensor]:
    """A detached copy of the adapter tensors only, keyed by PEFT's state-dict names."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def set_adapter_state(model, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (exactly the adapter tensors of :func:`get_adapter_state`) into the model's adapters, in place."""
    from peft import set_peft_model_state_dict

    expected = set(adapter_names(model))
    if set(state) != expected:
        extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
        raise ValueError(f"adapter state does not match the model's adapters: extra {extra[:3]}, missing {missing[:3]}")
    result = set_peft_model_state_dict(model, state)
    if result.unexpected_keys:
        raise ValueError(f"PEFT did not load adapter tensors {result.unexpected_keys[:3]}")


def train_adapters(model, shared: dict[str, torch.Tensor], loss_fn, cfg, seed: int) -> tuple[dict[str, torch.Tensor], float]:
    """A client's stateful local training of the adapters, shared by every adapter task. The caller has loaded
    ``shared`` into the model (and set ``model.train()`` or ``model.eval()``); this runs ``cfg.local_steps`` full-batch steps of ``loss_fn()`` with a fresh ``torch.optim.SGD`` or ``Adam`` (``cfg.optimizer``,
    ``cfg.lr``) on the trainable parameters, plus FedProx's ``cfg.proximal_mu / 2 * ||w - w_shared||^2``; return the
    delta of the tensors in ``shared`` and the loss at the first step. Random draws inside (dropout) come from
    ``seed``; torch's global generator is left as it was."""
    trainable = [p for p in model.parameters() if p.requires_grad]  # the adapters only
    anchors = [p.detach().clone() for p in trainable]
    opt = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD)(trainable, lr=cfg.lr)
    first = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(cfg.local_steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            first = float(loss.detach()) if first is None else first
            if cfg.proximal_mu:
                loss = loss + cfg.proximal_mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(trainable, anchors))
            loss.backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    trained = get_adapter_state(model)
    return {k: trained[k] - shared[k] for k in shared}, first


def adapter_names(model) -> list[str]:
    """The adapter tensors' names, in the model's order."""
    from peft import get_peft_model_state_dict

    return list(get_peft_model_state_dict(model))
