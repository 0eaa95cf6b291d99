"""Whether a learned mention-to-movie term can carry what the co-mention counts carry (a diagnostic, like
``fedtrek_comention_check.py``): on every validation query of the staged ReDial data, the recipe's zero-shot policy
(popularity prior, mention anchor, centered prompts; adapters disabled) plus a learned bilinear term
``a(x)^T (B A)^T u(m) / tau`` of rank ``r``, where ``a(x)`` and ``u(m)`` are the mention anchor's own vectors (the
normalized mean of the centered movie embeddings the prompt's window mentions, and movie ``m``'s).

``B`` starts at zero, so every row starts at the zero-shot policy. ``A`` and ``B`` train centrally (an upper bound
on what a federated version trained on the same points could fit) by softmax cross-entropy over the catalogue
(the query's known movies excluded, as the recipe scores) on the training data's desirable real recommendations,
with Adam and the zero-shot logits as a fixed offset; each row is one (rank, weight decay, epochs) point, scored on
the validation queries.

    python benchmarks/fedtrek_learned_mention_check.py [--ranks 8 32] [--epochs 1 2 5 10 20]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402
from fedtrek_comention_check import scorer, validation_queries  # noqa: E402

from ffmrec.recipes import load_recipe  # noqa: E402
from ffmrec.tasks.kto import build_kto_task, load_redial_run  # noqa: E402


def anchor_queries(anchors: torch.Tensor, mentions: list[list[int]]) -> torch.Tensor:
    """``(B, d)``: the normalized mean of ``anchors`` over each row's mentions (zeros where there are none)."""
    out = torch.zeros(len(mentions), anchors.shape[1])
    for b, idx in enumerate(mentions):
        if idx:
            out[b] = torch.nn.functional.normalize(anchors[idx].mean(0), dim=0)
    return out


def embed(policy, prompts: list[str], cache: Path | None) -> torch.Tensor:
    """``(N, d)`` frozen-base prompt embeddings, cached under ``cache`` by the prompts' hash."""
    key = hashlib.sha256("\n\x00".join(prompts).encode()).hexdigest()[:20]
    file = cache / f"fedtrek-prompt-embeddings-{key}.pt" if cache is not None else None
    if file is not None and file.is_file():
        return torch.load(file)
    with torch.no_grad():
        out = torch.cat([policy.reference_embeddings(prompts[s:s + 32]) for s in range(0, len(prompts), 32)])
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(out, file.with_suffix(".tmp"))
        file.with_suffix(".tmp").replace(file)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--weight-decays", type=float, nargs="+", default=[0.0, 1e-4])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 5, 10, 20], help="epochs after which each run is scored")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides key=value")
    parser.add_argument("--results", default="fedtrek_learned_mention_check")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Path(os.environ["FFMREC_CACHE_DIR"]) if os.environ.get("FFMREC_CACHE_DIR") else None
    config = load_recipe("fedtrek", overrides=args.set)
    data, _ = load_redial_run(config)
    task = build_kto_task(config, data)
    policy = task.policy
    start = time.perf_counter()
    train_prompts, train_mentions, train_targets, train_known = [], [], [], []
    for c, user in enumerate(data.users):
        for i, e in enumerate(user.train):
            if e.desirable and e.kind == "real":
                train_prompts.append(task.prompt(c, "train", i, e))
                train_mentions.append(task.mentions((c, "train", i)))
                train_targets.append([data.catalog.index[m] for m in e.movies])
                train_known.append(task._known(c, e))
    clients, queries, prompts, known, mentions = validation_queries(task, data)
    with torch.no_grad():
        base_valid = policy.log_probs_of(embed(policy, prompts, cache), reference=True, exclude=known,
                                         mentions=mentions)  # (Q, M)
        base_train = policy.log_probs_of(embed(policy, train_prompts, cache), reference=True, exclude=train_known,
                                         mentions=train_mentions)  # (N, M), the known -inf
    print(f"{len(train_prompts)} training points, {len(queries)} validation queries, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    u, tau = policy.anchors, policy.config.temperature  # (M, d)
    a_train, a_valid = anchor_queries(u, train_mentions), anchor_queries(u, mentions)

    evaluate = scorer(task, len(clients), queries, known)

    common = {"dataset": "redial", "setting": "validation", "protocol": config.task.protocol, "queries": len(queries),
              "training_points": len(train_prompts)}
    rows = [{**common, "method": "policy", "rank": 0, "weight_decay": 0.0, "epochs": 0, "metrics": evaluate(base_valid)}]
    d = u.shape[1]
    for rank in args.ranks:
        for wd in args.weight_decays:
            g = torch.Generator().manual_seed(0)
            A = torch.nn.Parameter(torch.randn(rank, d, generator=g) / d ** 0.5)
            B = torch.nn.Parameter(torch.zeros(d, rank))
            opt = torch.optim.Adam([A, B], lr=args.lr, weight_decay=wd)
            for epoch in range(1, max(args.epochs) + 1):
                for idx in torch.randperm(len(train_prompts), generator=g).split(128):
                    term = (a_train[idx] @ A.T @ B.T) @ u.T / tau  # (b, M)
                    logp = torch.log_softmax(base_train[idx] + term, dim=-1)
                    loss = -torch.stack([logp[j, train_targets[n]].sum() for j, n in enumerate(idx.tolist())]).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                if epoch in args.epochs:
                    with torch.no_grad():
                        metrics = evaluate(base_valid + (a_valid @ A.T @ B.T) @ u.T / tau)
                    rows.append({**common, "method": f"policy + learned rank-{rank} term", "rank": rank,
                                 "weight_decay": wd, "epochs": epoch, "metrics": {**metrics, "train_loss": loss.item()}})
                    print(f"rank {rank} wd {wd} epoch {epoch}: Hits@10 {metrics['Hits@10']:.3f} "
                          f"MRR {metrics['MRR']:.3f} (train loss {loss.item():.3f})", flush=True)
    write_results(args.results, rows)


if __name__ == "__main__":
    main()
