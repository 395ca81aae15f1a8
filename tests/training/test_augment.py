"""DiffAugment: shapes, differentiability, determinism by generator state, each op's invariant."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.training.augment import DiffAugment
from facegan.training.config import AugmentConfig


def _augment(policy, seed=0, **kwargs):
    return DiffAugment(AugmentConfig(policy=policy, **kwargs), torch.Generator().manual_seed(seed))


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 5), channels=st.sampled_from([1, 3]), side=st.sampled_from([8, 16, 32]), seed=st.integers(0, 1000))
def test_translation_only_moves_pixels(batch, channels, side, seed):
    x = torch.rand(batch, channels, side, side) + 1.0  # all values > 0, so zero marks padding
    y = _augment("translation", seed)(x)
    assert y.shape == x.shape
    for i in range(batch):  # each output pixel is an input pixel of the same image or zero padding
        values = set(x[i].flatten().tolist()) | {0.0}
        assert set(y[i].flatten().tolist()) <= values


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), side=st.sampled_from([8, 16]))
def test_cutout_zeroes_a_square_of_the_configured_size(seed, side):
    x = torch.ones(3, 1, side, side)
    y = _augment("cutout", seed)(x)
    for i in range(3):
        zeros = int((y[i] == 0).sum())
        assert 0 < zeros <= (side // 2) ** 2


def test_same_generator_state_same_augmentation():
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(_augment("color,translation,cutout", 5)(x), _augment("color,translation,cutout", 5)(x))
    assert not torch.equal(_augment("color,translation,cutout", 5)(x), _augment("color,translation,cutout", 6)(x))


def test_gradients_flow_through_augmentation():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    _augment("color,translation,cutout")(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_empty_policy_and_zero_probability_are_identity():
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(_augment("")(x), x)
    assert torch.equal(_augment("color", probability=0.0)(x), x)


def test_color_on_gray_skips_saturation():
    x = torch.rand(2, 1, 8, 8)
    assert _augment("color")(x).shape == x.shape
