"""LoRA adapters averaged as products B·A (hand-checked), versus FedAvg of A and B separately."""

from __future__ import annotations

import torch

from ffmrec.federated.strategies import LoRAProductAverage, build_strategy
from ffmrec.federated.strategies.lora_product import lora_pairs, product_average


def test_product_average_is_exact_when_the_mean_has_rank_r():
    a = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])  # (C=2, r=1, in=2): a shared A (FFA-LoRA)
    b = torch.tensor([[[2.0], [0.0]], [[0.0], [4.0]]])  # (C, out=2, r=1)
    new_a, new_b, residual = product_average(a, b, torch.tensor([1.0, 3.0]))
    expected = (1 * b[0] @ a[0] + 3 * b[1] @ a[1]) / 4  # [[0.5, 0], [3, 0]]
    assert torch.allclose(new_b @ new_a, expected, atol=1e-6) and residual < 1e-6


def test_separate_averaging_differs_and_product_keeps_the_best_rank_r():
    a = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    b = torch.tensor([[[1.0], [0.0]], [[0.0], [1.0]]])
    w = torch.tensor([1.0, 1.0])
    mean_product = torch.tensor([[0.5, 0.0], [0.0, 0.5]])  # rank 2
    separate = b.mean(0) @ a.mean(0)  # [[0.25, 0.25], [0.25, 0.25]]: not the average update
    assert not torch.allclose(separate, mean_product)
    new_a, new_b, residual = product_average(a, b, w)
    assert abs(residual - 0.5) < 1e-6  # one singular value of 0.5 is dropped at rank 1
    assert torch.allclose(torch.linalg.matrix_norm(new_b @ new_a - mean_product), torch.tensor(0.5), atol=1e-6)
    assert torch.allclose(new_a @ new_a.T, torch.eye(1), atol=1e-6)  # orthonormal rows: never stuck at zero


def test_strategy_applies_products_to_named_pairs_and_averages_the_rest():
    names = {"m.lora_A.weight": (1, 2), "m.lora_B.weight": (2, 1), "bias": (2,)}
    assert lora_pairs(names) == {"m.lora_A.weight": "m.lora_B.weight"}

    class Cfg:
        strategy, server_lr, max_update_norm = "lora_product", 1.0, None

    strategy = build_strategy(Cfg())
    assert isinstance(strategy, LoRAProductAverage) and not strategy.linear
    glob = {"m.lora_A.weight": torch.tensor([[1.0, 0.0]]), "m.lora_B.weight": torch.zeros(2, 1), "bias": torch.zeros(2)}
    deltas = {"m.lora_A.weight": torch.zeros(2, 1, 2), "m.lora_B.weight": torch.tensor([[[2.0], [0.0]], [[0.0], [4.0]]]),
              "bias": torch.tensor([[1.0, 1.0], [3.0, 3.0]])}
    weights = torch.tensor([1.0, 3.0])
    new = strategy.apply(glob, strategy.aggregate(deltas, weights))
    assert torch.allclose(new["m.lora_B.weight"] @ new["m.lora_A.weight"], torch.tensor([[0.5, 0.0], [3.0, 0.0]]), atol=1e-6)
    assert torch.allclose(new["bias"], torch.tensor([2.5, 2.5]))
