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
from ffmrec.fm.causal_lm import CausalLMConfig
from ffmrec.models.sasrec import SASRec, SASRecConfig
from ffmrec.tasks.contrastive import ContrastiveConfig
from ffmrec.tasks.lm import LoRATextConfig
from ffmrec.train.trainer import TrainConfig


@dataclass(frozen=True)
class Method:
    """What a method name stands for."""

    name: str
    setting: str  # "centralized" or "federated"
    model_config: type
    task_config: type | None
    build_task: Callable  # (config, dataset, split, clients=None) -> ClientTask
    help: str = ""
    #: Centralized methods whose loss is not the model's own: ``(config, model, split) -> (objective, make_batches)``,
    #: the trainer's arguments of the same names; None trains ``model.calculate_loss`` on ``iterate_batches``.
    centralized_objective: Callable | None = None


def _sasrec(config, dataset, num_users: int) -> SASRec:
    return SASRec(config.model, dataset.num_items, num_users)


def build_sequential_task(config, dataset, split, clients: np.ndarray | None = None):
    from ffmrec.tasks.sequential import SequentialTask

    return SequentialTask(split, lambda num_users: _sasrec(config, dataset, num_users), seed=config.seed,
                          mask_history=config.eval.mask_history, ks=config.eval.ks, clients=clients)


def build_contrastive_task(config, dataset, split, clients: np.ndarray | None = None):
    from ffmrec.tasks.contrastive import CL4SRecTask

    return CL4SRecTask(split, lambda num_users: _sasrec(config, dataset, num_users), seed=config.seed,
                       cfg=config.task, mask_history=config.eval.mask_history, ks=config.eval.ks, clients=clients)


def contrastive_objective(config, model, split):
    """CL4SRec's centralized ``(objective, make_batches)``: in-batch negatives across users."""
    from ffmrec.tasks.contrastive import CL4SRecObjective, check_mask_token, contrastive_batches

    make_batches = contrastive_batches(split.train_sequences(), model.max_len, config.train.batch_size, config.task,
                                       check_mask_token(model, config.task), config.seed)
    return CL4SRecObjective(model, config.task, in_batch_negatives=True), make_batches


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

    def __post_init__(self) -> None:
        from ffmrec.config import from_dict

        method = resolve_method(self.method)
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
    task, which holds the users ``u % n == i`` only."""
    if dataset is None:
        from ffmrec.data import load_dataset
        from ffmrec.eval.protocol import LeaveOneOut

        dataset = load_dataset(config.dataset, options=config.data)
        split = LeaveOneOut(dataset.sequences())
    clients = None if partition is None else np.arange(partition[0], dataset.num_users, partition[1])
    return resolve_method(config.method).build_task(config, dataset, split, clients)
