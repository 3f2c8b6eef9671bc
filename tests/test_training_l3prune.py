"""L3 Prune: per-layer contrastive losses on a tiny random Llama, and the small/large choice."""

from __future__ import annotations

import copy

import pytest

from ranker.errors import InputError
from tests.test_training_pruning import make_tiny_decoder
from training.l3prune import LayerLosses, sample_batches

PAIRS = [(f"query {i} about topic {i % 5}", f"document {i} on topic {i % 5} with words") for i in range(24)]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from training.models import load_model

    return load_model(make_tiny_decoder(tmp_path_factory.mktemp("llama") / "llama", layers=4), device="cpu")


@pytest.fixture(scope="module")
def losses(tiny_llama):
    from training.l3prune import layer_losses

    return layer_losses(tiny_llama, PAIRS, batch_size=8, batches=6, seed=0)


def test_small_is_in_the_first_half_and_large_in_the_second(losses):
    assert losses.layers == 4 and len(losses.losses) == 4
    assert 1 <= losses.small <= losses.layers / 2 < losses.large <= losses.layers
    assert losses.losses[losses.small - 1] == min(losses.losses[:2])
    assert losses.losses[losses.large - 1] == min(losses.losses[2:])
    assert (losses.batches, losses.batch_size) == (6, 8)


def test_layer_loss_is_the_loss_of_the_model_pruned_there(tiny_llama, losses):
    """Layer l's loss (final norm applied) equals the contrastive loss of the model pruned to l layers."""
    import torch

    from training.l3prune import infonce
    from training.pruning import prune_layers

    batches = sample_batches(PAIRS, 8, 6, seed=0)
    for keep in (1, 2, 4):
        pruned = prune_layers(copy.deepcopy(tiny_llama), keep)
        total = 0.0
        for batch in batches:
            q = pruned.encode([x for x, _ in batch], convert_to_tensor=True)
            p = pruned.encode([y for _, y in batch], convert_to_tensor=True)
            total += float(infonce(q, p))
        assert total / len(batches) == pytest.approx(losses.losses[keep - 1], rel=1e-5)
    assert torch.is_tensor(infonce(torch.eye(2), torch.eye(2)))


@pytest.mark.parametrize("values, small, large", [((3.0, 1.0, 2.0, 0.5), 2, 4), ((0.1, 0.2, 0.3, 0.4, 0.0), 1, 5),
                                                   ((1.0, 2.0), 1, 2), ((5.0, 4.0, 1.0, 2.0, 3.0, 9.0), 3, 4)])
def test_choice_by_hand(values, small, large):
    result = LayerLosses(values, batches=1, batch_size=2)
    assert (result.small, result.large) == (small, large)
    assert result.choose("small") == small and result.choose("large") == large
    assert "<- small" in result.table().splitlines()[small] and "<- large" in result.table().splitlines()[large]


def test_unknown_choice():
    with pytest.raises(InputError, match="'small' or 'large', got 'medium'"):
        LayerLosses((1.0, 2.0), 1, 2).choose("medium")


def test_sampled_batches_have_distinct_queries_and_reshuffle_when_needed():
    pairs = PAIRS + [(PAIRS[0][0], "another positive of query 0")]
    batches = sample_batches(pairs, 8, 7, seed=1)
    assert len(batches) == 7 and all(len(b) == 8 for b in batches)  # 24 queries: 3 per pass, so 3 passes
    assert all(len({q for q, _ in b}) == len(b) for b in batches)
    assert sample_batches(pairs, 8, 7, seed=1) == batches  # seeded
    assert len(sample_batches(PAIRS[:3], 32, 2)) == 2 and len(sample_batches(PAIRS[:3], 32, 2)[0]) == 3


@pytest.mark.parametrize("pairs, size, n, message", [(PAIRS, 1, 5, "batch size must be at least 2"),
                                                     (PAIRS, 8, 0, "batches must be at least 1"),
                                                     (PAIRS[:1] * 3, 8, 1, "at least 2 distinct queries, got 1")])
def test_bad_sampling_settings(pairs, size, n, message):
    with pytest.raises(InputError, match=message):
        sample_batches(pairs, size, n)


def test_plot_writes_a_png(tmp_path, losses):
    from training.l3prune import plot_layer_losses

    path = plot_layer_losses(losses, tmp_path / "plots" / "l3.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_minilm_layer_losses_end_with_the_full_model(tmp_path):
    """On the real encoder, the last layer's loss is the full model's loss (no final norm for BERT)."""
    from training.l3prune import infonce, layer_losses
    from training.models import load_model

    model = load_model(None, device="cpu")
    result = layer_losses(model, PAIRS[:8], batch_size=4, batches=2, seed=3)
    assert result.layers == 6
    total = 0.0
    for batch in sample_batches(PAIRS[:8], 4, 2, seed=3):
        q = model.encode([x for x, _ in batch], convert_to_tensor=True)
        p = model.encode([y for _, y in batch], convert_to_tensor=True)
        total += float(infonce(q, p))
    assert total / 2 == pytest.approx(result.losses[-1], rel=1e-5)
