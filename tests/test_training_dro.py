"""Group DRO weights and the losses built on them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.dro import GroupDRO, per_example_infonce


def test_weights_start_uniform():
    dro = GroupDRO(["a", "b", "c", "d"])
    assert dro.as_dict() == {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}


def test_one_update_by_hand():
    dro = GroupDRO(["short", "long"], eta=0.5)
    dro.update(torch.tensor([1.0, 3.0]))
    # q ∝ 0.5 e^{0.5}, 0.5 e^{1.5}
    low, high = math.exp(0.5), math.exp(1.5)
    assert dro.as_dict() == pytest.approx({"short": low / (low + high), "long": high / (low + high)})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(0, 20), min_size=3, max_size=3), min_size=1, max_size=20),
       st.floats(0, 1))
def test_weights_stay_a_distribution(batches, eta):
    dro = GroupDRO(["a", "b", "c"], eta=eta)
    for losses in batches:
        weights = dro.update(torch.tensor(losses))
        assert float(weights.sum()) == pytest.approx(1.0)
        assert bool((weights >= 0).all())


def test_weight_rises_for_the_group_with_the_higher_loss():
    dro = GroupDRO(["a", "b", "c"], eta=0.1)
    before = dro.weights.clone()
    after = dro.update(torch.tensor([0.5, 2.0, 0.5]))
    assert after[1] > before[1] and after[0] < before[0] and after[2] < before[2]
    assert after[0] == pytest.approx(after[2])


def test_equal_losses_leave_the_weights_unchanged():
    dro = GroupDRO(["a", "b", "c"], eta=0.3)
    dro.update(torch.tensor([1.0, 2.0, 0.0]))  # make them non-uniform first
    before = dro.weights.clone()
    dro.update(torch.tensor([0.7, 0.7, 0.7]))
    torch.testing.assert_close(dro.weights, before)


def test_large_losses_do_not_overflow():
    dro = GroupDRO(["a", "b"], eta=10.0)
    weights = dro.update(torch.tensor([1000.0, 0.0]))
    assert torch.isfinite(weights).all() and float(weights[0]) == pytest.approx(1.0)


def test_group_losses_and_weighted_loss():
    dro = GroupDRO(["a", "b", "c"], eta=0.0)  # eta 0: weights stay uniform
    losses = torch.tensor([1.0, 3.0, 2.0, 6.0])
    groups = torch.tensor([0, 0, 1, 1])  # c absent: its loss counts as 0
    torch.testing.assert_close(dro.group_losses(losses, groups), torch.tensor([2.0, 4.0, 0.0]))
    assert float(dro.loss(losses, groups)) == pytest.approx((2.0 + 4.0 + 0.0) / 3)


def test_loss_updates_first_then_weights_the_groups():
    dro = GroupDRO(["a", "b"], eta=1.0)
    loss = dro.loss(torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([0, 1]))
    qa, qb = math.exp(1.0), math.exp(2.0)
    assert float(loss.detach()) == pytest.approx((qa * 1.0 + qb * 2.0) / (qa + qb))
    frozen = GroupDRO(["a", "b"], eta=1.0)
    frozen.loss(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]), update=False)
    assert frozen.as_dict() == {"a": 0.5, "b": 0.5}


@pytest.mark.parametrize("groups, eta, message", [([], 0.1, "at least one group"), (["a", "a"], 0.1, "distinct"),
                                                  (["a"], -1.0, "eta must be non-negative")])
def test_bad_settings(groups, eta, message):
    with pytest.raises(ValueError, match=message):
        GroupDRO(groups, eta)


def test_per_example_infonce_matches_multiple_negatives_ranking_loss():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.manual_seed(0)
    q, p, n = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)
    mnrl = MultipleNegativesRankingLoss(model=None, scale=20.0)  # the model is only used to embed
    for docs in ([p], [p, n]):
        expected = mnrl.compute_loss_from_embeddings([q, *docs], labels=None)
        torch.testing.assert_close(per_example_infonce(q, docs, 20.0).mean(), expected)
