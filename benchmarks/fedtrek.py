"""FedTREK-LM on the staged ReDial data: a table like the paper's Table 2, under our leak-free protocol and the
reference protocol, with the paper's numbers beside ours.

Rows (dataset ``redial``): ``popularity`` (most-recommended desirable movies of the training data), ``catalog-base``
(zero-shot MiniLM, the adapters disabled; with the recipe's popularity prior, prompt centering and mention anchor,
which the fine-tuned policies keep), ``catalog`` fine-tuned with KTO ``federated`` (the fedtrek recipe through the
core's driver loop and fast engine: 4 clients per round, adapters averaged as products B·A), ``centralized``
(pooled Adam steps) and ``local`` (each seeker trains its own adapters on its own data only). Every trained model is
scored on the same test queries under ``leak-free`` prompts and under the ``reference`` protocol's leaky prompts (the
end-of-conversation PKG), so the inflation is measured. P/R/F1 use the output size chosen on validation queries.
With ``task.exclude_known`` (the recipe's), no method, baselines included, recommends a movie of the user's PKG from
before the query's turn.
Also: the payload per round (the core's byte counter; Qwen3-0.6B/1.7B/4B LoRA shapes from meta-device adapters),
seconds per round and the peak memory.

    python benchmarks/fedtrek.py --rounds 30 --eval-users 100 [--skip kge local ...] [--results fedtrek_redial]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, write_results  # noqa: E402

from ffmrec.data.redial_examples import load_redial_users  # noqa: E402
from ffmrec.federated.client import ClientConfig  # noqa: E402
from ffmrec.federated.engines.fast import FastSimulator  # noqa: E402
from ffmrec.federated.observers import ByteCounter  # noqa: E402
from ffmrec.federated.server import run_server  # noqa: E402
from ffmrec.federated.strategies import build_strategy  # noqa: E402
from ffmrec.fm.causal_lm import get_adapter_state, set_adapter_state  # noqa: E402
from ffmrec.fm.payload import lora_payload  # noqa: E402
from ffmrec.recipes import load_recipe  # noqa: E402
from ffmrec.tasks.kto import (  # noqa: E402
    KTOTask,
    RedialUsers,
    build_kto_task,
    choose_set_size,
    load_redial_run,
    popularity_ranking,
    train_pooled,
)

PAPER = {  # arXiv 2603.13264, Table 2 (Qwen3-4B, their leaky protocol)
    "federated": {"precision": 0.238, "recall": 0.251, "F1": 0.244, "MRR": 0.284, "Hits@1": 0.280, "Hits@3": 0.290,
                  "Hits@10": 0.290},
    "centralized": {"precision": 0.149, "recall": 0.301, "F1": 0.199, "MRR": 0.247, "Hits@1": 0.192, "Hits@3": 0.299,
                    "Hits@10": 0.321},
    "local": {"precision": 0.015, "recall": 0.068, "F1": 0.025, "MRR": 0.069, "Hits@1": 0.056, "Hits@3": 0.081,
              "Hits@10": 0.081},
}


def keep_queries(data: RedialUsers, chosen: set[int]) -> RedialUsers:
    """The same users and training data; validation and test queries only for the ``chosen`` clients."""
    users = [u if c in chosen else replace(u, valid=[], test=[]) for c, u in enumerate(data.users)]
    return RedialUsers(data.name, data.catalog, users)


def scores(task: KTOTask, shared, clients, ref_task: KTOTask | None = None, personal_states=None) -> dict:
    """Test metrics (and the chosen output size) of adapters ``shared`` (or one state per client), under both
    protocols."""
    def cols(t, stage):
        if personal_states is None:
            return t.evaluate(stage, shared, {}, clients)
        parts = [t.evaluate(stage, personal_states[int(c)], {}, np.array([c])) for c in clients]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    n = choose_set_size(task, cols(task, "valid"))
    out = {"leak-free": task.summarize(cols(task, "test"), n), "set_size": n}
    if ref_task is not None:
        out["reference"] = ref_task.summarize(cols(ref_task, "test"), n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--eval-users", type=int, default=100, help="seekers whose test queries are scored (seeded)")
    parser.add_argument("--local-rounds", type=int, default=2, help="rounds of local-only training per seeker")
    parser.add_argument("--centralized-steps", type=int, default=30)
    parser.add_argument("--kge-epochs", type=int, default=None,
                        help="centralized KGE epochs (default: each model's, chosen on validation: kge.CONFIGS)")
    for flag in ("rounds", "clients-per-round", "local-epochs", "user-refit-epochs"):
        parser.add_argument(f"--kge-{flag}", type=int, default=None,
                            help="federated KGE (default: train_kge_federated's, chosen on validation)")
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides key=value")
    parser.add_argument("--skip", nargs="*", default=[], help="parts to skip: federated kge centralized local")
    parser.add_argument("--results", default="fedtrek_redial", help="name of the results file (variants elsewhere)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_recipe("fedtrek", overrides=[f"federated.rounds={args.rounds}",
                                               f"federated.eval_every={args.rounds}", *args.set])
    ref_config = load_recipe("fedtrek", overrides=["task.protocol=reference", *args.set])
    full, _ = load_redial_run(config)
    tested = [c for c, u in enumerate(full.users) if u.test]
    chosen = set(np.random.default_rng((config.seed, 0xE7)).choice(tested, min(args.eval_users, len(tested)),
                                                                   replace=False).tolist())
    data = keep_queries(full, chosen)
    task = build_kto_task(config, data)
    catalog, ref_users = load_redial_users(Path(config.dataset) if Path(config.dataset).is_dir() else
                                           __import__("ffmrec.data", fromlist=["x"]).data_dir_or_default() / "redial",
                                           ref_config.task, config.seed)
    ref_data = keep_queries(RedialUsers("redial", catalog, ref_users), chosen)
    assert [u.user_id for u in ref_data.users] == [u.user_id for u in data.users]
    ref_task = KTOTask(ref_data.users, catalog, task.policy, ref_config.task, config.seed)
    clients = np.array(sorted(chosen))
    base_state = task.initial_shared()
    rows = []
    info = {"users": data.num_users, "eval_users": len(chosen), **data.stats(), "rounds": args.rounds,
            "clients_per_round": config.federated.clients_per_round, "strategy": config.federated.strategy,
            "max_tokens": config.task.max_tokens}

    def row(method, setting, result, extra=None):
        for protocol in ("leak-free", "reference"):
            if protocol in result:
                rows.append({"dataset": "redial", "method": method, "setting": setting, "protocol": protocol,
                             "metrics": result[protocol], "set_size": result["set_size"], **(extra or {}),
                             "paper": PAPER.get(setting) if method == "catalog" else None, "config": info})
        print(method, setting, json.dumps({k: v for k, v in result.items()}), flush=True)
        write_results(args.results, rows)  # after every row: a long run keeps what it measured

    # popularity (no prompt: identical under both protocols)
    ranking = popularity_ranking(data.users, catalog)
    n = choose_set_size(task, task.ranker_columns("valid", clients, ranking))
    pop = task.summarize(task.ranker_columns("test", clients, ranking), n)
    row("popularity", "centralized", {"leak-free": pop, "reference": pop, "set_size": n})
    t0 = time.perf_counter()
    row("catalog-base", "centralized", scores(task, base_state, clients, ref_task),
        {"seconds_eval": time.perf_counter() - t0})

    cfg = config.federated.client
    if "federated" not in args.skip:
        out = Path(tempfile.mkdtemp(prefix="fedtrek-"))
        counter = ByteCounter()
        t0 = time.perf_counter()
        engine = FastSimulator(task, chunk_size=config.federated.chunk_size)
        # the driver validates every federated.eval_every rounds (default: the last only; each costs a pass over the
        # chosen seekers' validation queries) and keeps the best round's adapters
        result = run_server(task, engine, build_strategy(config.federated), config.federated, out, config.seed,
                            [counter], progress=False)
        history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
        up = [h.get("bytes_up", 0) / max(h["ok"], 1) for h in history]
        down = [h.get("bytes_down", 0) / max(h["clients"], 1) for h in history]
        state = torch.load(out / "server.pt", weights_only=False)["best_params"]
        shutil.rmtree(out, ignore_errors=True)  # the run folder is scratch: its figures are in the results file
        fed = scores(task, state, clients, ref_task)
        row("catalog", "federated", fed, {
            "seconds_per_round": result.seconds_per_round, "payload_bytes_up_per_client": float(np.mean(up)),
            "payload_bytes_down_per_client": float(np.mean(down)), "failed_clients": result.failures,
            "train_seconds": time.perf_counter() - t0})
    if "local" not in args.skip:
        t0 = time.perf_counter()
        states = {}
        for c in clients:  # each seeker alone: its own adapters, its own data, never averaged
            state = dict(base_state)
            for rnd in range(1, args.local_rounds + 1):
                if task.weight(int(c)) == 0:
                    break
                delta, _, _ = task.train_stateful(int(c), rnd, state, {}, cfg)
                state = {k: state[k] + delta[k] for k in state}
            states[int(c)] = state
        row("catalog", "local", scores(task, None, clients, ref_task, states),
            {"train_seconds": time.perf_counter() - t0, "rounds": args.local_rounds})

    if "kge" not in args.skip:  # PyKEEN baselines on the same users' training PKGs plus the movie KG
        from dataclasses import asdict

        from ffmrec.pkg.kge import (
            CONFIGS,
            MODELS,
            FederatedKGEConfig,
            kg_triples,
            kge_rankings,
            preference_triples,
            train_kge,
            train_kge_federated,
        )

        triples = preference_triples(data.users) + kg_triples(catalog)
        given = {"rounds": args.kge_rounds, "clients_per_round": args.kge_clients_per_round,
                 "local_epochs": args.kge_local_epochs, "user_refit_epochs": args.kge_user_refit_epochs}
        fed_kge = FederatedKGEConfig(**{k: v for k, v in given.items() if v is not None})
        for name in MODELS:  # each in its configuration chosen on validation queries (ffmrec.pkg.kge docstring)
            kge = CONFIGS[name] if args.kge_epochs is None else replace(CONFIGS[name], epochs=args.kge_epochs)
            for setting in ("centralized", "federated"):
                t0 = time.perf_counter()
                if setting == "centralized":
                    model, factory = train_kge(name, triples, kge, seed=config.seed)
                    extra = {"epochs": kge.epochs}
                else:
                    model, factory = train_kge_federated(name, data.users, catalog, fed_kge, kge, seed=config.seed)
                    extra = asdict(fed_kge)
                seconds = time.perf_counter() - t0
                ranks = kge_rankings(model, factory, data.users, catalog)
                n = choose_set_size(task, task.ranker_columns("valid", clients, ranks))
                res = task.summarize(task.ranker_columns("test", clients, ranks), n)
                row(name.lower(), setting, {"leak-free": res, "reference": res, "set_size": n},
                    {"train_seconds": seconds, "kge": {**asdict(kge), **extra}})
    if "centralized" not in args.skip:
        t0 = time.perf_counter()
        state = train_pooled(task, np.arange(data.num_users), args.centralized_steps,
                             config.federated.clients_per_round * config.task.examples_per_client, cfg.lr, config.seed)
        row("catalog", "centralized", scores(task, state, clients, ref_task),
            {"train_seconds": time.perf_counter() - t0, "steps": args.centralized_steps})
    # one client's KTO step (catalog policy) and the payload of the generative policy's shapes
    set_adapter_state(task.policy.model, {**task._frozen, **base_state})
    client = int(next(c for c in clients if task.weight(int(c)) > 0))
    t0 = time.perf_counter()
    task.train_stateful(client, 10_000, base_state, {}, ClientConfig(local_steps=1, lr=cfg.lr, optimizer="adam"))
    step = time.perf_counter() - t0
    catalog_bytes = sum(v.numel() * v.element_size() for k, v in get_adapter_state(task.policy.model).items()
                        if k in task.shared_names)
    rows.append({"dataset": "redial", "method": "catalog", "setting": "cost", "protocol": "leak-free",
                 "metrics": {"client_step_seconds": step, "adapter_bytes": catalog_bytes,
                             "examples_per_step": task.weight(client), "peak_rss_mb": peak_rss_mb()}})
    for size in ("0.6B", "1.7B", "4B"):
        p = lora_payload(size)
        rows.append({"dataset": "redial", "method": "generative", "setting": "cost", "protocol": "leak-free",
                     "metrics": {"model": f"Qwen3-{size} shape (meta device)", "lora_parameters": p["parameters"],
                                 "payload_bytes_per_direction": p["bytes"], "payload_mib": p["bytes"] / 2**20}})
    print(write_results(args.results, rows))


if __name__ == "__main__":
    main()
