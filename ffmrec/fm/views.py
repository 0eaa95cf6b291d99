"""LUMOS's semantic views of one user's history, written on the user's device by a foundation model.

LUMOS (arXiv 2602.09306; only its abstract is public, so the details below are ffmrec's reading of it) has each device
write three extra views of its user's own history with a foundation model:

- **future** (future-oriented continuation): items the user plausibly moves to next, from the semantic neighbourhood
  of the recent trajectory, none already in the history;
- **paraphrase** (intent-preserving paraphrase): the history with a fraction of its items swapped for semantic
  near-equivalents, order and length kept;
- **counterfactual** (preference-inconsistent counterfactual): items far from the user's profile, used as negatives.

One interface, :class:`ViewGenerator` (``generate(history, sets, g) -> [ {kind: (n,) item ids} ] * sets``), two
backends:

- :class:`EmbeddingViews` (default, CPU): the catalogue's text embeddings (all-MiniLM-L6-v2, :mod:`ffmrec.fm.text`) and
  their exact top-k neighbours, computed once per dataset and shipped to every client as public item knowledge
  (:class:`ItemKnowledge`; it holds nothing of any user);
- :class:`LLMViews`: a causal language model (a local Hugging Face folder, or a tiny random Qwen3 built offline from a
  config) prompted with the history's titles; the generated titles are resolved to catalogue items (normalised exact
  title match, then the nearest text embedding) to give the same three outputs. Generation is batched (all prompts of
  a client at once) and cached per (client, round).

All randomness comes from the generator ``g`` the caller draws from ``(seed, round, client)``, so a client's views are
the same in every engine and after a resume. Every generator records its cost (milliseconds, and tokens for the LLM)
in :attr:`ViewGenerator.cost`.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

KINDS = ("future", "paraphrase", "counterfactual")


@dataclass
class ViewCost:
    """Running totals of the view generation on one machine (milliseconds, tokens generated, clients served)."""

    calls: int = 0
    ms: float = 0.0
    tokens: int = 0

    def add(self, ms: float, tokens: int = 0) -> None:
        self.calls += 1
        self.ms += ms
        self.tokens += tokens

    def per_client(self) -> dict[str, float]:
        n = max(self.calls, 1)
        return {"view_ms_per_client": self.ms / n, "view_tokens_per_client": self.tokens / n, "clients": self.calls}


@dataclass
class ItemKnowledge:
    """Public item knowledge every client holds: the catalogue's text embeddings and their nearest neighbours."""

    table: torch.Tensor  # (N + 1, D) float32, L2-normalised rows; row 0 (padding) zero
    neighbours: torch.Tensor  # (N + 1, k) int64, best first; row 0 padding
    similarities: torch.Tensor  # (N + 1, k) float32, aligned with neighbours
    excluded: torch.Tensor | None = None  # item ids no view may contain (cold items, not in the training catalogue)

    def __post_init__(self) -> None:
        if self.excluded is not None and len(self.excluded):  # an excluded item is nobody's neighbour
            self.neighbours = self.neighbours.masked_fill(torch.isin(self.neighbours, self.excluded), 0)

    @property
    def num_items(self) -> int:
        return self.table.shape[0] - 1


# --- the three views from item embeddings: pure functions of a history, the public knowledge and a generator ---------
def future_continuation(history: torch.Tensor, know: ItemKnowledge, length: int, recent: int, decay: float,
                        temperature: float, g: torch.Generator) -> torch.Tensor:
    """``(<= length,)`` items the user plausibly moves to next: candidates are the neighbours of the last ``recent``
    items of ``history`` ``(n,)``, scored ``sum_j decay^age_j * sim(c, h_j)`` (age 0 = the latest item); items of the
    history are excluded; ``length`` of them are drawn without replacement with probabilities
    ``softmax(score / temperature)`` (Gumbel-top-k; the highest scores, in order, for ``temperature -> 0``)."""
    last = history[-recent:]  # (r,)
    ages = torch.arange(len(last) - 1, -1, -1, dtype=torch.float32)  # (r,): 0 for the latest
    cand = know.neighbours[last].flatten()  # (r * k,)
    score = (know.similarities[last] * decay ** ages.unsqueeze(1)).flatten()  # (r * k,)
    allowed = ~torch.isin(cand, history) & (cand > 0)
    cand, score = cand[allowed], score[allowed]
    if len(cand) == 0:
        return torch.zeros(0, dtype=torch.long)
    unique, inverse = torch.unique(cand, return_inverse=True)
    total = torch.zeros(len(unique)).index_add_(0, inverse, score)  # (U,): summed over the recent items
    take = min(length, len(unique))
    u = torch.rand(len(unique), generator=g).clamp(1e-12, 1 - 1e-12)
    keys = total / temperature - torch.log(-torch.log(u))  # Gumbel-top-k: sampling without replacement
    return unique[keys.topk(take).indices]


def paraphrase(history: torch.Tensor, know: ItemKnowledge, ratio: float, top: int, g: torch.Generator) -> torch.Tensor:
    """``history`` ``(n,)`` with ``max(1, floor(ratio * n))`` random positions swapped for one of each item's ``top``
    nearest neighbours not in the history (drawn uniformly); an item whose ``top`` neighbours are all in the history
    stays. Order and length are kept."""
    n = len(history)
    out = history.clone()
    count = min(n, max(1, math.floor(ratio * n + 1e-9)))
    positions = torch.randperm(n, generator=g)[:count]  # (m,)
    options = know.neighbours[history[positions], :top]  # (m, top)
    valid = ~torch.isin(options, history) & (options > 0)
    pick = torch.rand(options.shape, generator=g).masked_fill(~valid, -1.0).argmax(1)  # uniform among the valid
    swap = valid.any(1)
    out[positions[swap]] = options[swap, pick[swap]]
    return out


def far_pool(history: torch.Tensor, know: ItemKnowledge, length: int, far: float) -> torch.Tensor:
    """The ``max(length, ceil(far * N))`` catalogue items least similar to the user's profile (the normalised mean of
    the history's text embeddings), none in the history: ``(pool,)`` item ids, least similar first."""
    profile = know.table[history].mean(0)
    profile = profile / profile.norm().clamp(min=1e-12)  # (D,)
    sims = know.table[1:] @ profile  # (N,)
    sims[history - 1] = float("inf")  # never a history item
    if know.excluded is not None:
        sims[know.excluded - 1] = float("inf")
    available = int(torch.isfinite(sims).sum())
    pool = min(available, max(length, math.ceil(far * know.num_items)))
    return (-sims).topk(pool).indices + 1  # (pool,)


def counterfactual(history: torch.Tensor, know: ItemKnowledge, length: int, far: float, g: torch.Generator,
                   pool: torch.Tensor | None = None) -> torch.Tensor:
    """``(length,)`` distinct items drawn uniformly from :func:`far_pool` (``pool``, when already computed for this
    history)."""
    pool = far_pool(history, know, length, far) if pool is None else pool
    return pool[torch.randperm(len(pool), generator=g)[:length]]


# --- the interface and its two backends --------------------------------------------------------------------------------
class ViewGenerator:
    """Makes ``sets`` independent view sets of one history; each set maps a kind of :data:`KINDS` to item ids."""

    def __init__(self, kinds: Sequence[str]):
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown view kinds {unknown}")
        self.kinds = tuple(kinds)
        self.cost = ViewCost()

    def generate(self, history: np.ndarray, sets: int, g: torch.Generator, client: int = 0,
                 server_round: int = 0) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError


@dataclass
class EmbeddingViewConfig:
    """How :class:`EmbeddingViews` draws its views."""

    future_length: int = field(default=3, metadata={"help": "Items of the future continuation."})
    recent: int = field(default=3, metadata={"help": "Latest history items whose neighbourhoods the continuation is drawn from."})
    decay: float = field(default=0.7, metadata={"help": "Weight of an older recent item per step of age in the continuation score."})
    sample_temperature: float = field(default=0.05, metadata={"help": "Temperature of drawing the continuation from its scores (small = nearly the best)."})
    paraphrase_ratio: float = field(default=0.3, metadata={"help": "Share of history items the paraphrase swaps (at least one)."})
    paraphrase_top: int = field(default=5, metadata={"help": "A swapped item is replaced by one of its this many nearest neighbours."})
    counterfactual_far: float = field(default=0.2, metadata={"help": "The counterfactual draws from this share of the catalogue least similar to the user's profile."})


class EmbeddingViews(ViewGenerator):
    """Views from the catalogue's text embeddings and nearest neighbours (CPU, milliseconds per client)."""

    def __init__(self, know: ItemKnowledge, cfg: EmbeddingViewConfig, kinds: Sequence[str] = KINDS):
        super().__init__(kinds)
        self.know = know
        self.cfg = cfg

    def generate(self, history: np.ndarray, sets: int, g: torch.Generator, client: int = 0,
                 server_round: int = 0) -> list[dict[str, torch.Tensor]]:
        t0 = time.perf_counter()
        h = torch.as_tensor(np.asarray(history), dtype=torch.long)
        c = self.cfg
        pool = far_pool(h, self.know, len(h), c.counterfactual_far) if "counterfactual" in self.kinds else None
        out = []
        for _ in range(sets):
            views = {}
            if "future" in self.kinds:
                views["future"] = future_continuation(h, self.know, c.future_length, c.recent, c.decay,
                                                      c.sample_temperature, g)
            if "paraphrase" in self.kinds:
                views["paraphrase"] = paraphrase(h, self.know, c.paraphrase_ratio, c.paraphrase_top, g)
            if "counterfactual" in self.kinds:
                views["counterfactual"] = counterfactual(h, self.know, len(h), c.counterfactual_far, g, pool)
            out.append(views)
        self.cost.add((time.perf_counter() - t0) * 1000.0)
        return out


# --- the LLM backend -------------------------------------------------------------------------------------------------
def normalize_title(text: str) -> str:
    """Lower case, accents and punctuation removed, spaces collapsed: what an exact title match compares."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9]+", " ", text.lower())).strip()


class TitleResolver:
    """Generated titles -> catalogue items: normalised exact match first, then the nearest text embedding (the text
    encoder runs on the device too)."""

    def __init__(self, titles: Sequence[str], know: ItemKnowledge, encode=None):
        self.know = know
        self.encode = encode  # callable: list[str] -> (n, D) normalised embeddings; None = exact matches only
        self.exact: dict[str, int] = {}
        for item, title in enumerate(titles):
            if item > 0:
                self.exact.setdefault(normalize_title(title), item)

    def resolve(self, texts: Sequence[str], exclude: torch.Tensor) -> list[int]:
        """One item per text (0 when nothing resolves), never one of ``exclude``."""
        out = [self.exact.get(normalize_title(t), 0) for t in texts]
        out = [0 if i and bool((exclude == i).any()) else i for i in out]
        todo = [j for j, i in enumerate(out) if i == 0 and texts[j].strip()]
        if todo and self.encode is not None:
            emb = self.encode([texts[j] for j in todo])  # (m, D)
            sims = emb @ self.know.table.T  # (m, N + 1)
            sims[:, 0] = float("-inf")
            sims[:, exclude] = float("-inf")
            for j, best in zip(todo, sims.argmax(1).tolist()):
                out[j] = int(best)
        return out


@dataclass
class LLMViewConfig:
    """Prompts and decoding of :class:`LLMViews`."""

    max_new_tokens: int = field(default=24, metadata={"help": "Tokens generated per prompt (one title each)."})
    context_items: int = field(default=5, metadata={"help": "Latest history titles shown in a prompt."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature of the generation (drawn from the client's own seed)."})


class LLMViews(ViewGenerator):
    """Views written by a causal LM: per set, ``future_length`` continuation prompts, one paraphrase prompt per
    swapped item and ``future_length`` counterfactual prompts, all of a client's prompts generated as one batch."""

    FUTURE = "A shopper bought, in order: {items}. The next item they will buy is:"
    PARAPHRASE = "An item very similar to {item} is:"
    COUNTER = "A shopper bought: {items}. An item this shopper would never buy is:"

    def __init__(self, model, tokenizer, titles: Sequence[str], resolver: TitleResolver, emb_cfg: EmbeddingViewConfig,
                 cfg: LLMViewConfig, kinds: Sequence[str] = KINDS):
        super().__init__(kinds)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.titles = list(titles)
        self.resolver = resolver
        self.emb_cfg = emb_cfg
        self.cfg = cfg
        self._cache: dict[tuple[int, int, int], list[dict[str, torch.Tensor]]] = {}

    def _title(self, item: int) -> str:
        return self.titles[item].split(" | ")[0]

    @torch.no_grad()
    def _generate(self, prompts: list[str], seed: int) -> tuple[list[str], int]:
        tok = self.tokenizer
        rows = [[tok.bos_id, *tok.encode(p)] for p in prompts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, r in enumerate(rows):  # left padding: generation continues every row at the last column
            ids[i, width - len(r):] = torch.tensor(r)
            attn[i, width - len(r):] = 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=self.cfg.max_new_tokens,
                                      do_sample=True, temperature=self.cfg.temperature, top_k=0,
                                      pad_token_id=tok.pad_id, eos_token_id=tok.eos_id)
        new = out[:, width:]  # (B, <= max_new_tokens)
        texts, tokens = [], 0
        for row in new.tolist():
            cut = row.index(tok.eos_id) if tok.eos_id in row else len(row)
            tokens += cut
            texts.append(tok.decode(row[:cut]).split("\n")[0].strip())
        return texts, tokens

    def generate(self, history: np.ndarray, sets: int, g: torch.Generator, client: int = 0,
                 server_round: int = 0) -> list[dict[str, torch.Tensor]]:
        key = (client, server_round, sets)
        if key in self._cache:
            return self._cache[key]
        t0 = time.perf_counter()
        h = torch.as_tensor(np.asarray(history), dtype=torch.long)
        shown = ", ".join(self._title(i) for i in h[-self.cfg.context_items:].tolist())
        n_future = self.emb_cfg.future_length
        count = min(len(h), max(1, math.floor(self.emb_cfg.paraphrase_ratio * len(h) + 1e-9)))
        prompts, plan = [], []  # plan: (set, kind, position or -1)
        for s in range(sets):
            if "future" in self.kinds:
                prompts += [self.FUTURE.format(items=shown)] * n_future
                plan += [(s, "future", -1)] * n_future
            if "paraphrase" in self.kinds:
                for pos in torch.randperm(len(h), generator=g)[:count].tolist():
                    prompts.append(self.PARAPHRASE.format(item=self._title(int(h[pos]))))
                    plan.append((s, "paraphrase", pos))
            if "counterfactual" in self.kinds:
                prompts += [self.COUNTER.format(items=shown)] * n_future
                plan += [(s, "counterfactual", -1)] * n_future
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        texts, tokens = self._generate(prompts, seed) if prompts else ([], 0)
        items = self.resolver.resolve(texts, h)
        out = [{k: [] for k in self.kinds} for _ in range(sets)]
        paraphrased = [h.clone() for _ in range(sets)]
        for (s, kind, pos), item in zip(plan, items):
            if kind == "paraphrase":
                if item:
                    paraphrased[s][pos] = item
            elif item and item not in out[s][kind]:
                out[s][kind].append(item)
        views = []
        for s in range(sets):
            v = {k: torch.tensor(out[s][k], dtype=torch.long) for k in self.kinds if k != "paraphrase"}
            if "paraphrase" in self.kinds:
                v["paraphrase"] = paraphrased[s]
            views.append({k: v[k] for k in self.kinds})
        self._cache = {k: v for k, v in self._cache.items() if k[1] >= server_round}  # older rounds are done
        self._cache[key] = views
        self.cost.add((time.perf_counter() - t0) * 1000.0, tokens)
        return views


def build_view_generator(cfg, dataset, seed: int, excluded: np.ndarray | None = None) -> ViewGenerator:
    """The view generator a :class:`~ffmrec.tasks.lumos.LUMOSConfig` asks for, with the dataset's public item
    knowledge (MiniLM embeddings and exact neighbours, once per dataset); ``excluded`` items (cold items) never
    appear in a view."""
    from ffmrec.fm.text import dataset_neighbours, dataset_text_table, require_item_text

    titles = require_item_text(dataset, f"method LUMOS (task.backend={cfg.backend!r})")
    table = dataset_text_table(dataset, cfg.text_model, cfg.text_dtype)
    ids, sims = dataset_neighbours(dataset, cfg.neighbours, cfg.text_model, cfg.text_dtype)
    know = ItemKnowledge(table, ids, sims, None if excluded is None else torch.as_tensor(excluded, dtype=torch.long))
    if cfg.backend == "embedding":
        return EmbeddingViews(know, cfg.views, cfg.kinds)
    from ffmrec.fm.causal_lm import build_base_model, build_tokenizer
    from ffmrec.fm.text import encode_texts, load_encoder

    encoder = load_encoder(cfg.text_model, cfg.text_dtype)
    resolver = TitleResolver([str(t).split(" | ")[0] for t in titles], know,
                             lambda texts: encode_texts(encoder, list(texts), progress=False))
    model = build_base_model(cfg.llm, seed)
    return LLMViews(model, build_tokenizer(cfg.llm), titles, resolver, cfg.views, cfg.generation, cfg.kinds)
