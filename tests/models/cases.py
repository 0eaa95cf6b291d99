"""The template test case every :class:`~ffmrec.models.base.Recommender` runs (after PyKEEN's ``tests/cases.py``).

A model's test module subclasses :class:`RecommenderTestCase` and sets :meth:`RecommenderTestCase.build`; the checks
are what trainers, client tasks and evaluators rely on.
"""

from __future__ import annotations

import torch

from ffmrec.data.batching import collate, next_item_example
from ffmrec.models.base import Recommender

NUM_ITEMS = 30
NUM_USERS = 5


class RecommenderTestCase:
    """Subclasses implement ``build(num_users) -> Recommender`` (seeded, dropout may be on)."""

    def build(self, num_users: int) -> Recommender:
        raise NotImplementedError

    def batch(self, model: Recommender, with_noise: bool = False, seed: int = 0) -> dict:
        histories = [torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8]), torch.tensor([1, 2, 9, 10, 11, 12])]
        examples = []
        g = torch.Generator().manual_seed(seed)
        for u, h in enumerate(histories):
            e = next_item_example(h.numpy(), model.max_len)
            e["users"] = torch.tensor(u)
            if with_noise:
                shapes = model.noise_shapes(len(e["input_ids"]))
                if shapes:
                    e["noise"] = {k: torch.rand(s, generator=g) for k, s in shapes.items()}
            examples.append(e)
        return collate(examples, model.noise_time_axes())

    def test_declares_catalogue_and_length(self):
        model = self.build(NUM_USERS)
        assert model.num_items == NUM_ITEMS and model.max_len >= 1

    def test_loss_is_finite_and_differentiable(self):
        model = self.build(NUM_USERS).train()
        loss = model.calculate_loss(self.batch(model, with_noise=True))
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)

    def test_compact_and_static_losses_agree(self):
        model = self.build(NUM_USERS).train()
        batch = self.batch(model, with_noise=True)
        torch.testing.assert_close(model.calculate_loss(batch, compact=True), model.calculate_loss(batch, compact=False))

    def test_given_noise_makes_training_deterministic(self):
        model = self.build(NUM_USERS).train()
        a = model.calculate_loss(self.batch(model, with_noise=True, seed=1))
        b = model.calculate_loss(self.batch(model, with_noise=True, seed=1))
        assert torch.equal(a, b)
        if model.noise_shapes(3):  # other noise, other loss
            assert not torch.equal(a, model.calculate_loss(self.batch(model, with_noise=True, seed=2)))

    def test_full_sort_predict_shape_and_padding_column(self):
        model = self.build(NUM_USERS).eval()
        scores = model.full_sort_predict({"input_ids": torch.tensor([[0, 1, 2], [3, 4, 5]]),
                                          "users": torch.tensor([0, 1])})
        assert scores.shape == (2, NUM_ITEMS + 1)
        assert torch.isinf(scores[:, 0]).all() and (scores[:, 0] < 0).all()
        assert torch.isfinite(scores[:, 1:]).all()

    def test_extra_left_padding_changes_nothing(self):
        model = self.build(NUM_USERS).train()
        batch = self.batch(model, with_noise=True)
        wider = dict(batch)
        pad = 3
        wider["input_ids"] = torch.nn.functional.pad(batch["input_ids"], (pad, 0))
        wider["targets"] = torch.nn.functional.pad(batch["targets"], (pad, 0))
        if "noise" in batch:
            axes = model.noise_time_axes()
            wider["noise"] = {}
            for k, v in batch["noise"].items():
                spec = []
                for ax in reversed(range(1, v.dim())):
                    spec += [pad, 0] if (ax - 1) in axes.get(k, ()) else [0, 0]
                wider["noise"][k] = torch.nn.functional.pad(v, spec, value=1.0)
        torch.testing.assert_close(model.calculate_loss(wider), model.calculate_loss(batch))
        model.eval()
        torch.testing.assert_close(model.full_sort_predict(wider), model.full_sort_predict(batch))

    def test_personal_parameters_are_declared_and_per_user(self):
        model = self.build(NUM_USERS).eval()
        params = dict(model.named_parameters())
        shared = set(model.shared_parameter_names())
        for name in model.personal_parameters:
            assert name in params and name not in shared
            assert params[name].shape[0] == NUM_USERS  # one row per user
        if not model.personal_parameters:
            return
        batch = {"input_ids": torch.tensor([[1, 2, 3], [1, 2, 3]]), "users": torch.tensor([0, 1])}
        before = model.full_sort_predict(batch)
        with torch.no_grad():
            params[model.personal_parameters[0]][1] += 1.0  # change user 1's row only
        after = model.full_sort_predict(batch)
        torch.testing.assert_close(after[0], before[0])  # user 0 unaffected
        assert not torch.allclose(after[1, 1:], before[1, 1:])
