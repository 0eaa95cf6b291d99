"""The MiniLM item text encoder: offline, normalised, cached per dataset and model; clear errors without text."""

import numpy as np
import pytest
import torch
from lumos_helpers import CATALOGUE

from ffmrec.data import load_dataset
from ffmrec.data.dataset import Dataset
from ffmrec.errors import DataError
from ffmrec.fm.text import item_text_embeddings, text_cache_path


def test_catalogue_is_embedded_normalised_and_similar_items_are_neighbours(text_data):
    dataset = load_dataset(str(text_data))
    table, stats = item_text_embeddings(dataset, progress=False)
    assert table.shape == (dataset.num_items + 1, 384) and table.dtype == torch.float32
    assert torch.equal(table[0], torch.zeros(384))
    torch.testing.assert_close(table[1:].norm(dim=1), torch.ones(dataset.num_items), atol=1e-3, rtol=0)
    assert not stats.cached and stats.items == dataset.num_items
    by_name = {name: int(np.flatnonzero(dataset.item_ids == str(i + 1))[0]) for i, name in enumerate(CATALOGUE)}
    sims = table @ table[by_name["red lipstick"]]
    assert sims[by_name["pink lipstick"]] > sims[by_name["toothbrush"]]
    assert sims[by_name["pink lipstick"]] > sims[by_name["shaving foam"]]


def test_second_call_reads_the_cache_and_a_changed_text_misses_it(text_data):
    dataset = load_dataset(str(text_data))
    first, _ = item_text_embeddings(dataset, progress=False)
    again, stats = item_text_embeddings(dataset, progress=False)
    assert stats.cached and torch.equal(first, again)
    changed = Dataset(dataset.name, dataset.items, dataset.offsets, dataset.user_ids, dataset.item_ids,
                      item_text=np.array([""] + ["something else"] * dataset.num_items, dtype=object))
    other, stats = item_text_embeddings(changed, progress=False)
    assert not stats.cached and not torch.equal(first, other)
    files = list(text_cache_path(dataset.name, "x").parent.glob(f"{dataset.name}-text-*.npy"))
    assert len(files) == 2


def test_a_dataset_without_item_text_says_so():
    dataset = Dataset.from_sequences([[1, 2, 3]], name="sports")
    with pytest.raises(DataError, match="dataset 'sports' has none"):
        item_text_embeddings(dataset, progress=False)
