"""The driver loop of every federated run, whatever the engine.

Each round: sample exactly ``clients_per_round`` clients from ``(seed, round)``, let the strategy configure them, have
the engine run their updates, check every record against what the task declared (a record that fails is its client's
failure), hand the round to the observers, aggregate (the one weighted sum, or the strategy's robust rule), apply,
validate now and then (the devices keep their personal state of the best round), log a line to ``history.jsonl`` and
checkpoint (global and best parameters, strategy, the simulated devices' state, observers, early-stopping state). All
randomness is derived from ``(seed, round, client)``, so a run killed with ``kill -9`` and started again ends with
exactly the same result. The test metrics pair the best round's shared parameters with the devices' personal state of
that same round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ffmrec.errors import FFMRecError
from ffmrec.federated.aggregation import WeightedSum
from ffmrec.federated.config import FederatedConfig
from ffmrec.federated.engines.base import Engine, RoundResult
from ffmrec.federated.observers.base import Observer
from ffmrec.federated.records import RecordError, check_partial, check_record
from ffmrec.federated.sampling import resolve_clients_per_round, sample_clients
from ffmrec.federated.strategies import Strategy
from ffmrec.tasks.base import ClientTask, Params
from ffmrec.utils.io import History, load_checkpoint, save_checkpoint, save_columns


@dataclass
class FederatedResult:
    rounds_run: int
    best_round: int
    best_valid: dict[str, float]
    test: dict[str, float]
    seconds_per_round: float
    failures: int


def _validation_users(num_clients: int, cfg: FederatedConfig, seed: int) -> np.ndarray:
    if cfg.eval_users is None or cfg.eval_users >= num_clients:
        return np.arange(num_clients)
    return np.sort(np.random.default_rng((seed, 0xE7A1)).choice(num_clients, cfg.eval_users, replace=False))


def check_round(result: RoundResult, specs, max_weight: int) -> RoundResult:
    """Keep the records and partial sums that match the task's declaration; the others become their clients'
    failures, with the reason."""
    good = RoundResult(failures=list(result.failures), received=list(result.received))
    for record in result.records:
        try:
            check_record(record, specs, max_weight)
            good.records.append(record)
        except RecordError as e:
            good.failures.append((record.client_id, f"rejected record: {e}"))
    for partial in result.partials:
        try:
            check_partial(partial, specs, max_weight)
            good.partials.append(partial)
        except RecordError as e:
            good.failures.extend((c, f"rejected partial sum: {e}") for c in partial.client_ids)
    return good


def aggregate(result: RoundResult, strategy: Strategy) -> tuple[Params, float, int]:
    """``(delta, mean loss, clients)`` of a checked round: the weighted mean for a linear strategy, else the
    strategy's own rule over the stacked records."""
    acc = WeightedSum()
    for partial in result.partials:
        acc.add_sum(partial.sums, partial.weight, partial.loss_sum, partial.count)
    records = sorted(result.records, key=lambda r: r.client_id)  # client order, whatever the engine's order
    if records:
        stacked = {k: torch.stack([r.tensors[k] for r in records]) for k in records[0].tensors}
        weights = torch.tensor([r.weight for r in records], dtype=torch.float64)
        losses = torch.tensor([r.metrics.get("loss", 0.0) for r in records], dtype=torch.float64)
        acc.add_stacked(stacked, weights, losses)
        if not strategy.linear:
            return strategy.aggregate(stacked, weights.float()), acc.mean_loss, acc.count
    return strategy.aggregate_sum(acc), acc.mean_loss, acc.count


def run_server(
    task: ClientTask,
    engine: Engine,
    strategy: Strategy,
    cfg: FederatedConfig,
    out_dir: Path,
    seed: int,
    observers: list[Observer] = (),
    progress: bool = True,
) -> FederatedResult:
    num_clients = task.num_clients
    per_round = resolve_clients_per_round(num_clients, cfg.clients_per_round, cfg.fraction)
    specs = task.shared_specs()
    max_weight = cfg.max_client_weight or task.max_weight
    valid_users = _validation_users(num_clients, cfg, seed)
    history = History(out_dir / "history.jsonl")
    state = {"round": 0, "best": -float("inf"), "best_round": 0, "best_valid": {}, "seconds": 0.0, "failures": 0,
             "ok_rounds": 0}
    params = best_params = task.initial_shared()
    ckpt = load_checkpoint(out_dir / "server.pt")
    if ckpt is not None:
        params, best_params, state = ckpt["params"], ckpt["best_params"], ckpt["state"]
        strategy.load_state_dict(ckpt["strategy"])
        engine.load_state_dict(ckpt["engine"])
        for obs, obs_state in zip(observers, ckpt.get("observers", [])):
            obs.load_state_dict(obs_state)
    history.truncate(state["round"])  # lines past the checkpoint (or all, without one) are redone
    watch = None
    bar = tqdm(total=cfg.rounds, initial=state["round"], desc="rounds", disable=not progress, dynamic_ncols=True)
    while state["round"] < cfg.rounds:
        rnd = state["round"] + 1
        t0 = time.perf_counter()
        clients = sample_clients(num_clients, per_round, rnd, seed)
        client_cfg = strategy.configure_round(rnd, cfg.client)
        want_records = not strategy.linear or any(o.needs_records(rnd) for o in observers)
        result = check_round(engine.train_round(rnd, clients, params, client_cfg, want_records), specs, max_weight)
        ok = len(result.records) + sum(p.count for p in result.partials)
        line = {"round": rnd, "clients": len(clients), "ok": ok, "failed": len(result.failures)}
        if result.failures:
            line["errors"] = sorted({err.splitlines()[0] for _, err in result.failures})[:3]
        for obs in observers:
            obs.on_round(rnd, clients, params, result, line)
        if ok >= cfg.min_clients:
            delta, line["loss"], _ = aggregate(result, strategy)
            params = strategy.apply(params, delta)
            state["ok_rounds"] += 1
        else:
            line["skipped"] = f"only {ok} clients succeeded (min_clients={cfg.min_clients})"
        seconds = time.perf_counter() - t0
        state["seconds"] += seconds
        state["failures"] += len(result.failures)
        line["seconds"] = round(seconds, 4)
        if rnd % cfg.eval_every == 0 or rnd == cfg.rounds:
            valid = task.summarize(engine.evaluate("valid", params, valid_users, server_round=rnd))
            watch = watch or _watched(valid)
            line.update({f"valid/{k}": v for k, v in valid.items()})
            if valid[watch] > state["best"]:
                state.update(best=valid[watch], best_round=rnd, best_valid=valid)
                best_params = params
                engine.mark_best(rnd)
        state["round"] = rnd
        history.append(line)
        save_checkpoint(out_dir / "server.pt", {
            "params": params, "best_params": best_params, "state": state,
            "strategy": strategy.state_dict(), "engine": engine.state_dict(),
            "observers": [o.state_dict() for o in observers],
        })
        bar.update(1)
        bar.set_postfix(round_postfix(line, state))
    bar.close()
    if state["ok_rounds"] == 0:
        raise FFMRecError(f"no round of the run in {out_dir} succeeded: see {history.path} for the clients' errors.")
    if state["best_round"] == 0:  # never validated (a run ended before its first validation): test the last round
        best_params = params
        engine.mark_best(state["round"])
        state["best_round"] = state["round"]
    columns = engine.evaluate("test", best_params, np.arange(num_clients), best=True, server_round=state["round"])
    save_columns(out_dir / "test_ranks.npz", {"user": np.arange(num_clients), **columns})  # for paired tests
    test = task.summarize(columns)
    return FederatedResult(
        rounds_run=state["round"], best_round=state["best_round"], best_valid=state["best_valid"], test=test,
        seconds_per_round=state["seconds"] / max(state["round"], 1), failures=state["failures"],
    )


def round_postfix(line: dict, state: dict) -> dict[str, str]:
    """The progress bar's postfix after a round: its loss, and the best validation score once there is one."""
    best = f"{state['best']:.4f} (round {state['best_round']})" if state["best_round"] else "not validated yet"
    return {"loss": f"{line.get('loss', float('nan')):.3f}", "best": best}


def _watched(metrics: dict[str, float]) -> str:
    """The validation metric that picks the best round: NDCG@10 (ranking) or F1 / Hits@10 (set-based)."""
    for key in ("NDCG@10", "F1", "Hits@10"):
        if key in metrics:
            return key
    return sorted(metrics)[0]
