"""Federated LoRA fine-tuning of a causal LM on users' item texts (``fedlm``): the stateful-trainer seam.

One client per user of a leave-one-out split. A client's private data are short text records made of the titles of its
training-history items, ``"user liked: <title>"``, each preceded by the ``context_records`` records before it (one line
each). Each round it samples ``records_per_client`` of them with its own generator (``prepare``), loads the shared LoRA
adapters into its Hugging Face + PEFT model and trains ``local_steps`` full-batch steps of next-token cross-entropy with
a plain torch optimizer (:meth:`LoRATextTask.train_stateful`); it sends the change of the adapter tensors only. The base
model is frozen and identical everywhere (built from the config and the run's seed), so it never travels.

Evaluation is set-based and runs where the data lives: the prompt is the user's last ``context_records`` records and
``"user liked: "``; the model's top-K next tokens are compared with the set of tokens of the held-out item's title
(validation: the second-to-last item, test: the last). Per-client columns (hits among the top K, predictions owed,
relevant tokens, reciprocal rank of the first relevant token) become micro precision/recall/F1 over the top K, MRR
and Hits@K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ffmrec.errors import ConfigError
from ffmrec.eval.metrics import hits_at_k, micro_precision_recall_f1
from ffmrec.eval.protocol import LeaveOneOut
from ffmrec.fm.causal_lm import (
    CausalLMConfig,
    adapter_names,
    build_lora_model,
    build_tokenizer,
    get_adapter_state,
    set_adapter_state,
    train_adapters,
)
from ffmrec.tasks.base import ClientTask, Params, client_generator, client_seed

TEXT_FIELDS = ("title", "full")


@dataclass
class LoRATextConfig:
    """What a ``fedlm`` client trains on and how it is scored."""

    records_per_client: int = field(default=8, metadata={"help": "Text records a client samples from its training history each round (its weight); all of them when it has fewer."})
    context_records: int = field(default=1, metadata={"help": "Earlier records (one line each) that precede every training record and the evaluation prompt."})
    max_tokens: int = field(default=96, metadata={"help": "Longest token sequence of a record or prompt; longer ones keep their last max_tokens tokens."})
    k: int = field(default=10, metadata={"help": "Cut-off K: the model's top-K next tokens are the predicted set (Precision, Recall, F1, Hits@K)."})
    text: str = field(default="title", metadata={"help": "'title' (the item text before ' | ') or 'full' (the whole item text, e.g. 'Title | Category, Category')."})
    prefix: str = field(default="user liked: ", metadata={"help": "Text before each item title in a record and at the end of the evaluation prompt."})
    eval_batch_size: int = field(default=64, metadata={"help": "Prompts scored together in evaluation."})

    def __post_init__(self) -> None:
        for name in ("records_per_client", "max_tokens", "k", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"task.{name}={getattr(self, name)} must be a positive integer.")
        if self.context_records < 0:
            raise ConfigError(f"task.context_records={self.context_records} must be >= 0 (0 = records stand alone).")
        if self.text not in TEXT_FIELDS:
            raise ConfigError(f"task.text={self.text!r} is unknown: use 'title' or 'full'.")


def item_title(text: str, which: str = "title") -> str:
    """The part of an item text a record uses: the title (before ``' | '``) or the whole text."""
    text = str(text or "")
    return text.split(" | ", 1)[0].strip() if which == "title" else text.strip()


class LoRATextTask(ClientTask):
    """Next-title language modelling with shared LoRA adapters (see the module docstring).

    :param split: every user's item sequence; a client only reads its own.
    :param item_text: ``(num_items + 1,)`` texts indexed by dense item id (``dataset.item_text``).
    :param model: the base model and its adapters.
    :param config: the records and the evaluation cut-off.
    :param clients: the users this process serves (a SuperNode's partition); default all.
    """

    trainer = "stateful"
    metric_kind = "set"

    def __init__(self, split: LeaveOneOut, item_text: Sequence[str], model: CausalLMConfig, config: LoRATextConfig,
                 seed: int, clients: np.ndarray | None = None):
        self.split = split
        self.config = config
        self.seed = seed
        self.titles = [item_title(t, config.text) for t in item_text]  # index = dense item id; "" = no text
        self.tokenizer = build_tokenizer(model)
        self.model = build_lora_model(model, seed)  # one device's model; the base is frozen by PEFT
        vocab = self.model.get_input_embeddings().num_embeddings
        if self.tokenizer.vocab_size > vocab:
            raise ConfigError(f"the tokenizer has {self.tokenizer.vocab_size} ids but the model's vocabulary "
                              f"{vocab}: raise model.vocab_size to at least {self.tokenizer.vocab_size}.")
        positions = getattr(self.model.config, "max_position_embeddings", None)  # GPT-2 maps it to n_positions
        if positions is not None and config.max_tokens > positions:
            raise ConfigError(f"task.max_tokens={config.max_tokens} exceeds the model's {positions} positions: "
                              f"lower task.max_tokens or raise model.max_positions.")
        special = set(self.tokenizer.special_ids)
        self.candidates = torch.tensor([i for i in range(self.tokenizer.vocab_size) if i not in special])  # (V',)
        self.candidate_index = torch.full((self.tokenizer.vocab_size,), -1, dtype=torch.long)  # token id -> column
        self.candidate_index[self.candidates] = torch.arange(len(self.candidates))
        if config.k > len(self.candidates):
            raise ConfigError(f"task.k={config.k} exceeds the {len(self.candidates)} predictable tokens: lower task.k.")
        served = range(split.num_users) if clients is None else clients
        # the positions of a user's training history whose item has text: the items its records are made of
        self.histories = {int(u): [int(i) for i in split.train_sequence(int(u)) if self.titles[int(i)]] for u in served}
        self.shared_names = adapter_names(self.model)
        if not self.shared_names or any("lora_" not in name for name in self.shared_names):
            raise ConfigError(f"the adapters of model.lora_target_modules={list(model.target_modules)} are "
                              f"{self.shared_names[:3]}: name modules of the model that LoRA can wrap.")
        self._initial = get_adapter_state(self.model)

    # --- the population -----------------------------------------------------------------------------------------
    @property
    def num_clients(self) -> int:
        return self.split.num_users

    def weight(self, client: int) -> int:
        return min(self.config.records_per_client, len(self.histories[client]))

    @property
    def max_weight(self) -> int:
        return self.config.records_per_client

    # --- parameters ---------------------------------------------------------------------------------------------
    def initial_shared(self) -> Params:
        return {k: v.clone() for k, v in self._initial.items()}

    # --- text -> tokens -----------------------------------------------------------------------------------------
    def _lines(self, items: Sequence[int]) -> list[str]:
        return [self.config.prefix + self.titles[i] for i in items]

    def _tokens(self, text: str, eos: bool) -> list[int]:
        tok = self.tokenizer
        ids = [tok.bos_id, *tok.encode(text), *([tok.eos_id] if eos else [])]
        return ids[-self.config.max_tokens:]

    def _pad(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids`` and ``attention_mask``, each ``(N, T)``."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.as_tensor(r)
            mask[i, :len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    # --- on the device ------------------------------------------------------------------------------------------
    def prepare(self, client: int, server_round: int) -> dict:
        """This round's records: ``records_per_client`` of the client's history positions (sampled with its own
        generator when it has more), each the item's line after up to ``context_records`` earlier lines."""
        items = self.histories[client]
        chosen = range(len(items))
        if len(items) > self.config.records_per_client:
            g = client_generator(self.seed, server_round, client)
            chosen = sorted(torch.randperm(len(items), generator=g)[:self.config.records_per_client].tolist())
        c = self.config.context_records
        rows = [self._tokens("\n".join(self._lines(items[max(0, j - c):j + 1])), eos=True) for j in chosen]
        return self._pad(rows)

    def train_stateful(self, client: int, server_round: int, shared: Params, personal: Params,
                       cfg) -> tuple[Params, Params, float]:
        """``cfg.local_steps`` full-batch steps of next-token cross-entropy on the client's records with a fresh
        ``torch.optim.SGD`` or ``Adam`` (``cfg.optimizer``, ``cfg.lr``; FedProx's ``cfg.proximal_mu`` term on the
        adapters); returns ``(adapter delta, {}, loss at the first step)``. Dropout draws come from the client's own
        ``(seed, round, client)`` seed; torch's global generator is left as it was."""
        batch = self.prepare(client, server_round)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # no loss on padding
        set_adapter_state(self.model, shared)
        self.model.train()
        delta, first_loss = train_adapters(
            self.model, shared, lambda: self.model(**batch, labels=labels).loss, cfg,
            client_seed(self.seed, server_round, client, "train"))
        return delta, {}, first_loss

    def private_arrays(self, client: int, server_round: int) -> dict[str, torch.Tensor]:
        out = super().private_arrays(client, server_round)
        out["history"] = torch.as_tensor(self.split.train_sequence(client))
        return out

    # --- evaluation where the data lives ------------------------------------------------------------------------
    def _prompt_and_target(self, stage: str, client: int) -> tuple[list[int], set[int]]:
        history, target = self.split.history_and_target(stage, client)
        with_text = [int(i) for i in history if self.titles[int(i)]]
        c = self.config.context_records
        context = with_text[max(0, len(with_text) - c):]
        prompt = self._tokens("\n".join([*self._lines(context), self.config.prefix]), eos=False)
        relevant = set(self.tokenizer.encode(self.titles[target])) - set(self.tokenizer.special_ids)
        return prompt, relevant

    @torch.no_grad()
    def evaluate(self, stage: str, shared: Params, personal: Params, clients: np.ndarray) -> dict[str, np.ndarray]:
        clients = np.asarray(clients, dtype=np.int64)
        k = self.config.k
        model = self.model
        set_adapter_state(model, shared)
        model.eval()
        cols: dict[str, list] = {"hits": [], "predicted": [], "relevant": [], "rr": [], "hit": []}
        for start in range(0, len(clients), self.config.eval_batch_size):
            pairs = [self._prompt_and_target(stage, int(c)) for c in clients[start:start + self.config.eval_batch_size]]
            batch = self._pad([p for p, _ in pairs])
            logits = model(**batch).logits  # (B, T, V)
            last = batch["attention_mask"].sum(1) - 1  # (B,) the prompt's last token
            scores = logits[torch.arange(len(pairs)), last][:, self.candidates]  # (B, V')
            order = scores.argsort(dim=1, descending=True, stable=True)  # (B, V') candidate indices, best first
            rank = torch.empty_like(order).scatter_(1, order, torch.arange(1, order.shape[1] + 1).expand_as(order))
            for b, (_, relevant) in enumerate(pairs):
                top = self.candidates[order[b, :k]].tolist()
                where = self.candidate_index[sorted(relevant)] if relevant else torch.zeros(0, dtype=torch.long)
                cols["hits"].append(sum(t in relevant for t in top))
                cols["predicted"].append(k)
                cols["relevant"].append(len(relevant))
                cols["rr"].append(1.0 / float(rank[b, where].min()) if len(where) else 0.0)
                cols["hit"].append(hits_at_k(top, relevant, k))
        if not len(clients):
            return self.failed_columns(0)
        return {k: np.asarray(v, dtype=np.float64 if k in ("rr", "hit") else np.int64) for k, v in cols.items()}

    def summarize(self, columns: dict[str, np.ndarray]) -> dict[str, float]:
        """Micro ``Precision``/``Recall``/``F1`` of the top-K token sets, ``MRR`` of the first relevant token and
        ``Hits@K`` (the share of clients with a relevant token in their top K)."""
        p, r, f1 = micro_precision_recall_f1(columns["hits"], columns["predicted"], columns["relevant"])
        n = len(columns["rr"])
        return {"Precision": p, "Recall": r, "F1": f1,
                "MRR": float(np.mean(columns["rr"])) if n else 0.0,
                f"Hits@{self.config.k}": float(np.mean(columns["hit"])) if n else 0.0}

    def failed_columns(self, num: int) -> dict[str, np.ndarray]:
        """A failed client scores 0: it owes K predictions and counts one relevant token (its set is unknown)."""
        return {"hits": np.zeros(num, np.int64), "predicted": np.full(num, self.config.k, np.int64),
                "relevant": np.ones(num, np.int64), "rr": np.zeros(num), "hit": np.zeros(num)}
