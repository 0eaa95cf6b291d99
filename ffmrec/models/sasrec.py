"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018, arXiv:1808.09781).

A causal Transformer over the item history; the hidden state at position t scores every item as the next one by a dot
product with the (shared) item embedding table. Trained by default with full-catalogue cross-entropy over all positions
("SASRec+", Klenitskiy & Vasilev, RecSys 2023), or optionally with the original one-negative BCE or a sampled softmax.

Two choices make the model exact under any amount of extra left padding, which lets trainers and the fast federated
simulator trim every batch to its longest history:

- positions are right-aligned: the most recent item always gets position ``max_len - 1``;
- attention masks padded keys (each position may also attend to itself, so no softmax row is empty).

Dropout masks and sampled negatives come from ``batch["noise"]`` when the batch has it (uniform numbers a federated
client draws from its own ``(seed, round, client)``; see :meth:`SASRec.noise_shapes`), and from torch's generator
otherwise (centralized training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ffmrec.data.batching import by_length as by_length_encode
from ffmrec.errors import ConfigError
from ffmrec.models.base import Recommender

ITEM_REPRS = ("id", "text", "hybrid")


@dataclass
class SASRecConfig:
    """Architecture and loss of :class:`SASRec`."""

    max_len: int = field(default=50, metadata={"help": "Longest history the model reads (50 for Amazon, 200 for MovieLens)."})
    hidden_size: int = field(default=64, metadata={"help": "Embedding and hidden width d."})
    num_layers: int = field(default=2, metadata={"help": "Transformer blocks."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads; must divide hidden_size."})
    inner_size: int = field(default=256, metadata={"help": "Width of the feed-forward layer in each block."})
    dropout: float = field(default=0.5, metadata={"help": "Dropout on embeddings, attention and feed-forward outputs."})
    loss: str = field(default="ce", metadata={"help": "'ce' (full-catalogue cross-entropy), 'bce' (one sampled negative per position, as in the paper) or 'sampled_ce' (softmax over the target and num_negatives sampled items)."})
    num_negatives: int = field(default=256, metadata={"help": "Negatives per position for loss='sampled_ce'."})
    user_embedding: bool = field(default=False, metadata={"help": "Add a personal user vector to the sequence representation (a personal parameter: it never leaves the user's device)."})
    mask_token: bool = field(default=False, metadata={"help": "Add a learned mask item (id num_items + 1) that inputs may contain but that is never scored (CL4SRec's mask augmentation)."})
    item_repr: str = field(default="id", metadata={"help": "How an item is represented: 'id' (a learned embedding per item), 'text' (the item's frozen text embedding through a trainable linear projection: items without training interactions can still be recommended) or 'hybrid' (both, summed). text/hybrid need a dataset with item text."})
    id_dropout: float = field(default=0.0, metadata={"help": "hybrid items, loss ce: in training, each candidate item's id part is dropped from the softmax (scored by its text alone) with this probability, per sequence and step, so that the model learns to score an item from its text: what a cold item, whose id row was never trained, has at test time (DropoutNet, Volkovs et al., NeurIPS 2017). 0 = off."})

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.num_heads={self.num_heads} does not divide model.hidden_size={self.hidden_size}: "
                "choose num_heads among the divisors of hidden_size."
            )
        if self.item_repr not in ITEM_REPRS:
            raise ConfigError(f"model.item_repr={self.item_repr!r} is unknown: use one of {', '.join(ITEM_REPRS)}.")
        if self.loss not in ("ce", "bce", "sampled_ce"):
            raise ConfigError(f"model.loss={self.loss!r} is unknown: use 'ce', 'bce' or 'sampled_ce'.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} is outside [0, 1): choose e.g. 0.2 or 0.5.")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"model.id_dropout={self.id_dropout} is outside [0, 1): choose e.g. 0.5 (0 = off).")
        if self.id_dropout and (self.item_repr != "hybrid" or self.loss != "ce"):
            raise ConfigError(f"model.id_dropout={self.id_dropout} drops the id part of hybrid items from the "
                              f"full softmax: it needs model.item_repr=hybrid and model.loss=ce (got "
                              f"{self.item_repr!r}, {self.loss!r}), or set model.id_dropout=0.")
        for name in ("max_len", "hidden_size", "num_layers", "num_heads", "inner_size", "num_negatives"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name}={getattr(self, name)} must be a positive integer.")


def dropout(x: torch.Tensor, p: float, training: bool, u: torch.Tensor | None) -> torch.Tensor:
    """Inverted dropout; with ``u`` (uniform noise shaped like ``x``) the mask is ``u >= p``, else torch draws it."""
    if not training or p == 0.0:
        return x
    if u is None:
        return F.dropout(x, p, True)
    return x * (u >= p).to(x.dtype) / (1.0 - p)


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: masked self-attention then a position-wise feed-forward, both residual."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.ln_attn = nn.LayerNorm(cfg.hidden_size)
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.ln_ff = nn.LayerNorm(cfg.hidden_size)
        self.ff_in = nn.Linear(cfg.hidden_size, cfg.inner_size)
        self.ff_out = nn.Linear(cfg.inner_size, cfg.hidden_size)
        self.p = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, noise: dict[str, torch.Tensor] | None = None,
                prefix: str = "") -> torch.Tensor:
        # x: (B, T, d); mask: (B, 1, T, T) True where a query may attend to a key
        noise = noise or {}
        B, T, d = x.shape
        hs = d // self.num_heads
        q, k, v = self.qkv(self.ln_attn(x)).split(d, dim=-1)
        q = q.view(B, T, self.num_heads, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.num_heads, hs).transpose(1, 2)
        v = v.view(B, T, self.num_heads, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        att = dropout(att, self.p, self.training, noise.get(prefix + "att"))
        y = (att @ v).transpose(1, 2).reshape(B, T, d)
        x = x + dropout(self.proj(y), self.p, self.training, noise.get(prefix + "proj"))
        x = x + dropout(self.ff_out(F.gelu(self.ff_in(self.ln_ff(x)))), self.p, self.training, noise.get(prefix + "ff"))
        return x


class SASRec(Recommender):
    """SASRec over ``num_items`` items (ids 1..num_items; 0 is padding).

    ``item_text`` ``(num_items + 1, D)`` holds the items' frozen text embeddings (row 0 padding; see
    :mod:`ffmrec.fm.text`), needed by ``item_repr`` 'text' and 'hybrid': the item table is then
    ``text_proj(item_text)`` (plus ``item_emb`` for hybrid), a non-persistent buffer through a trainable projection,
    so a client sends the projection, never the (public, frozen) text table. A mask token's text row is zero.
    """

    def __init__(self, cfg: SASRecConfig, num_items: int, num_users: int = 0, item_text: torch.Tensor | None = None,
                 unseen_items: torch.Tensor | None = None):
        super().__init__()
        if cfg.user_embedding and num_users < 1:
            raise ConfigError("model.user_embedding=true needs the number of users (num_users >= 1).")
        if cfg.item_repr != "id" and (item_text is None or item_text.shape[0] != num_items + 1):
            raise ConfigError(f"model.item_repr={cfg.item_repr!r} needs the items' text embeddings "
                              f"({num_items + 1} rows): use a dataset with item text, or model.item_repr=id.")
        self.cfg = cfg
        self.num_items = num_items
        self.max_len = cfg.max_len
        self.embedding_parameters = ("item_emb.weight",) if cfg.item_repr != "text" else ()
        self.loss_is_position_mean = True  # ce, bce and sampled_ce: a mean over positions of per-position terms
        self.mask_token_id = num_items + 1 if cfg.mask_token else None
        if cfg.item_repr != "text":
            self.item_emb = nn.Embedding(num_items + 1 + int(cfg.mask_token), cfg.hidden_size, padding_idx=0)  # 0: pad
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden_size)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.ln_out = nn.LayerNorm(cfg.hidden_size)
        if cfg.user_embedding:
            self.user_emb = nn.Embedding(num_users, cfg.hidden_size)
            self.personal_parameters = ("user_emb.weight",)
        if cfg.item_repr != "id":
            text = torch.zeros(num_items + 1 + int(cfg.mask_token), item_text.shape[1])  # (rows, D)
            text[:num_items + 1] = item_text.float()
            self.register_buffer("item_text", text, persistent=False)  # frozen and public: never sent
            self.text_proj = nn.Linear(item_text.shape[1], cfg.hidden_size)
        if unseen_items is not None and len(unseen_items):  # items not in the catalogue at training time (cold items)
            unseen = torch.zeros(num_items, dtype=torch.bool)
            unseen[torch.as_tensor(unseen_items, dtype=torch.long) - 1] = True
            self.register_buffer("unseen", unseen, persistent=False)  # (N,): never a training candidate
        else:
            self.unseen = None
        self.apply(self._init_weights)

    def item_table(self) -> torch.Tensor | None:
        """The item vectors ``(rows, d)`` for item_repr text/hybrid (projected once per call); None for 'id', whose
        rows are read from ``item_emb`` directly."""
        if self.cfg.item_repr == "id":
            return None
        table = self.text_proj(self.item_text)  # (rows, d)
        if self.cfg.item_repr == "hybrid":
            table = table + self._id_rows()
        return table

    def _id_rows(self) -> torch.Tensor:
        """The id part of every item's vector; zero for unseen (cold) items, whose id rows were never trained: such
        an item is its text alone."""
        rows = self.item_emb.weight
        if self.unseen is None:
            return rows
        seen = torch.ones(rows.shape[0], dtype=rows.dtype, device=rows.device)
        seen[1:self.num_items + 1] = (~self.unseen).to(rows.dtype)
        return rows * seen.unsqueeze(1)

    def _embed(self, ids: torch.Tensor, table: torch.Tensor | None) -> torch.Tensor:
        return self.item_emb(ids) if table is None else F.embedding(ids, table)

    def _weights(self, table: torch.Tensor | None) -> torch.Tensor:
        return self.item_emb.weight if table is None else table

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def noise_shapes(self, length: int) -> dict[str, tuple[int, ...]]:
        cfg, shapes = self.cfg, {}
        if cfg.dropout > 0:
            shapes["emb"] = (length, cfg.hidden_size)
            for i in range(cfg.num_layers):
                shapes[f"b{i}.att"] = (cfg.num_heads, length, length)
                shapes[f"b{i}.proj"] = (length, cfg.hidden_size)
                shapes[f"b{i}.ff"] = (length, cfg.hidden_size)
        if cfg.loss == "bce":
            shapes["negatives"] = (length,)
        elif cfg.loss == "sampled_ce":
            shapes["negatives"] = (cfg.num_negatives,)
        if cfg.id_dropout > 0:
            shapes["id_drop"] = (self.num_items,)
        return shapes

    def noise_time_axes(self) -> dict[str, tuple[int, ...]]:
        axes = {"emb": (0,), "negatives": (0,) if self.cfg.loss == "bce" else (), "id_drop": ()}
        for i in range(self.cfg.num_layers):
            axes.update({f"b{i}.att": (1, 2), f"b{i}.proj": (0,), f"b{i}.ff": (0,)})
        return axes

    def bucketable(self, compact: bool, noise: dict | None) -> bool:
        """Whether a batch may be encoded by length (:func:`~ffmrec.data.batching.by_length`): its shapes may depend
        on the data (``compact``, never under vmap) and dropout draws nothing from torch's generator (explicit noise,
        or none in effect), so that the result equals the padded batch's up to float rounding."""
        return compact and (noise is not None or not self.training or self.cfg.dropout == 0.0)

    def encode(self, input_ids: torch.Tensor, users: torch.Tensor | None = None,
               noise: dict[str, torch.Tensor] | None = None, table: torch.Tensor | None = None,
               by_length: bool = False) -> torch.Tensor:
        """Hidden states ``(B, T, d)`` of left-padded histories ``(B, T)``, ``T <= max_len`` (``table``: the item
        vectors of :meth:`item_table`, computed here when None); ``by_length``: rows encoded bucket by bucket of
        similar length (see :meth:`bucketable`; padding positions, which carry no target, may then differ)."""
        if table is None:
            table = self.item_table()
        if by_length:
            batch = {"input_ids": input_ids, **({"users": users} if users is not None else {}),
                     **({"noise": noise} if noise is not None else {})}
            return by_length_encode(lambda b: self.encode(b["input_ids"], b.get("users"), b.get("noise"), table),
                                    batch, self.noise_time_axes())
        noise = noise or {}
        B, T = input_ids.shape
        d = self.cfg.hidden_size
        positions = torch.arange(self.cfg.max_len - T, self.cfg.max_len, device=input_ids.device)  # right-aligned
        valid = input_ids != 0  # (B, T)
        x = self._embed(input_ids, table) * math.sqrt(d) + self.pos_emb(positions)  # (B, T, d)
        x = dropout(x, self.cfg.dropout, self.training, noise.get("emb")) * valid.unsqueeze(-1)
        causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
        eye = torch.eye(T, dtype=torch.bool, device=input_ids.device)
        mask = (causal & valid.unsqueeze(1)) | eye  # (B, T, T): causal, padded keys hidden, self always visible
        mask = mask.unsqueeze(1)  # (B, 1, T, T)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, noise, f"b{i}.")
        x = self.ln_out(x)
        if self.cfg.user_embedding:
            x = x + self.user_emb(users).unsqueeze(1)  # (B, 1, d) broadcast over positions
        return x

    def calculate_loss(self, batch: dict[str, torch.Tensor], *, compact: bool = True) -> torch.Tensor:
        noise = batch.get("noise")
        table = self.item_table()
        by_length = self.bucketable(compact, noise)
        h = self.encode(batch["input_ids"], batch.get("users"), noise, table, by_length)  # (B, T, d)
        targets = batch["targets"]  # (B, T), 0 = no target
        if self.cfg.loss == "ce":
            if self.cfg.id_dropout > 0 and self.training:
                return self._id_dropout_loss(h, targets, noise, compact)
            weight = self._weights(table)[1:self.num_items + 1]  # (N, d): padding and the mask are never candidates
            if compact:
                keep = targets > 0
                logits = h[keep] @ weight.T  # (P, N)
                if self.unseen is not None:
                    logits = logits.masked_fill(self.unseen, float("-inf"))
                return F.cross_entropy(logits, targets[keep] - 1)
            logits = h @ weight.T  # (B, T, N)
            if self.unseen is not None:
                logits = logits.masked_fill(self.unseen, float("-inf"))
            per_pos = F.cross_entropy(logits.flatten(0, 1), (targets - 1).clamp(min=0).flatten(), reduction="none")
            mask = (targets > 0).flatten().to(per_pos.dtype)
            return (per_pos * mask).sum() / mask.sum().clamp(min=1.0)
        u = noise.get("negatives") if noise else None
        return self._sampled_loss(h, targets, u, table)

    def _id_dropout_loss(self, h: torch.Tensor, targets: torch.Tensor, noise: dict | None,
                         compact: bool) -> torch.Tensor:
        """Full-softmax cross-entropy where each sequence's candidates keep their id part with probability
        ``1 - id_dropout`` (uniform noise ``noise["id_drop"]`` ``(B, N)``, else torch's) and are scored by their text
        alone otherwise: ``logit = h.text_n + keep_bn * h.id_n``."""
        n = self.num_items
        text = self.text_proj(self.item_text)[1:n + 1]  # (N, d)
        ids = self._id_rows()[1:n + 1]  # (N, d)
        u = noise.get("id_drop") if noise else None
        if u is None:
            u = torch.rand(h.shape[0], n, device=h.device)
        keep_id = (u >= self.cfg.id_dropout).to(h.dtype)  # (B, N)
        if compact:
            keep = targets > 0
            rows = keep.nonzero()[:, 0]  # the sequence of each kept position
            hp = h[keep]  # (P, d)
            logits = hp @ text.T + (hp @ ids.T) * keep_id[rows]  # (P, N)
            if self.unseen is not None:
                logits = logits.masked_fill(self.unseen, float("-inf"))
            return F.cross_entropy(logits, targets[keep] - 1)
        logits = h @ text.T + (h @ ids.T) * keep_id.unsqueeze(1)  # (B, T, N)
        if self.unseen is not None:
            logits = logits.masked_fill(self.unseen, float("-inf"))
        per_pos = F.cross_entropy(logits.flatten(0, 1), (targets - 1).clamp(min=0).flatten(), reduction="none")
        mask = (targets > 0).flatten().to(per_pos.dtype)
        return (per_pos * mask).sum() / mask.sum().clamp(min=1.0)

    def _sampled_loss(self, h: torch.Tensor, targets: torch.Tensor, u: torch.Tensor | None,
                      table: torch.Tensor | None = None) -> torch.Tensor:
        """BCE with one uniform negative per position (the paper), or softmax over the target and K negatives shared
        by one sequence's positions. ``u`` (uniform noise) picks the negatives; without it torch draws them."""
        mask = (targets > 0).to(h.dtype)  # (B, T)
        pos_logit = (h * self._embed(targets, table)).sum(-1)  # (B, T)
        B, T = targets.shape
        shape = (B, T) if self.cfg.loss == "bce" else (B, self.cfg.num_negatives)
        if u is None:
            u = torch.rand(shape, device=targets.device)
        neg = 1 + (u * self.num_items).long().clamp(max=self.num_items - 1)  # uniform over 1..num_items
        if self.cfg.loss == "bce":
            neg_logit = (h * self._embed(neg, table)).sum(-1)
            per_pos = F.softplus(-pos_logit) + F.softplus(neg_logit)
        else:
            neg_logit = h @ self._embed(neg, table).transpose(1, 2)  # (B, T, K)
            neg_logit = neg_logit.masked_fill(neg.unsqueeze(1) == targets.unsqueeze(-1), float("-inf"))
            logits = torch.cat([pos_logit.unsqueeze(-1), neg_logit], dim=-1)  # (B, T, 1 + K)
            per_pos = -logits.log_softmax(-1)[..., 0]
        return (per_pos * mask).sum() / mask.sum().clamp(min=1.0)

    def encode_sequence(self, batch: dict[str, torch.Tensor], compact: bool = False) -> torch.Tensor:
        noise = batch.get("noise")
        h = self.encode(batch["input_ids"], batch.get("users"), noise, by_length=self.bucketable(compact, noise))
        return h[:, -1, :]  # (B, d)

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        table = self.item_table()
        h = self.encode(batch["input_ids"], batch.get("users"), table=table)[:, -1, :]  # (B, d): after the latest item
        scores = h @ self._weights(table)[:self.num_items + 1].T  # (B, N + 1): the mask token is never scored
        scores[:, 0] = float("-inf")
        return scores
