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


def ragged_batch(m, lengths, seed=0):
    """Left-padded rows of the given lengths (0 = all padding) with their targets, users and dropout noise."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, width - n:] = torch.randint(1, m.num_items + 1, (n,), generator=g)
    targets = torch.where(ids > 0, torch.randint(1, m.num_items + 1, ids.shape, generator=g), 0)
    noise = {k: torch.rand((len(lengths), *s), generator=g) for k, s in m.noise_shapes(width).items()}
    return {"input_ids": ids, "targets": targets, "users": torch.arange(len(lengths)) % 5, "noise": noise}


def test_encoding_by_length_equals_the_padded_batch_under_explicit_dropout_noise():
    torch.manual_seed(0)
    cfg = SASRecConfig(max_len=40, hidden_size=16, num_heads=2, inner_size=32, dropout=0.5, user_embedding=True)
    m = SASRec(cfg, num_items=30, num_users=5).train()
    lengths = [1, 40, 3, 0, 7, 13, 2, 25, 9, 40, 5, 17]  # several buckets, an all-padding row, rows at full width
    batch = ragged_batch(m, lengths)
    plain = m.encode(batch["input_ids"], batch["users"], batch["noise"])
    bucketed = m.encode(batch["input_ids"], batch["users"], batch["noise"], by_length=True)
    real = batch["input_ids"] > 0
    torch.testing.assert_close(bucketed[real], plain[real], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bucketed[:, -1], plain[:, -1], rtol=1e-5, atol=1e-6)  # the all-padding row too
    assert (bucketed[[0, 2, 3, 6, 10], :-7] == 0).all()  # rows of length <= 6 sit in buckets cut to <= 6 columns
    torch.testing.assert_close(m.encode_sequence(batch, compact=True), m.encode_sequence(batch), rtol=1e-5, atol=1e-6)
    losses, grads = [], []
    for compact in (True, False):  # True encodes by length (explicit noise), False is the padded batch (vmap's path)
        m.zero_grad()
        loss = m.calculate_loss(batch, compact=compact)
        loss.backward()
        losses.append(loss.detach())
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for k in grads[1]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6)


def test_by_length_only_where_shapes_may_vary_and_dropout_is_explicit():
    m = SASRec(SASRecConfig(max_len=8, hidden_size=16, num_heads=2, inner_size=32, dropout=0.5), 30).train()
    assert m.bucketable(True, {"emb": torch.ones(1)}) and not m.bucketable(False, {"emb": torch.ones(1)})
    assert not m.bucketable(True, None)  # torch's own dropout: bucketing would change which units it drops
    assert m.eval().bucketable(True, None)
    assert SASRec(SASRecConfig(max_len=8, hidden_size=16, num_heads=2, inner_size=32, dropout=0.0), 30).bucketable(
        True, None)
