"""Speed of embedding a dataset's item catalogue with all-MiniLM-L6-v2 (sentence-transformers, offline, CPU).

For each dtype: a cold encoding (nothing cached: the model encodes every item text, batches sorted by length) and a
second call (the table read back from the disk cache). Rows: items, seconds, items/s, torch threads; written to
``benchmarks/results/<--results>.json`` in the shared format.

    python benchmarks/text_encoding.py --dataset beauty --threads 2 [--dtypes bfloat16 float32] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from common import peak_rss_mb, write_results

from ffmrec.data import load_dataset
from ffmrec.data.dataset import Dataset
from ffmrec.fm.text import item_text_embeddings, load_encoder


def subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The dataset with only its first ``limit`` items' texts (a quick run); the whole catalogue when None."""
    if limit is None or limit >= dataset.num_items:
        return dataset
    return Dataset(f"{dataset.name}-first{limit}", dataset.items[dataset.items <= limit],
                   _offsets(dataset, limit), dataset.user_ids, dataset.item_ids[:limit + 1],
                   item_text=dataset.item_text[:limit + 1])


def _offsets(dataset: Dataset, limit: int):
    import numpy as np

    lengths = [int((dataset.sequence(u) <= limit).sum()) for u in range(dataset.num_users)]
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="encode only the first N items")
    parser.add_argument("--results", default="text_encoding")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = subset(load_dataset(args.dataset), args.limit)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FFMREC_CACHE_DIR"] = cache  # a fresh cache: the first call must encode
        for dtype in args.dtypes:
            load_encoder(None, dtype)  # loading the weights is not encoding
            for phase in ("cold", "cached"):
                _, stats = item_text_embeddings(dataset, dtype=dtype, batch_size=args.batch_size, progress=True)
                assert stats.cached == (phase == "cached")
                rows.append({"dataset": args.dataset, "method": f"minilm-{dtype}-{phase}", "setting": "local",
                             "metrics": {"items": stats.items, "seconds": round(stats.seconds, 3),
                                         "items_per_second": round(stats.items_per_second, 1),
                                         "threads": args.threads, "batch_size": args.batch_size,
                                         "load_avg_1min": round(os.getloadavg()[0], 2),
                                         "peak_rss_mb": round(peak_rss_mb(), 1)}})
                print(rows[-1])
    write_results(args.results, rows)


if __name__ == "__main__":
    main()
