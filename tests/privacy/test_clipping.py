"""Per-sample gradients, clipping and noise: no single real face moves the update by more than C / E[batch]."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.models import ModelConfig, build_discriminator
from facegan.privacy.dp import clip_and_noise, per_sample_gradients
from facegan.training.losses import get_loss

EXPECTED_BATCH = 4.0


def tiny_discriminator(seed: int = 0) -> torch.nn.Module:
    """The `dp`-preset discriminator at 8x8 gray, 8 channels: GroupNorm, no spectral norm, no minibatch std."""
    torch.manual_seed(seed)
    config = ModelConfig(resolution=8, channels=1, d_channels=8, min_channels=8, spectral_norm=False, d_norm="group", minibatch_std=False)
    return build_discriminator(config)


DISCRIMINATOR = tiny_discriminator()


def private_gradient(images: torch.Tensor, max_grad_norm: float, kind: str = "logistic") -> torch.Tensor:
    """The noiseless private real-face gradient of `images`, flattened over all parameters."""
    per_sample, _ = per_sample_gradients(DISCRIMINATOR, images, kind)
    private = clip_and_noise(per_sample, max_grad_norm, noise_multiplier=0.0, expected_batch_size=EXPECTED_BATCH)
    return torch.cat([value.flatten() for value in private.values()])


def test_per_sample_gradients_equal_each_face_alone():
    images = torch.randn(3, 1, 8, 8)
    per_sample, logits = per_sample_gradients(DISCRIMINATOR, images, "logistic")
    for index in range(3):
        DISCRIMINATOR.zero_grad()
        logit = DISCRIMINATOR(images[index : index + 1])
        get_loss("logistic").real_sample_losses(logit).sum().backward()
        assert logits[index].item() == pytest.approx(logit.item(), abs=1e-5)
        for name, param in DISCRIMINATOR.named_parameters():
            torch.testing.assert_close(per_sample[name][index], param.grad, atol=1e-5, rtol=1e-4)
    DISCRIMINATOR.zero_grad()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    num_others=st.integers(0, 5),
    max_grad_norm=st.floats(1e-3, 1.0),
    kind=st.sampled_from(["logistic", "hinge"]),
    seed=st.integers(0, 2**16),
)
def test_one_face_moves_the_private_gradient_by_at_most_c_over_expected_batch(num_others, max_grad_norm, kind, seed):
    # Per-face gradient norms of this discriminator are ~1-4, so the bound C binds in almost every example.
    generator = torch.Generator().manual_seed(seed)
    batch = torch.rand(num_others + 1, 1, 8, 8, generator=generator) * 2 - 1
    replacement = torch.rand(1, 1, 8, 8, generator=generator) * 2 - 1
    index = int(torch.randint(num_others + 1, (1,), generator=generator))
    bound = max_grad_norm / EXPECTED_BATCH
    with_face = private_gradient(batch, max_grad_norm, kind)
    without_face = private_gradient(torch.cat([batch[:index], batch[index + 1 :]]), max_grad_norm, kind)  # may be empty
    replaced = private_gradient(torch.cat([batch[:index], replacement, batch[index + 1 :]]), max_grad_norm, kind)
    assert (with_face - without_face).norm().item() <= bound * (1 + 1e-4)  # add/remove one face
    assert (with_face - replaced).norm().item() <= 2 * bound * (1 + 1e-4)  # replace one face
    assert with_face.norm().item() <= (num_others + 1) * bound * (1 + 1e-4)


def test_without_clipping_one_face_would_move_it_further():
    """The property above can fail: the same faces with the bound lifted exceed it by far."""
    batch = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    unclipped = private_gradient(batch, max_grad_norm=1e9) - private_gradient(batch[1:], max_grad_norm=1e9)
    clipped = private_gradient(batch, max_grad_norm=0.1) - private_gradient(batch[1:], max_grad_norm=0.1)
    assert clipped.norm().item() == pytest.approx(0.1 / EXPECTED_BATCH, rel=1e-4)  # this face's gradient is clipped to C
    assert unclipped.norm().item() > 10 * 0.1 / EXPECTED_BATCH


def test_noise_is_gaussian_with_std_sigma_c_over_expected_batch_even_for_an_empty_batch():
    per_sample, logits = per_sample_gradients(DISCRIMINATOR, torch.zeros(0, 1, 8, 8), "logistic")
    assert logits.shape == (0,) and all(value.shape[0] == 0 for value in per_sample.values())
    noisy = clip_and_noise(per_sample, max_grad_norm=0.5, noise_multiplier=2.0, expected_batch_size=EXPECTED_BATCH,
                           generator=torch.Generator().manual_seed(0))
    assert {name: value.shape for name, value in noisy.items()} == {name: p.shape for name, p in DISCRIMINATOR.named_parameters()}
    flat = torch.cat([value.flatten() for value in noisy.values()])
    assert flat.numel() > 2000  # enough draws to pin the std to a few percent
    assert flat.std().item() == pytest.approx(2.0 * 0.5 / EXPECTED_BATCH, rel=0.05)
    assert abs(flat.mean().item()) < 4 * flat.std().item() / math.sqrt(flat.numel())
