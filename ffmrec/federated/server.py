"""The driver loop of every federated run, whatever the engine.

Each round: sample exactly ``clients_per_round`` clients from ``(seed, round)``, let the strategy configure them, have
the engine run their updates, aggregate, apply, validate now and then, log a line to ``history.jsonl`` and checkpoint
(global parameters, strategy state, the simulated devices' state, early-stopping state). All randomness is derived from
``(seed, round, client)``, so a run killed with ``kill -9`` and started again ends with exactly the same result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ffmrec.errors import FFMRecError
from ffmrec.eval.metrics import ranking_metrics
from ffmrec.federated.config import FederatedConfig
from ffmrec.federated.engines.base import Engine, Params
from ffmrec.federated.sampling import resolve_clients_per_round, sample_clients
from ffmrec.federated.strategies import Strategy
from ffmrec.utils.io import History, load_checkpoint, save_checkpoint


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


def run_server(
    num_clients: int,
    initial: Params,
    engine: Engine,
    strategy: Strategy,
    cfg: FederatedConfig,
    ks: tuple[int, ...],
    out_dir: Path,
    seed: int,
    progress: bool = True,
) -> FederatedResult:
    per_round = resolve_clients_per_round(num_clients, cfg.clients_per_round, cfg.fraction)
    watch = "NDCG@10" if 10 in ks else f"NDCG@{ks[0]}"
    valid_users = _validation_users(num_clients, cfg, seed)
    history = History(out_dir / "history.jsonl")
    state = {"round": 0, "best": -1.0, "best_round": 0, "best_valid": {}, "seconds": 0.0, "failures": 0,
             "ok_rounds": 0}
    params, best_params = initial, initial
    ckpt = load_checkpoint(out_dir / "server.pt")
    if ckpt is not None:
        params, best_params, state = ckpt["params"], ckpt["best_params"], ckpt["state"]
        strategy.load_state_dict(ckpt["strategy"])
        engine.load_state_dict(ckpt["engine"])
        history.truncate(state["round"])
    bar = tqdm(total=cfg.rounds, initial=state["round"], desc="rounds", disable=not progress, dynamic_ncols=True)
    while state["round"] < cfg.rounds:
        rnd = state["round"] + 1
        t0 = time.perf_counter()
        clients = sample_clients(num_clients, per_round, rnd, seed)
        client_cfg = strategy.configure_round(rnd, cfg.client)
        result = engine.train_round(rnd, clients, params, client_cfg, need_updates=not strategy.linear)
        line = {"round": rnd, "clients": len(clients), "ok": result.num_ok, "failed": len(result.failures)}
        if result.failures:
            line["errors"] = sorted({err for _, err in result.failures})[:3]
        if result.num_ok >= cfg.min_clients:
            delta = result.mean_delta if strategy.linear else strategy.aggregate(result.deltas, result.weights)
            params = strategy.apply(params, delta)
            line["loss"] = result.loss
            state["ok_rounds"] += 1
        else:
            line["skipped"] = f"only {result.num_ok} clients succeeded (min_clients={cfg.min_clients})"
        seconds = time.perf_counter() - t0
        state["seconds"] += seconds
        state["failures"] += len(result.failures)
        line["seconds"] = round(seconds, 4)
        if rnd % cfg.eval_every == 0 or rnd == cfg.rounds:
            valid = ranking_metrics(engine.rank("valid", params, valid_users), ks)
            line.update({f"valid/{k}": v for k, v in valid.items()})
            if valid[watch] > state["best"]:
                state.update(best=valid[watch], best_round=rnd, best_valid=valid)
                best_params = params
        state["round"] = rnd
        history.append(line)
        save_checkpoint(out_dir / "server.pt", {
            "params": params, "best_params": best_params, "state": state,
            "strategy": strategy.state_dict(), "engine": engine.state_dict(),
        })
        bar.update(1)
        bar.set_postfix(loss=f"{line.get('loss', float('nan')):.3f}", best=f"{state['best']:.4f}")
    bar.close()
    if state["ok_rounds"] == 0:
        raise FFMRecError(f"no round of the run in {out_dir} succeeded: see {history.path} for the clients' errors.")
    test = ranking_metrics(engine.rank("test", best_params, np.arange(num_clients)), ks)
    return FederatedResult(
        rounds_run=state["round"], best_round=state["best_round"], best_valid=state["best_valid"], test=test,
        seconds_per_round=state["seconds"] / max(state["round"], 1), failures=state["failures"],
    )
