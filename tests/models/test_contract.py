"""The contract every architecture keeps (as diffusers' model tests do): export round trip, seed
determinism, batch independence, output shape/range, logits shape, and a golden output slice."""
import numpy as np
import pytest
import torch

from facegan.models import build_discriminator, build_generator
from facegan.models.config import ModelConfig
from facegan.models.export import latents_for_seeds, load_generator, render, save_export

# (architecture, resolution, channels): every architecture at every resolution it supports that is tiny.
CASES = [("dcgan", 32, 1), ("stable", 8, 3), ("stable", 16, 1), ("stable", 32, 3)]
IDS = [f"{a}-{r}px-{c}ch" for a, r, c in CASES]


def tiny_config(architecture, resolution, channels):
    widths = {"g_channels": 32, "d_channels": 32} if architecture == "dcgan" else {"g_channels": 16, "d_channels": 16, "min_channels": 8}
    return ModelConfig(architecture=architecture, resolution=resolution, channels=channels, z_dim=16, **widths)


def build(case, seed=0):
    """G and D built from one global seed, in eval mode (no dropout, BatchNorm running statistics)."""
    config = tiny_config(*case)
    torch.manual_seed(seed)
    return config, build_generator(config).eval(), build_discriminator(config).eval()


def fixed_images(config, num=2):
    """A fixed input for D: a smooth ramp in [-1, 1] plus seeded noise, (num, C, R, R)."""
    side = config.resolution
    ramp = torch.linspace(-0.8, 0.8, side).view(1, 1, 1, side).expand(num, config.channels, side, side)
    noise = torch.randn(num, config.channels, side, side, generator=torch.Generator().manual_seed(3)) * 0.1
    return (ramp + noise).clamp(-1, 1)


# Printed once from the code as it was (torch.manual_seed(0), build, eval): G(z for seeds 0, 1)[0, 0, :2, :3]
# and D(fixed_images) logits. A change to initialisation or to any layer shows up here; if it is meant,
# print the new values and say why in the commit.
GOLDEN = {
    ("dcgan", 32, 1): ([[0.005019, 0.002478, 0.004518], [-0.002824, -0.002755, -0.010152]], [-0.003451, -0.001742]),
    ("stable", 8, 3): ([[-0.066584, -0.968252, -0.966971], [-0.876867, -0.866336, -0.987474]], [-0.277336, -0.290994]),
    ("stable", 16, 1): ([[-0.965908, -0.099905, -0.598755], [-0.11168, 0.130976, -0.379691]], [0.497771, 0.512895]),
    ("stable", 32, 3): ([[-0.753274, -0.579233, -0.91571], [-0.498833, -0.731427, -0.990086]], [0.165964, 0.16767]),
}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_golden_output_slice(case):
    config, generator, discriminator = build(case)
    with torch.no_grad():
        images = generator(latents_for_seeds([0, 1], config.z_dim))
        logits = discriminator(fixed_images(config))
    expected_slice, expected_logits = GOLDEN[case]
    torch.testing.assert_close(images[0, 0, :2, :3], torch.tensor(expected_slice), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits.flatten(), torch.tensor(expected_logits), atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_generator_output_shape_dtype_and_range(case):
    config, generator, _ = build(case)
    with torch.no_grad():
        images = generator(latents_for_seeds(range(5), config.z_dim))
    assert images.shape == (5, config.channels, config.resolution, config.resolution) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0  # tanh range, not a constant
    uint8 = render(generator, latents_for_seeds(range(5), config.z_dim))
    assert uint8.shape == (5, config.resolution, config.resolution, config.channels) and uint8.dtype == np.uint8


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_discriminator_returns_one_logit_per_image(case):
    config, _, discriminator = build(case)
    for num in (1, 4):
        with torch.no_grad():
            logits = discriminator(fixed_images(config, num))
        assert logits.shape in ((num,), (num, 1)) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_export_round_trip_gives_identical_outputs(case, tmp_path):
    config, generator, _ = build(case)
    save_export(tmp_path / "export", generator, config, {"dataset_hash": "x"})
    loaded = load_generator(tmp_path / "export")
    z = latents_for_seeds(range(3), config.z_dim)
    with torch.no_grad():
        assert torch.equal(loaded.module(z), generator(z))
    assert np.array_equal(loaded.sample(range(3)), render(generator, z))
    assert loaded.config == config and loaded.metadata["dataset_hash"] == "x"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_seed_same_model_other_seed_other_model(case):
    config, generator, discriminator = build(case, seed=5)
    _, same_g, same_d = build(case, seed=5)
    _, other_g, other_d = build(case, seed=6)
    for a, b in ((generator, same_g), (discriminator, same_d)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    z = latents_for_seeds(range(2), config.z_dim)
    assert np.array_equal(render(generator, z), render(same_g, z))
    assert not np.array_equal(render(generator, z), render(other_g, z))
    weights = lambda m: [t for t in m.state_dict().values() if t.is_floating_point() and t.numel() > 1]  # noqa: E731
    assert all(not torch.equal(x, y) for x, y in zip(weights(discriminator), weights(other_d)) if x.std() > 0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_image_does_not_depend_on_its_batch(case):
    config, generator, _ = build(case)
    batch = latents_for_seeds(range(7), config.z_dim)  # seed 3 sits in the middle
    with torch.no_grad():
        alone, together = generator(batch[3:4]), generator(batch)[3:4]
    # Float kernels sum in a batch-size-dependent order (measured up to 4e-5 at 32 px); any mixing of
    # samples (BatchNorm in train mode, minibatch statistics) would be orders of magnitude larger.
    torch.testing.assert_close(alone, together, atol=1e-4, rtol=0)
    generator.train()  # render() samples in eval mode whatever mode it is given, and restores it
    assert np.abs(render(generator, batch[3:4]).astype(int) - render(generator, batch)[3:4]).max() <= 1
    assert generator.training


def test_private_training_refuses_the_spectral_norm_discriminator_and_accepts_the_dp_preset():
    from facegan.errors import FaceganError
    from facegan.privacy.validate import check_private_discriminator
    from facegan.training.config import resolve_config

    config = tiny_config("stable", 16, 1)
    config.minibatch_std = False  # spectral norm alone is the reason
    with pytest.raises(FaceganError, match="spectral norm"):
        check_private_discriminator(build_discriminator(config))
    dp_model = resolve_config("dp").model
    dp_model.resolution, dp_model.channels, dp_model.d_channels, dp_model.min_channels = 16, 1, 16, 8
    check_private_discriminator(build_discriminator(dp_model))  # GroupNorm, no spectral norm, no minibatch std: accepted
