"""DiffAugment: what each op does to the pixels, its documented ranges, probability, determinism, gradients."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.training.augment import DiffAugment
from facegan.training.config import AugmentConfig


def _augment(policy, seed=0, **kwargs):
    return DiffAugment(AugmentConfig(policy=policy, **kwargs), torch.Generator().manual_seed(seed))


def _shifted(image, dy, dx):
    """image (C, H, W) moved down by dy and right by dx, zero where nothing moved in."""
    out = torch.zeros_like(image)
    height, width = image.shape[1:]
    out[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = image[:, max(-dy, 0):height - max(dy, 0), max(-dx, 0):width - max(dx, 0)]
    return out


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 5), channels=st.sampled_from([1, 3]), side=st.sampled_from([8, 16, 32]), seed=st.integers(0, 1000))
def test_translation_shifts_each_image_by_at_most_the_ratio_with_zero_fill(batch, channels, side, seed):
    x = torch.arange(batch * channels * side * side, dtype=torch.float32).view(batch, channels, side, side) + 1.0  # unique, > 0
    y = _augment("translation", seed)(x)
    limit = int(side * 0.125 + 0.5)  # the default translation_ratio
    for i in range(batch):  # exactly one integer shift within the limit explains the whole output image
        matches = [(dy, dx) for dy in range(-limit, limit + 1) for dx in range(-limit, limit + 1) if torch.equal(y[i], _shifted(x[i], dy, dx))]
        assert len(matches) == 1, matches


def test_translation_draws_every_shift_in_range():
    x = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16).repeat(64, 1, 1, 1) + 1.0
    y = _augment("translation", 3, translation_ratio=0.125)(x)  # shifts in [-2, 2]
    shifts = {next((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(y[i], _shifted(x[i], dy, dx))) for i in range(64)}
    assert {dy for dy, _ in shifts} == {dx for _, dx in shifts} == {-2, -1, 0, 1, 2}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), side=st.sampled_from([8, 16]), ratio=st.sampled_from([0.25, 0.5]))
def test_cutout_zeroes_one_square_of_the_configured_size_clipped_by_the_border(seed, side, ratio):
    x = torch.rand(6, 2, side, side) + 1.0  # no zeros of its own
    y = _augment("cutout", seed, cutout_ratio=ratio)(x)
    size = int(side * ratio + 0.5)
    for i in range(6):
        zero = y[i] == 0
        assert torch.equal(zero[0], zero[1])  # the same square in every channel
        rows, cols = zero[0].any(1).nonzero().squeeze(1), zero[0].any(0).nonzero().squeeze(1)
        top, bottom, left, right = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
        assert zero[0, top:bottom, left:right].all() and int(zero[0].sum()) == (bottom - top) * (right - left)  # one rectangle
        assert torch.equal(y[i][~zero], x[i][~zero])  # everything else untouched
        # Full size unless the square runs off an edge, then clipped there.
        assert bottom - top == size or top == 0 or bottom == side
        assert right - left == size or left == 0 or right == side
        assert bottom - top <= size and right - left <= size


def test_cutout_squares_are_usually_whole():
    y = _augment("cutout", 1)(torch.ones(64, 1, 16, 16))
    assert int(((y == 0).flatten(1).sum(1) == 64).sum()) >= 16  # 8x8 squares lying fully inside the image


def _color_factors(x, y):
    """Recover brightness b, saturation s and contrast c from colour(x) = contrast(saturation(x + b))."""
    dims = (1, 2, 3)
    brightness = (y.mean(dims) - x.mean(dims))  # saturation and contrast keep the image mean
    x_pixel, y_pixel = x.mean(1, keepdim=True), y.mean(1, keepdim=True)  # (N, 1, H, W) per-pixel channel means
    contrast = (y_pixel - y_pixel.mean(dims, keepdim=True)).flatten(1).norm(dim=1) / (x_pixel - x_pixel.mean(dims, keepdim=True)).flatten(1).norm(dim=1)
    saturation = (y - y_pixel).flatten(1).norm(dim=1) / ((x - x_pixel).flatten(1).norm(dim=1) * contrast)
    return brightness, saturation, contrast


def test_color_changes_brightness_saturation_and_contrast_within_their_ranges():
    x = torch.rand(256, 3, 8, 8) * 2 - 1
    y = _augment("color", 4)(x)
    brightness, saturation, contrast = _color_factors(x, y)
    assert brightness.min() >= -0.5 and brightness.max() < 0.5 and brightness.max() - brightness.min() > 0.9
    assert saturation.min() >= 0 and saturation.max() < 2 and saturation.max() - saturation.min() > 1.8
    assert contrast.min() >= 0.5 and contrast.max() < 1.5 and contrast.max() - contrast.min() > 0.9
    # And nothing else: rebuilding the output from the three factors gives it back.
    view = lambda v: v.view(-1, 1, 1, 1)  # noqa: E731
    shifted = x + view(brightness)
    pixel = shifted.mean(1, keepdim=True)
    saturated = (shifted - pixel) * view(saturation) + pixel
    mean = saturated.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close((saturated - mean) * view(contrast) + mean, y, atol=1e-5, rtol=1e-5)


def test_color_on_gray_skips_saturation():
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    generator = torch.Generator().manual_seed(2)
    y = DiffAugment(AugmentConfig(policy="color"), generator)(x)
    brightness = y.mean((1, 2, 3)) - x.mean((1, 2, 3))
    contrast = (y - y.mean((1, 2, 3), keepdim=True)).flatten(1).norm(dim=1) / (x - x.mean((1, 2, 3), keepdim=True)).flatten(1).norm(dim=1)
    assert brightness.min() >= -0.5 and brightness.max() < 0.5 and contrast.min() >= 0.5 and contrast.max() < 1.5
    view = lambda v: v.view(-1, 1, 1, 1)  # noqa: E731
    shifted = x + view(brightness)
    torch.testing.assert_close((shifted - shifted.mean((1, 2, 3), keepdim=True)) * view(contrast) + shifted.mean((1, 2, 3), keepdim=True), y,
                               atol=1e-5, rtol=1e-5)
    # Two draws per image (brightness, contrast): no saturation factor is drawn for one channel.
    reference = torch.Generator().manual_seed(2)
    torch.rand(16, generator=reference), torch.rand(16, generator=reference)
    assert torch.equal(generator.get_state(), reference.get_state())


def test_probability_augments_each_image_or_leaves_it_exactly():
    x = torch.rand(32, 3, 16, 16)
    always = _augment("color,translation,cutout", 7)(x)
    sometimes = _augment("color,translation,cutout", 7, probability=0.5)(x)
    kept = [torch.equal(sometimes[i], x[i]) for i in range(32)]
    augmented = [torch.equal(sometimes[i], always[i]) for i in range(32)]
    assert all(a != b for a, b in zip(kept, augmented))  # each image is one or the other
    assert 8 <= sum(kept) <= 24


def test_same_generator_state_same_augmentation():
    x = torch.rand(4, 3, 16, 16)
    first = _augment("color,translation,cutout", 5)
    assert torch.equal(first(x), _augment("color,translation,cutout", 5)(x))
    assert not torch.equal(first(x), _augment("color,translation,cutout", 5)(x))  # the state moved on: new draws
    assert not torch.equal(_augment("color,translation,cutout", 5)(x), _augment("color,translation,cutout", 6)(x))


def test_gradients_flow_through_augmentation():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    _augment("color,translation,cutout")(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("policy, probability", [("", 1.0), ("color,translation,cutout", 0.0)])
def test_empty_policy_and_zero_probability_are_identity(policy, probability):
    x = torch.rand(2, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    assert torch.equal(DiffAugment(AugmentConfig(policy=policy, probability=probability), generator)(x), x)
    assert torch.equal(generator.get_state(), before)  # no draws either: the stream is not shifted
