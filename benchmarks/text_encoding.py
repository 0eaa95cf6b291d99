"""Speed of embedding a dataset's item catalogue with all-MiniLM-L6-v2 (sentence-transformers, offline, CPU).

Every variant (a lever tried on the encoder) encodes the same texts in this one process, and the variants take turns
``--repeats`` times (A B C A B C ...), so a busy machine slows them alike: each row reports its best time, its ratio
to the baseline (the shipped :func:`ffmrec.fm.text.encode_texts`) and the smallest cosine similarity of any item to
the float32 encoding (the quality bar: >= 0.99). Time counts everything after the weights are loaded (tokenization,
and compilation for ``compile`` variants). Then the shipped path is timed cold (nothing cached: the model encodes every
item) and cached (the table read back from the disk cache). Rows go to ``benchmarks/results/<--results>.json``.

Variants (``--variants``; ``baseline`` and ``float32`` always run):

- ``batchN``: bfloat16 with a batch of N texts;
- ``threads1``: ``torch.set_num_threads(1)`` (``--interop-threads N`` sets ``torch.set_num_interop_threads`` at
  start-up instead: it applies to every variant of the run, and each row records it);
- ``cap128``: ``max_seq_length`` 128 (the row counts the texts it would cut: an item's text must not be cut silently);
- ``compile``: ``torch.compile(dynamic=True)`` of the transformer, compile time included;
- ``int8-onnx``: the shipped ``dtype='int8-onnx'`` (:mod:`ffmrec.fm.onnx_encoder`: ONNX Runtime, int8 weights per
  channel but the feed-forward output projections); the row records the one-off build (export, quantization) apart;
- ``int8-onnx-8bit``, ``int8-onnx-7bit``: the shipped int8 build with 8-bit or 7-bit weights (``reduce_range``) forced,
  whatever this CPU's :func:`ffmrec.utils.cpu.saturates_int8` chooses (7-bit where ``pmaddubsw`` saturates: x86
  without VNNI);
- ``onnx-float32``: the same ONNX graph unquantized (what ONNX Runtime alone gives);
- ``onnx-dynamic-int8``: every weight matrix int8 (``quantize_dynamic``, per channel; activations uint8 per tensor);
- ``onnx-nbits8``: fused graph, 8-bit weight blocks of 32 with int8 compute (``MatMulNBits``; needs onnx-ir);
- ``torch-int8-ENGINE`` (``x86``, ``fbgemm``, ``onednn``): ``torch.ao.quantization.quantize_dynamic`` of the float32
  model's ``Linear`` layers with ``torch.backends.quantized.engine = ENGINE``.

    python benchmarks/text_encoding.py --dataset beauty --threads 2 [--limit N] [--repeats 3] [--variants ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import peak_rss_mb, write_results

from ffmrec.data import load_dataset
from ffmrec.data.dataset import Dataset
from ffmrec.fm.text import encode_texts, item_text_embeddings, load_encoder

VARIANTS = ["batch64", "batch1024", "threads1", "cap128", "compile", "int8-onnx", "int8-onnx-8bit", "int8-onnx-7bit",
            "onnx-float32", "onnx-dynamic-int8", "onnx-nbits8", "torch-int8-x86", "torch-int8-fbgemm",
            "torch-int8-onednn"]
DEFAULT_VARIANTS = [v for v in VARIANTS if v != "onnx-nbits8"]  # onnx-nbits8 needs onnx-ir, not a dependency
BUILD_SECONDS: dict[str, float] = {}  # one-off model building of a variant, outside its timed encodings


def subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The dataset with only its first ``limit`` items' texts (a quick run); the whole catalogue when None."""
    if limit is None or limit >= dataset.num_items:
        return dataset
    return Dataset(f"{dataset.name}-first{limit}", dataset.items[dataset.items <= limit],
                   _offsets(dataset, limit), dataset.user_ids, dataset.item_ids[:limit + 1],
                   item_text=dataset.item_text[:limit + 1])


def _offsets(dataset: Dataset, limit: int):
    lengths = [int((dataset.sequence(u) <= limit).sum()) for u in range(dataset.num_users)]
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def token_lengths(model, texts: list[str]) -> np.ndarray:
    """Tokens of each text with the special tokens, untruncated."""
    return np.array([len(ids) for ids in model.tokenizer(texts, truncation=False)["input_ids"]])


def make_variant(name: str, threads: int, batch_size: int):
    """``encode(texts) -> (N, dim)`` of one variant; state (a compiled model) lives in the closure."""
    if name == "float32":
        return lambda texts: encode_texts(load_encoder(None, "float32"), texts, batch_size, progress=False)
    bf16 = load_encoder(None, "bfloat16")
    if name == "baseline":
        return lambda texts: encode_texts(bf16, texts, batch_size, progress=False)
    if name.startswith("batch"):
        return lambda texts: encode_texts(bf16, texts, int(name[5:]), progress=False)
    if name == "threads1":
        def encode(texts):
            torch.set_num_threads(1)
            try:
                return encode_texts(bf16, texts, batch_size, progress=False)
            finally:
                torch.set_num_threads(threads)
        return encode
    if name == "cap128":
        def encode(texts):
            old, bf16.max_seq_length = bf16.max_seq_length, 128
            try:
                return encode_texts(bf16, texts, batch_size, progress=False)
            finally:
                bf16.max_seq_length = old
        return encode
    if name == "compile":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(_folder(), device="cpu", local_files_only=True).to(torch.bfloat16).eval()
        model[0].model = torch.compile(model[0].model, dynamic=True)  # at its first call; auto_model is read-only
        return lambda texts: encode_texts(model, texts, batch_size, progress=False)
    if name == "int8-onnx":
        t0 = time.perf_counter()
        encoder = load_encoder(None, "int8-onnx")  # built into $FFMREC_CACHE_DIR unless already there
        BUILD_SECONDS[name] = time.perf_counter() - t0
        return lambda texts: encode_texts(encoder, texts, batch_size, progress=False)
    if name in ("int8-onnx-8bit", "int8-onnx-7bit", "onnx-float32", "onnx-dynamic-int8", "onnx-nbits8"):
        return _onnx_variant(name, threads, batch_size)
    if name.startswith("torch-int8-"):
        from sentence_transformers import SentenceTransformer

        engine = name[len("torch-int8-"):]
        if engine not in torch.backends.quantized.supported_engines:
            raise SystemExit(f"--variants: this torch has no quantized engine {engine!r} "
                             f"({torch.backends.quantized.supported_engines})")
        model = SentenceTransformer(_folder(), device="cpu", local_files_only=True).eval()
        torch.backends.quantized.engine = engine
        model[0].model = torch.ao.quantization.quantize_dynamic(model[0].model, {torch.nn.Linear},
                                                                     dtype=torch.qint8)

        def encode(texts):
            torch.backends.quantized.engine = engine
            return encode_texts(model, texts, batch_size, progress=False)
        return encode
    raise SystemExit(f"--variants: unknown variant {name!r}; choose among {', '.join(VARIANTS)}")


def _onnx_variant(name: str, threads: int, batch_size: int):
    """The shipped int8 build with 8-bit or 7-bit weights forced; the exported float32 ONNX graph as is, with every
    weight matrix int8 (``quantize_dynamic`` per channel), or as 8-bit weight blocks of 32 with int8 compute
    (``MatMulNBits``, accuracy level 4; needs onnx-ir); each in a session like the shipped one."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    from ffmrec.fm.onnx_encoder import OnnxEncoder, build_int8_model, export_float32

    t0 = time.perf_counter()
    model = SentenceTransformer(_folder(), device="cpu", local_files_only=True)
    build = Path(tempfile.mkdtemp(prefix="text-encoding-onnx-"))
    file = build / "float32.onnx"
    if name.startswith("int8-onnx-"):
        file = build / f"{name}.onnx"
        build_int8_model(model, file, reduce_range=name.endswith("7bit"))
    else:
        export_float32(model, file)
    if name == "onnx-dynamic-int8":
        file = build / "dynamic-int8.onnx"
        quantize_dynamic(str(build / "float32.onnx"), str(file), weight_type=QuantType.QInt8, per_channel=True)
    if name == "onnx-nbits8":
        file = build / "nbits8.onnx"
        _quantize_blocks(build / "float32.onnx", file, model[0].auto_model.config)
    encoder = OnnxEncoder(file, model.tokenizer, model.max_seq_length, model.get_embedding_dimension(), threads)
    BUILD_SECONDS[name] = time.perf_counter() - t0
    return lambda texts: encode_texts(encoder, texts, batch_size, progress=False)


def _quantize_blocks(src: Path, dst: Path, config) -> None:
    """ONNX Runtime's BERT fusions, then every weight matrix as symmetric 8-bit blocks of 32 (``MatMulNBits``)."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:
        raise SystemExit(f"--variants onnx-nbits8 needs onnx-ir==1.1.0 ({exc})") from None
    fused = dst.with_name("fused.onnx")
    optimize_model(str(src), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
                   opt_level=1).save_model_to_file(str(fused))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(fused)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), False)


def _folder() -> str:
    from ffmrec.fm.text import default_model_path

    return str(default_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--interop-threads", type=int, default=None, help="torch.set_num_interop_threads at start-up")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="encode only the first N items")
    parser.add_argument("--repeats", type=int, default=3, help="turns each variant takes (best time kept)")
    parser.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS)
    parser.add_argument("--results", default="text_encoding")
    args = parser.parse_args()
    if args.interop_threads:
        torch.set_num_interop_threads(args.interop_threads)
    torch.set_num_threads(args.threads)
    dataset = subset(load_dataset(args.dataset), args.limit)
    texts = [str(t) for t in dataset.item_text[1:]]
    base = {"dataset": args.dataset, "setting": "local"}
    common = {"items": len(texts), "threads": args.threads, "interop_threads": torch.get_num_interop_threads(),
              "batch_size": args.batch_size}
    names = ["baseline", "float32", *[v for v in args.variants if v not in ("baseline", "float32")]]
    encoders = {name: make_variant(name, args.threads, args.batch_size) for name in names}
    best = {name: float("inf") for name in names}
    first = {}
    outputs = {}
    loads = []
    for turn in range(args.repeats):
        for name in names:
            t0 = time.perf_counter()
            outputs[name] = encoders[name](texts)
            seconds = time.perf_counter() - t0
            first.setdefault(name, seconds)  # compile variants: the first turn includes compiling
            best[name] = min(best[name], seconds)
            loads.append(os.getloadavg()[0])
            print(f"turn {turn + 1} {name:10s} {seconds:7.2f} s {len(texts) / seconds:7.1f} items/s "
                  f"(load {loads[-1]:.1f})", flush=True)
    reference = outputs["float32"]
    lengths = token_lengths(load_encoder(None, "bfloat16"), texts)
    rows = []
    for name in names:
        seconds = first[name] if name == "compile" else best[name]  # compile time counts: once per dataset
        cosine = torch.nn.functional.cosine_similarity(outputs[name], reference, dim=1)
        metrics = {**common, "seconds": round(seconds, 3), "items_per_second": round(len(texts) / seconds, 1),
                   "ratio_vs_baseline": round(best["baseline"] / seconds, 3),
                   "min_cosine_vs_fp32": round(float(cosine.min()), 5),
                   "load_avg_1min": round(float(np.mean(loads)), 2), "repeats": args.repeats}
        if name == "threads1":
            metrics["threads"] = 1
        if name.startswith("batch"):
            metrics["batch_size"] = int(name[5:])
        if name == "cap128":
            metrics["texts_cut"] = int((lengths > 128).sum())
        if name == "compile":
            metrics["seconds_after_compile"] = round(best[name], 3)
        if name in BUILD_SECONDS:
            metrics["build_seconds"] = round(BUILD_SECONDS[name], 2)
        rows.append({**base, "method": f"minilm-{name}", "metrics": metrics})
        print(rows[-1], flush=True)
    tokens = {"tokens_mean": round(float(lengths.mean()), 1), "tokens_max": int(lengths.max()),
              **{f"texts_over_{c}_tokens": int((lengths > c).sum()) for c in (64, 128, 256)}}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FFMREC_CACHE_DIR"] = cache  # a fresh cache: the first call must encode
        for phase in ("cold", "cached"):
            _, stats = item_text_embeddings(dataset, dtype="bfloat16", batch_size=args.batch_size, progress=False)
            assert stats.cached == (phase == "cached")
            rows.append({**base, "method": f"minilm-bfloat16-{phase}",
                         "metrics": {**common, "seconds": round(stats.seconds, 3),
                                     "items_per_second": round(stats.items_per_second, 1),
                                     "load_avg_1min": round(os.getloadavg()[0], 2), **tokens,
                                     "peak_rss_mb": round(peak_rss_mb(), 1)}})
            print(rows[-1], flush=True)
    write_results(args.results, rows)


if __name__ == "__main__":
    main()
