"""The edge: a method name resolves to its setting, its model and its client task (PyKEEN-style resolver, one place).

``RunConfig`` is the whole config of a run; its ``model`` section is the chosen model's config dataclass and its
``task`` section the chosen task's (``None`` for tasks without settings). :func:`config_class` gives the typed
``RunConfig`` of a method, so recipe files, ``--set`` overrides and the Flower apps all validate the same keys.

Everything below this module receives built objects (a model, a task); only this module and ``pipeline.py`` know
method names. Flower processes reach :func:`build_federated_task` through the run config's ``task-factory`` string.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ffmrec.data.preprocess import DataOptions
from ffmrec.errors import ConfigError
from ffmrec.eval.ranking import EvalConfig
from ffmrec.federated.config import FederatedConfig
from ffmrec.fm.catalog_policy import CatalogPolicyConfig
from ffmrec.fm.causal_lm import CausalLMConfig
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.privacy.adversarial import PrivacyConfig
from ffmrec.tasks.contrastive import ContrastiveConfig
from ffmrec.tasks.kto import KTOTaskConfig, build_kto_task, load_redial_run
from ffmrec.tasks.lm import LoRATextConfig
from ffmrec.tasks.lumos import (
    LUMOSConfig,
    LUMOSNoCounterfactualConfig,
    LUMOSNoFutureConfig,
    LUMOSNoParaphraseConfig,
)
from ffmrec.train.local_only import LocalOnlyConfig
from ffmrec.train.trainer import TrainConfig


@dataclass(frozen=True)
class Method:
    """What a method name stands for."""

    name: str
    setting: str  # "centralized", "federated" or "local" (a model per user, nothing shared)
    model_config: type
    task_config: type | None
    build_task: Callable  # (config, dataset, split, clients=None) -> ClientTask
    help: str = ""
    #: Centralized methods whose loss is not the model's own: ``(config, model, split) -> (objective, make_batches)``,
    #: the trainer's arguments of the same names; None trains ``model.calculate_loss`` on ``iterate_batches``.
    centralized_objective: Callable | None = None
    #: Methods that read their own data (not an interactions dataset): ``config -> (dataset, split)``, e.g. fedtrek's
    #: ReDial conversations; None loads ``config.dataset`` with a leave-one-out split.
    load_data: Callable | None = None
    #: The method reads item text whatever ``model.item_repr`` says (e.g. LUMOS's views); checked before a run writes.
    needs_item_text: bool = False


def _text_table(config, dataset):
    """The items' MiniLM text embeddings (cached per dataset and model) when the model reads item text, else None."""
    if getattr(config.model, "item_repr", "id") == "id":
        return None
    from ffmrec.fm.text import dataset_text_table, require_item_text

    require_item_text(dataset, f"model.item_repr={config.model.item_repr!r}")
    task = config.task if isinstance(config.task, LUMOSConfig) else LUMOSConfig()
    return dataset_text_table(dataset, task.text_model, task.text_dtype)


def _sasrec(config, dataset, num_users: int, item_text=None, split=None) -> SASRec:
    unseen = getattr(split, "cold", None)  # cold-items protocol: held-out items are no training candidates
    return SASRec(config.model, dataset.num_items, num_users, item_text, unseen)


def build_sequential_task(config, dataset, split, clients: np.ndarray | None = None):
    from ffmrec.tasks.sequential import SequentialTask

    text = _text_table(config, dataset)
    return SequentialTask(split, lambda num_users: _sasrec(config, dataset, num_users, text, split), seed=config.seed,
                          mask_history=config.eval.mask_history, ks=config.eval.ks, clients=clients)


def build_contrastive_task(config, dataset, split, clients: np.ndarray | None = None):
    from ffmrec.tasks.contrastive import CL4SRecTask

    text = _text_table(config, dataset)
    return CL4SRecTask(split, lambda num_users: _sasrec(config, dataset, num_users, text, split), seed=config.seed,
                       cfg=config.task, mask_history=config.eval.mask_history, ks=config.eval.ks, clients=clients)


def contrastive_objective(config, model, split):
    """CL4SRec's centralized ``(objective, make_batches)``: in-batch negatives across users."""
    from ffmrec.tasks.contrastive import CL4SRecObjective, check_mask_token, contrastive_batches

    make_batches = contrastive_batches(split.train_sequences(), model.max_len, config.train.batch_size, config.task,
                                       check_mask_token(model, config.task), config.seed)
    return CL4SRecObjective(model, config.task, in_batch_negatives=True), make_batches


def build_lumos_task(config, dataset, split, clients: np.ndarray | None = None):
    """LUMOS: the public item knowledge (MiniLM embeddings and their exact neighbours, once per dataset) and the
    chosen view generator, handed to every client's task."""
    from ffmrec.fm.views import build_view_generator
    from ffmrec.tasks.lumos import LUMOSTask

    text = _text_table(config, dataset) if config.model.item_repr != "id" else None
    generator = build_view_generator(config.task, dataset, config.seed, getattr(split, "cold", None))
    return LUMOSTask(split, lambda num_users: _sasrec(config, dataset, num_users, text, split), seed=config.seed,
                     cfg=config.task, generator=generator, mask_history=config.eval.mask_history, ks=config.eval.ks,
                     clients=clients)


def build_lm_task(config, dataset, split, clients: np.ndarray | None = None):
    from ffmrec.tasks.lm import LoRATextTask

    if dataset.item_text is None:
        raise ConfigError(f"method={config.method!r} trains on item texts, but dataset {dataset.name!r} has none: "
                          "choose a dataset with item text (e.g. beauty with its item_text.jsonl, ml-1m).")
    return LoRATextTask(split, dataset.item_text, config.model, config.task, seed=config.seed, clients=clients)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


register(Method("sasrec", "centralized", SASRecConfig, None, build_sequential_task,
                "SASRec trained centrally with full-catalogue cross-entropy."))
register(Method("fedsasrec", "federated", SASRecConfig, None, build_sequential_task,
                "FedSASRec: one client per user, shared SASRec, personal user vector."))
register(Method("cl4srec", "centralized", SASRecConfig, ContrastiveConfig, build_contrastive_task,
                "CL4SRec: SASRec + lambda * InfoNCE over augmented views (crop/mask/reorder), in-batch negatives.",
                centralized_objective=contrastive_objective))
register(Method("fedcl4srec", "federated", SASRecConfig, ContrastiveConfig, build_contrastive_task,
                "Federated CL4SRec: each client adds InfoNCE over its own augmented view pairs to FedSASRec."))
register(Method("fedlm", "federated", CausalLMConfig, LoRATextConfig, build_lm_task,
                "Federated LoRA fine-tuning of a small causal LM on each user's item titles (stateful trainer, PEFT)."))
register(Method("fedtrek", "federated", CatalogPolicyConfig, KTOTaskConfig, build_kto_task,
                "FedTREK-LM: KTO on PKG-grounded ReDial recommendations, LoRA adapters of a MiniLM catalog policy "
                "averaged across seekers (leak-free prompts).", load_data=load_redial_run))
register(Method("lumos", "federated", SASRecConfig, LUMOSConfig, build_lumos_task,
                "LUMOS: FedSASRec + a tri-view InfoNCE over foundation-model views (future, paraphrase, "
                "counterfactual) each device writes of its own history.", needs_item_text=True))
register(Method("lumos-no-future", "federated", SASRecConfig, LUMOSNoFutureConfig, build_lumos_task,
                "LUMOS ablation: no future-continuation view.", needs_item_text=True))
register(Method("lumos-no-paraphrase", "federated", SASRecConfig, LUMOSNoParaphraseConfig, build_lumos_task,
                "LUMOS ablation: no paraphrase view.", needs_item_text=True))
register(Method("lumos-no-counterfactual", "federated", SASRecConfig, LUMOSNoCounterfactualConfig, build_lumos_task,
                "LUMOS ablation: no counterfactual view.", needs_item_text=True))
register(Method("local-sasrec", "local", SASRecConfig, LocalOnlyConfig, build_sequential_task,
                "Local-only SASRec (no federation): each user trains their own SASRec from the same initialisation on "
                "their own history; local epochs and lr chosen on validation NDCG@10."))


def resolve_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method={name!r} is unknown: use one of {', '.join(METHODS)}.")
    return METHODS[name]


@dataclass
class RunConfig:
    """Everything one run needs; a recipe file is just these fields."""

    method: str = field(default="sasrec", metadata={"help": "The method (see 'ffmrec recipes'): it fixes the model and the client task, and whether training is centralized or federated."})
    dataset: str = field(default="beauty", metadata={"help": "A dataset name from 'ffmrec datasets', or a path to an interactions CSV/Parquet file."})
    seed: int = field(default=42, metadata={"help": "Seed of every random draw in the run."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (null = torch's default)."})
    data: DataOptions = field(default_factory=DataOptions, metadata={"help": "Filtering of the raw interactions."})
    model: Any = field(default=None, metadata={"help": "The model's config (its dataclass depends on the method)."})
    task: Any = field(default=None, metadata={"help": "The client task's config (its dataclass depends on the method)."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Centralized training."})
    federated: FederatedConfig = field(default_factory=FederatedConfig, metadata={"help": "Federated training."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "The evaluation protocol."})
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig, metadata={"help": "On-device privacy objectives (federated methods)."})

    def __post_init__(self) -> None:
        from ffmrec.config import from_dict

        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads={self.threads!r} must be a whole number >= 1 (e.g. threads=1), or null for torch's default.")
        method = resolve_method(self.method)
        if self.privacy.adversarial_weight > 0 and method.setting != "federated":
            raise ConfigError(f"privacy.adversarial_weight={self.privacy.adversarial_weight} is an on-device objective "
                              f"of federated methods, and method={self.method!r} is {method.setting}: use a federated "
                              "method (e.g. fedsasrec) or set privacy.adversarial_weight=0.")
        if self.model is None or isinstance(self.model, dict):
            self.model = from_dict(method.model_config, self.model or {}, prefix="model.")
        elif not isinstance(self.model, method.model_config):
            raise ConfigError(f"method={self.method!r} needs model to be a {method.model_config.__name__}.")
        if method.task_config is None:
            if self.task not in (None, {}):
                raise ConfigError(f"method={self.method!r} has no task settings: remove the 'task' section.")
            self.task = None
        elif self.task is None or isinstance(self.task, dict):
            self.task = from_dict(method.task_config, self.task or {}, prefix="task.")

    @property
    def setting(self) -> str:
        return resolve_method(self.method).setting


@functools.cache
def config_class(method_name: str) -> type:
    """``RunConfig`` with ``model`` and ``task`` typed by the method's config dataclasses."""
    method = resolve_method(method_name)
    fields = [("model", method.model_config, field(default_factory=method.model_config,
                                                   metadata={"help": "The model's config."}))]
    if method.task_config is not None:
        fields.append(("task", method.task_config, field(default_factory=method.task_config,
                                                         metadata={"help": "The client task's config."})))
    cls = dataclasses.make_dataclass(f"RunConfig_{method_name.replace('-', '_')}", fields, bases=(RunConfig,))
    cls.__module__ = __name__
    return cls


def config_from_flat(flat: dict):
    """The Flower run config's resolver (``method-resolver``): ``(config, build_task(config, clients))``."""
    import yaml

    config = flat.get("ffmrec-config-object")
    if config is None:
        data = yaml.safe_load(flat["ffmrec-config"])
        config = from_dict_run_config(data)
    return config, lambda cfg, partition: build_federated_task(cfg, partition=partition)


def from_dict_run_config(data: dict):
    """A typed run config from a plain dict (e.g. a run folder's config.yaml)."""
    from ffmrec.config import from_dict

    return from_dict(config_class(str(data.get("method", "sasrec"))), data)


def build_federated_task(config, dataset=None, split=None, partition: tuple[int, int] | None = None):
    """The client task of a federated run (loads the dataset unless given); with ``partition=(i, n)`` a SuperNode's
    task, which holds the users ``u % n == i`` only. ``federated.noise`` corrupts the training histories and
    ``federated.adversary`` wraps the task with malicious clients (:mod:`ffmrec.federated.adversary`)."""
    if dataset is None and resolve_method(config.method).load_data is not None:
        dataset, split = resolve_method(config.method).load_data(config)
    elif dataset is None:
        from ffmrec.data import load_dataset
        from ffmrec.eval.cold import make_split

        dataset = load_dataset(config.dataset, options=config.data)
        split = make_split(dataset.sequences(), dataset.num_items, config.eval, config.seed)
    clients = None if partition is None else np.arange(partition[0], split.num_users, partition[1])  # cold-items drops users
    if resolve_method(config.method).load_data is not None:  # its own data: no interaction sequences to corrupt
        return resolve_method(config.method).build_task(config, dataset, split, clients)
    from ffmrec.federated.adversary import build_adversary, noisy_sequences
    from ffmrec.privacy.adversarial import build_trait_adversary

    fed = config.federated
    if fed.noise.p > 0:  # noisy histories: a transform of the data, identical in every process
        from ffmrec.eval.protocol import LeaveOneOut

        split = LeaveOneOut(noisy_sequences(split.sequences, fed.noise.p, dataset.num_items, config.seed))
    task = resolve_method(config.method).build_task(config, dataset, split, clients)
    task = build_trait_adversary(task, config.privacy, dataset)  # privacy.adversarial_weight: the trait stays on-device
    return build_adversary(task, fed.adversary, split.sequences, dataset.num_items, config.seed)
