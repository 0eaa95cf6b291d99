"""SASRec's item representations: id (unchanged), text (frozen text table through a trainable projection), hybrid."""

import pytest
import torch

from ffmrec.errors import ConfigError
from ffmrec.models.sasrec import SASRec, SASRecConfig

N, D = 12, 6


def text_table(seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(N + 1, D, generator=g)
    table[0] = 0
    return table


def model(item_repr, **kw):
    torch.manual_seed(0)
    cfg = SASRecConfig(max_len=5, hidden_size=8, num_heads=2, inner_size=16, dropout=0.0, item_repr=item_repr, **kw)
    return SASRec(cfg, N, 3, text_table() if item_repr != "id" else None)


BATCH = {"input_ids": torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]), "targets": torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]])}


@pytest.mark.parametrize("item_repr,shared", [
    ("id", {"item_emb.weight"}),
    ("text", {"text_proj.weight", "text_proj.bias"}),
    ("hybrid", {"item_emb.weight", "text_proj.weight", "text_proj.bias"}),
])
def test_item_parameters_and_shapes(item_repr, shared):
    m = model(item_repr)
    names = set(m.shared_parameter_names())
    assert shared <= names
    assert not ({"item_emb.weight", "text_proj.weight", "text_proj.bias"} - shared) & names
    assert "item_text" not in m.state_dict()  # the frozen public table is a non-persistent buffer: never sent
    scores = m.full_sort_predict(BATCH)
    assert scores.shape == (2, N + 1) and torch.isinf(scores[:, 0]).all()
    assert torch.isfinite(m.calculate_loss(BATCH))
    if item_repr != "id":
        assert m.item_table().shape == (N + 1, 8)
        assert m.embedding_parameters == (() if item_repr == "text" else ("item_emb.weight",))


def test_text_representation_scores_an_item_through_its_text_only():
    """Two items with the same text get the same score in 'text' mode, whatever their ids."""
    table = text_table()
    table[9] = table[4]
    torch.manual_seed(0)
    m = SASRec(SASRecConfig(max_len=5, hidden_size=8, num_heads=2, inner_size=16, dropout=0.0, item_repr="text"),
               N, 3, table).eval()
    scores = m.full_sort_predict(BATCH)
    torch.testing.assert_close(scores[:, 9], scores[:, 4])


def test_a_frozen_text_table_gets_no_gradient_and_the_projection_does():
    m = model("hybrid")
    m.calculate_loss(BATCH).backward()
    assert not m.item_text.requires_grad
    assert m.text_proj.weight.grad is not None and m.text_proj.weight.grad.abs().sum() > 0


def test_text_representations_need_the_text_table():
    cfg = SASRecConfig(max_len=5, hidden_size=8, num_heads=2, inner_size=16, item_repr="text")
    with pytest.raises(ConfigError, match="model.item_repr='text'"):
        SASRec(cfg, N, 3, None)
    with pytest.raises(ConfigError, match="model.item_repr='words'"):
        SASRecConfig(item_repr="words")


def test_unseen_items_are_no_training_candidates_but_are_scored():
    torch.manual_seed(0)
    cfg = SASRecConfig(max_len=5, hidden_size=8, num_heads=2, inner_size=16, dropout=0.0)
    plain = SASRec(cfg, N, 3)
    torch.manual_seed(0)
    held = SASRec(cfg, N, 3, unseen_items=torch.tensor([10, 11]))
    held.calculate_loss(BATCH).backward()
    assert held.item_emb.weight.grad[10:12].abs().sum() == 0  # never a candidate: no gradient as a negative
    plain.calculate_loss(BATCH).backward()
    assert plain.item_emb.weight.grad[10:12].abs().sum() > 0
    assert torch.isfinite(held.full_sort_predict(BATCH)[:, 10:12]).all()  # still scored at test time
    assert "unseen" not in held.state_dict()


def test_an_unseen_hybrid_item_is_scored_by_its_text_alone():
    """A cold item's id row was never trained: in the hybrid table it is zero, so the item is its projected text."""
    torch.manual_seed(0)
    cfg = SASRecConfig(max_len=5, hidden_size=8, num_heads=2, inner_size=16, dropout=0.0, item_repr="hybrid")
    m = SASRec(cfg, N, 3, text_table(), unseen_items=torch.tensor([10, 11]))
    table, text = m.item_table(), m.text_proj(m.item_text)
    torch.testing.assert_close(table[10:12], text[10:12])
    torch.testing.assert_close(table[1:10], text[1:10] + m.item_emb.weight[1:10])  # seen items keep their id rows


def hand_loss(m, keep_id):
    """Cross-entropy over every position with a target, logits h.text_n + keep_id[b, n] * h.id_n, by hand."""
    h = m.encode(BATCH["input_ids"])
    text, ids = m.text_proj(m.item_text)[1:N + 1], m.item_emb.weight[1:N + 1]
    terms = []
    for b in range(2):
        for t in range(4):
            target = int(BATCH["targets"][b, t])
            if target:
                logits = h[b, t] @ text.T + keep_id[b] * (h[b, t] @ ids.T)
                terms.append(torch.logsumexp(logits, 0) - logits[target - 1])
    return torch.stack(terms).mean()


@pytest.mark.parametrize("compact", [False, True])
def test_id_dropout_scores_dropped_candidates_by_their_text_and_the_others_as_hybrid(compact):
    m = model("hybrid", id_dropout=0.5)
    u = torch.rand(2, N, generator=torch.Generator().manual_seed(3))
    loss = m.calculate_loss({**BATCH, "noise": {"id_drop": u}}, compact=compact)
    torch.testing.assert_close(loss, hand_loss(m, (u >= 0.5).float()))
    # nothing dropped: the plain hybrid loss; everything dropped: the text-only softmax
    plain = model("hybrid")
    plain.load_state_dict(m.state_dict())
    torch.testing.assert_close(m.calculate_loss({**BATCH, "noise": {"id_drop": torch.ones(2, N)}}, compact=compact),
                               plain.calculate_loss(BATCH, compact=compact))
    torch.testing.assert_close(m.calculate_loss({**BATCH, "noise": {"id_drop": torch.zeros(2, N)}}, compact=compact),
                               hand_loss(m, torch.zeros(2, N)))
    assert m.noise_shapes(4)["id_drop"] == (N,) and m.noise_time_axes()["id_drop"] == ()
    m.eval()  # at test time every item keeps its id part
    torch.testing.assert_close(m.full_sort_predict(BATCH), plain.eval().full_sort_predict(BATCH))


@pytest.mark.parametrize("kw,fix", [({"item_repr": "id"}, "item_repr=hybrid"),
                                    ({"item_repr": "text"}, "item_repr=hybrid"),
                                    ({"item_repr": "hybrid", "loss": "bce"}, "loss=ce"),
                                    ({"item_repr": "hybrid", "id_dropout_value": 1.0}, r"\[0, 1\)")])
def test_id_dropout_needs_hybrid_items_and_the_full_softmax(kw, fix):
    kw = dict(kw)
    with pytest.raises(ConfigError, match=fix):
        SASRecConfig(id_dropout=kw.pop("id_dropout_value", 0.5), **kw)
