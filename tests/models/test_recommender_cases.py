"""Every shipped Recommender configuration runs the template test case."""

import torch
from cases import NUM_ITEMS, RecommenderTestCase

from ffmrec.models.sasrec import SASRec, SASRecConfig


class _SASRecCase(RecommenderTestCase):
    kwargs: dict = {}

    def build(self, num_users):
        torch.manual_seed(0)
        cfg = SASRecConfig(max_len=8, hidden_size=16, num_heads=2, inner_size=32, **self.kwargs)
        return SASRec(cfg, NUM_ITEMS, num_users)


class TestSASRecCE(_SASRecCase):
    kwargs = {"dropout": 0.3}


class TestSASRecUserEmbedding(_SASRecCase):
    kwargs = {"dropout": 0.2, "user_embedding": True}


class TestSASRecBCE(_SASRecCase):
    kwargs = {"dropout": 0.0, "loss": "bce"}


class TestSASRecSampledCE(_SASRecCase):
    kwargs = {"dropout": 0.1, "loss": "sampled_ce", "num_negatives": 7}


class TestSASRecMaskToken(_SASRecCase):
    kwargs = {"dropout": 0.2, "mask_token": True}
