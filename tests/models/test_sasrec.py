import pytest
import torch

from ffmrec.errors import ConfigError
from ffmrec.models.sasrec import SASRec, SASRecConfig


def tiny(**kw):
    torch.manual_seed(0)
    cfg = SASRecConfig(max_len=8, hidden_size=16, num_heads=2, inner_size=32, dropout=0.0, **kw)
    return SASRec(cfg, num_items=30, num_users=5)


def test_extra_left_padding_changes_nothing():
    m = tiny().eval()
    short = torch.tensor([[0, 3, 4, 5]])
    long = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5]])
    a = m.full_sort_predict({"input_ids": short})
    b = m.full_sort_predict({"input_ids": long})
    torch.testing.assert_close(a, b)
    batch_s = {"input_ids": short, "targets": torch.tensor([[0, 4, 5, 6]])}
    batch_l = {"input_ids": long, "targets": torch.tensor([[0, 0, 0, 0, 0, 4, 5, 6]])}
    torch.testing.assert_close(m.calculate_loss(batch_s), m.calculate_loss(batch_l))


def test_compact_and_masked_losses_agree():
    m = tiny()
    batch = {"input_ids": torch.tensor([[0, 1, 2], [3, 4, 5]]), "targets": torch.tensor([[0, 2, 7], [4, 5, 6]])}
    torch.testing.assert_close(m.calculate_loss(batch, compact=True), m.calculate_loss(batch, compact=False))


def test_causal_future_items_do_not_leak():
    m = tiny().eval()
    h1 = m.encode(torch.tensor([[1, 2, 3, 4]]))
    h2 = m.encode(torch.tensor([[1, 2, 3, 9]]))
    torch.testing.assert_close(h1[:, :3], h2[:, :3])
    assert not torch.allclose(h1[:, 3], h2[:, 3])


def test_padding_item_never_scored_and_shapes():
    m = tiny()
    s = m.full_sort_predict({"input_ids": torch.tensor([[1, 2], [0, 3]])})
    assert s.shape == (2, 31)
    assert torch.isinf(s[:, 0]).all()


def test_personal_parameters_declared():
    m = tiny(user_embedding=True)
    assert m.personal_parameters == ("user_emb.weight",)
    assert "user_emb.weight" not in m.shared_parameter_names()
    assert "item_emb.weight" in m.shared_parameter_names()


@pytest.mark.parametrize("loss", ["bce", "sampled_ce"])
def test_sampled_losses_train(loss):
    m = tiny(loss=loss)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    batch = {"input_ids": torch.tensor([[1, 2, 3]] * 4), "targets": torch.tensor([[2, 3, 4]] * 4)}
    first = m.calculate_loss(batch).item()
    for _ in range(30):
        opt.zero_grad()
        m.calculate_loss(batch).backward()
        opt.step()
    assert m.calculate_loss(batch).item() < first


def test_invalid_config_names_key():
    with pytest.raises(ConfigError, match="num_heads"):
        SASRecConfig(hidden_size=10, num_heads=3)
    with pytest.raises(ConfigError, match="model.loss"):
        SASRecConfig(loss="hinge")
