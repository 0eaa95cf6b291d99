"""The sentence encoder through ONNX Runtime with int8 weights: the ``int8-onnx`` text encoder dtype.

A local sentence-transformers folder (default all-MiniLM-L6-v2) is exported once to ONNX (float32), and its weight
matrices quantized with ``onnxruntime.quantization.quantize_dynamic``: int8 weights per output channel, activations
quantized to uint8 per tensor at run time, products on the CPU's int8 dot-product units (AVX512-VNNI). The feed-forward
output projections (``layer.N/output/dense``, fed by GELU outputs with a few large channels) stay float32: quantized
too, the embeddings fell to cosine 0.983 of float32 on beauty texts; kept, 0.992 (the quality bar is 0.99; see
``benchmarks/text_encoding.py``, which also times the alternatives: all layers int8, 8-bit weight blocks, torch int8).
On x86 without VNNI, whose ``pmaddubsw`` saturates, the weights are 7-bit (``reduce_range``, as ONNX Runtime advises;
:func:`ffmrec.utils.cpu.saturates_int8`). Measured on an AVX2-only AMD EPYC (2026-12-07): on one batch mixing beauty's
longest, shortest and every 40th text (the test's), 8-bit weights fell to cosine 0.9886 of float32 and 7-bit ones kept
0.9918; over beauty's first 3,000 texts in batches of 256, the minimum is 0.9879 with 8-bit and 0.9910 with 7-bit
(``benchmarks/text_encoding.py --limit 3000 --variants int8-onnx-8bit int8-onnx-7bit``).
Activation scales are per batch, so a text's embedding varies slightly with the texts batched with it (within the
quality bar); the cached table of a catalogue is computed once, in one fixed order.

The model file is built at run time into ``$FFMREC_CACHE_DIR`` (never shipped), named by a sha256 of the model folder's
weights, the builder's :data:`FORMAT`, the onnxruntime, onnx and torch versions and whether the weights are 7-bit,
and written atomically. Mean pooling over the attention mask and L2 normalisation (what the folder's Pooling and
Normalize modules do) are part of the exported graph: the session maps ``(input_ids, attention_mask)`` to unit-norm
``(B, dim)`` embeddings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from ffmrec.data.cache import cache_dir
from ffmrec.errors import ConfigError
from ffmrec.utils.cpu import cpu_flags, saturates_int8

FORMAT = 1
PACKAGES = "onnxruntime==1.32.0 onnx==1.23.2"
FLOAT_NODES = re.compile(r"layer\.\d+/output/dense/")  # feed-forward output projections


def require_onnxruntime():
    """The ``onnxruntime`` module, or a one-line error saying what to install."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise ConfigError(f"text encoder dtype='int8-onnx' needs {PACKAGES}: install them, or use dtype='auto'."
                          ) from None
    return onnxruntime


def onnx_model_file(stamp: list) -> Path:
    """Where the int8 ONNX model of a folder is cached (``stamp``: its resolved path, its weights' names, sizes and
    modification times)."""
    import onnx
    import onnxruntime

    key = hashlib.sha256(json.dumps({"format": FORMAT, "model": stamp, "onnxruntime": onnxruntime.__version__,
                                     "onnx": onnx.__version__, "torch": torch.__version__,
                                     "float_nodes": FLOAT_NODES.pattern, "reduce_range": saturates_int8(cpu_flags())},
                                    sort_keys=True).encode()).hexdigest()
    return cache_dir() / f"text-encoder-int8-{key[:24]}.onnx"


class _MeanPooled(torch.nn.Module):
    """The transformer, mean-pooled over real tokens and L2-normalised: ``(B, T)`` ids and mask -> ``(B, dim)``."""

    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids, attention_mask):
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=torch.zeros_like(input_ids)).last_hidden_state  # (B, T, dim)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, dim)
        return torch.nn.functional.normalize(mean, dim=1)


def export_float32(model, file: Path) -> None:
    """Export a float32 ``SentenceTransformer`` (Transformer + mean Pooling [+ Normalize]) to an ONNX file."""
    pooling = model[1].get_config_dict() if len(model) > 1 else {}  # sentence-transformers 6: pooling_mode
    if pooling.get("pooling_mode") != "mean":
        raise ConfigError("text encoder dtype='int8-onnx' supports sentence-transformers folders with mean pooling "
                          f"only (this one: {pooling.get('pooling_mode')!r}): use dtype='bfloat16' for this model.")
    transformer = model[0].auto_model.float().eval()
    transformer.set_attn_implementation("eager")  # plain MatMul/Softmax: ONNX Runtime's optimizer can fuse it
    example = model.tokenizer(["an example", "a slightly longer example text"], padding=True, return_tensors="pt")
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(_MeanPooled(transformer), (example["input_ids"], example["attention_mask"]), str(file),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)


def quantize_int8(src: Path, dst: Path, reduce_range: bool) -> None:
    """``src``'s weight matrices as int8 per output channel into ``dst``, but for :data:`FLOAT_NODES`; 7-bit weights
    where ``reduce_range`` (see :func:`saturates_int8`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = [node.name for node in onnx.load(str(src)).graph.node if FLOAT_NODES.search(node.name)]
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                     nodes_to_exclude=keep)


def build_int8_model(model, file: Path, reduce_range: bool) -> None:
    """Export and quantize ``model`` (a ``SentenceTransformer``) into ``file``, atomically."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=file.parent, prefix=".onnx-build-") as tmp:
        exported, quantized = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        export_float32(model, exported)
        quantize_int8(exported, quantized, reduce_range)
        os.replace(quantized, file)


class OnnxEncoder:
    """An ONNX Runtime session of an exported sentence encoder with its tokenizer; :meth:`encode` as
    :func:`ffmrec.fm.text.encode_texts` does."""

    def __init__(self, file: Path, tokenizer, max_seq_length: int, dim: int, threads: int | None = None):
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.file = file
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id or 0
        self.max_seq_length = max_seq_length
        self.dim = dim

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts: list[str], batch_size: int = 256, progress: bool = True) -> torch.Tensor:
        """``(len(texts), dim)`` float32 unit-norm embeddings; batches of texts with similar token counts."""
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)["input_ids"]
        lengths = np.array([len(i) for i in ids])
        order = np.argsort(-lengths, kind="stable")  # longest first: a memory problem shows at once
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches", unit="batch")
        for start in starts:
            rows = order[start:start + batch_size]
            width = int(lengths[rows].max())
            input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)  # (B, T)
            mask = np.zeros((len(rows), width), dtype=np.int64)  # (B, T)
            for r, i in enumerate(rows):
                input_ids[r, :lengths[i]] = ids[i]
                mask[r, :lengths[i]] = 1
            out[rows] = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]  # (B, dim)
        return torch.from_numpy(out)


def load_onnx_encoder(folder: Path, stamp: list) -> OnnxEncoder:
    """The int8 ONNX encoder of a sentence-transformers ``folder`` (``stamp``: its weights' names, sizes and times),
    built into the cache on first use; one instance per model file and process."""
    require_onnxruntime()
    return _load(str(folder), str(onnx_model_file(stamp)))


@functools.lru_cache(maxsize=2)
def _load(folder: str, file: str) -> OnnxEncoder:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder, device="cpu", local_files_only=True)
    if not Path(file).is_file():
        build_int8_model(model, Path(file), saturates_int8(cpu_flags()))
    return OnnxEncoder(Path(file), model.tokenizer, model.max_seq_length, model.get_embedding_dimension())
