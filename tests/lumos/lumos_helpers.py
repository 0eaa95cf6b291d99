"""Shared by the LUMOS tests: a tiny catalogue with real product names, and public item knowledge without a model."""

import numpy as np
import torch

from ffmrec.fm.text import nearest_neighbours
from ffmrec.fm.views import ItemKnowledge

NUM_ITEMS = 30
CATALOGUE = [
    "red lipstick", "pink lipstick", "lip gloss", "lip liner", "nail polish red", "nail polish clear",
    "nail file", "cuticle oil", "shampoo", "conditioner", "hair mask", "hair dryer", "face cream", "night cream",
    "eye cream", "sunscreen", "mascara", "eyeliner", "eye shadow palette", "false lashes", "perfume rose",
    "perfume citrus", "body lotion", "hand cream", "bath salts", "toothpaste", "toothbrush", "razor",
    "shaving foam", "after shave",
]


def knowledge(num_items=NUM_ITEMS, dim=8, k=6, seed=0) -> ItemKnowledge:
    """Public item knowledge from random unit vectors (no text model needed)."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(num_items + 1, dim, generator=g)
    table = table / table.norm(dim=1, keepdim=True)
    table[0] = 0
    ids, sims = nearest_neighbours(table, k)
    return ItemKnowledge(table, ids, sims)


def write_text_dataset(folder, num_users=24, seed=3):
    """interactions.csv + item_text.csv of a tiny catalogue with real product names."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,timestamp"]
    for u in range(num_users):
        for t, i in enumerate(rng.integers(1, NUM_ITEMS + 1, size=rng.integers(4, 10))):
            rows.append(f"{u},{i},{t}")
    rows += [f"{num_users},{i},{i}" for i in range(1, NUM_ITEMS + 1)]  # one user who saw every item: none is missing
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    text = ["item,text"] + [f"{i + 1},{name} | Beauty" for i, name in enumerate(CATALOGUE)]
    (folder / "item_text.csv").write_text("\n".join(text) + "\n")
    return folder / "interactions.csv"
