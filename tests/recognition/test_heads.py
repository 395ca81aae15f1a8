"""ArcFace/CosFace: the target logit moves exactly by the margin, the others do not move, m=0 is a normalised softmax."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.recognition.heads import MarginHead, arcface_logits, cosface_logits


def _cosines(seed: int, batch: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    cosine = torch.rand(batch, classes, generator=generator, dtype=torch.float64) * 2 - 1
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return cosine, labels


cases = given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 8), classes=st.integers(2, 12),
              margin=st.floats(0.05, 1.0), scale=st.floats(1.0, 64.0))


@settings(max_examples=60, deadline=None)
@cases
def test_arcface_adds_the_margin_to_the_target_angle_only(seed, batch, classes, margin, scale):
    cosine, labels = _cosines(seed, batch, classes)
    logits = arcface_logits(cosine.double(), labels, scale, margin).double()  # the head computes in fp32
    rows = torch.arange(batch)
    target = cosine[rows, labels].double()
    theta = torch.arccos(target)
    expected = torch.where(theta + margin < math.pi, torch.cos(theta + margin), target - math.sin(math.pi - margin) * margin)
    assert torch.allclose(logits[rows, labels] / scale, expected, atol=2e-6)
    inside = theta + margin < math.pi - 1e-3
    moved = torch.arccos((logits[rows, labels] / scale).clamp(-1, 1)) - theta
    assert torch.allclose(moved[inside], torch.full_like(moved[inside], margin), atol=1e-3)
    others = torch.ones_like(cosine, dtype=torch.bool)
    others[rows, labels] = False
    assert torch.allclose(logits[others] / scale, cosine[others], atol=1e-6)


@settings(max_examples=60, deadline=None)
@cases
def test_cosface_subtracts_the_margin_from_the_target_cosine_only(seed, batch, classes, margin, scale):
    cosine, labels = _cosines(seed, batch, classes)
    logits = cosface_logits(cosine, labels, scale, margin).double()
    rows = torch.arange(batch)
    assert torch.allclose(logits[rows, labels] / scale, cosine[rows, labels] - margin, atol=1e-6)
    others = torch.ones_like(cosine, dtype=torch.bool)
    others[rows, labels] = False
    assert torch.allclose(logits[others] / scale, cosine[others], atol=1e-6)


def test_arcface_threshold_branch_and_easy_margin_follow_insightface():
    margin = 0.5
    cosine = torch.tensor([[-0.95, 0.1], [-0.3, 0.2], [0.6, 0.0]])
    labels = torch.tensor([0, 0, 0])
    hard = arcface_logits(cosine, labels, 1.0, margin)[:, 0]
    # theta = arccos(-0.95) > pi - m: the linear fallback cos - m sin(pi - m)
    assert hard[0].item() == pytest.approx(-0.95 - math.sin(math.pi - margin) * margin, abs=1e-6)
    assert hard[1].item() == pytest.approx(math.cos(math.acos(-0.3) + margin), abs=1e-6)
    easy = arcface_logits(cosine, labels, 1.0, margin, easy_margin=True)[:, 0]
    assert easy[0].item() == pytest.approx(-0.95) and easy[1].item() == pytest.approx(-0.3)  # cos <= 0: untouched
    assert easy[2].item() == pytest.approx(math.cos(math.acos(0.6) + margin), abs=1e-6)


def test_ignored_labels_get_no_margin():
    cosine = torch.tensor([[0.5, 0.2], [0.3, 0.1]])
    labels = torch.tensor([-1, 1])
    for logits in (arcface_logits(cosine, labels, 2.0, 0.5), cosface_logits(cosine, labels, 2.0, 0.4)):
        assert torch.equal(logits[0], cosine[0] * 2.0)
        assert logits[1, 1].item() < 0.2 and logits[1, 0].item() == pytest.approx(0.6)


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_zero_margin_is_a_normalised_softmax(kind):
    torch.manual_seed(0)
    head = MarginHead(16, 7, kind=kind, scale=10.0, margin=0.0)
    embeddings, labels = torch.randn(5, 16) * 3, torch.randint(0, 7, (5,))
    expected = 10.0 * F.normalize(embeddings) @ F.normalize(head.weight).T
    logits = head(embeddings, labels)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(logits, head(embeddings * 17.0, labels), atol=1e-4)  # the embedding's length does not matter


def test_default_scales_and_margins_are_insightfaces():
    assert (MarginHead(4, 3, "arcface").scale, MarginHead(4, 3, "arcface").margin) == (64.0, 0.5)
    assert (MarginHead(4, 3, "cosface").scale, MarginHead(4, 3, "cosface").margin) == (64.0, 0.4)


def test_margin_heads_are_differentiable_everywhere():
    head = MarginHead(8, 4)
    embeddings = head.weight.detach()[[0, 1, 2]].clone().requires_grad_(True)  # cos = 1 exactly at the target
    loss = F.cross_entropy(head(embeddings, torch.tensor([0, 1, 2])), torch.tensor([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all() and torch.isfinite(head.weight.grad).all()
