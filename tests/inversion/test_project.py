"""Projection (GAN inversion) on tiny random-init generators: recovery, masks, determinism, save/load, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facegan.errors import FaceganError
from facegan.inversion import composite, latent_split, load_latents, load_projection, project, save_projection
from facegan.models import ModelConfig, build_generator
from facegan.models.export import Generator


def _generator(architecture: str, resolution: int, channels: int = 1) -> Generator:
    torch.manual_seed(0)
    widths = {"g_channels": 16, "min_channels": 8} if architecture == "stable" else {"g_channels": 32}
    config = ModelConfig(architecture=architecture, resolution=resolution, channels=channels, z_dim=16, **widths)
    return Generator(build_generator(config), config)


@pytest.fixture(scope="module")
def dcgan():
    return _generator("dcgan", 32)


@pytest.fixture(scope="module")
def stable():
    return _generator("stable", 16)


FAST = {"steps": 40, "starts": 2, "identity_weight": 0.0}


def test_projection_of_a_generated_image_recovers_it(dcgan):
    targets = dcgan.sample([0, 1, 2])
    result = project(dcgan, targets, steps=120, starts=2, identity_weight=0.0)
    assert result.z.shape == (3, 16) and result.z.dtype == np.float32
    assert result.images.shape == targets.shape and result.images.dtype == np.uint8
    assert result.psnr.min() > 30.0, result.psnr
    assert result.ssim.min() > 0.95, result.ssim
    # The reconstruction is what the returned latents render (extended: through the cut activation).
    split = latent_split(dcgan.module)
    with torch.no_grad():
        rendered = split.rest(torch.from_numpy(result.extended))
    from facegan.images import to_uint8

    assert np.abs(to_uint8(rendered).numpy().astype(int) - result.images).max() <= 1


def test_z_only_projection_renders_from_z(dcgan):
    targets = dcgan.sample([5])
    result = project(dcgan, targets, extended=False, **FAST)
    assert result.extended is None
    again = dcgan.synthesize(torch.from_numpy(result.z))
    assert np.abs(again.astype(int) - result.images).max() <= 1


@pytest.mark.parametrize("architecture,resolution", [("stable", 16), ("dcgan", 32)])
def test_latent_split_is_the_generator(architecture, resolution):
    generator = _generator(architecture, resolution, channels=3)
    split = latent_split(generator.module)
    z = generator.z_for_seeds(range(3))
    with torch.no_grad():
        assert torch.equal(split.rest(split.first(z)), generator.module(z))


def test_latent_split_of_an_identity_generator_goes_through_the_identity_mapping():
    from facegan.models.conditional import ConditionalGenerator

    torch.manual_seed(0)
    config = ModelConfig(architecture="stable", resolution=16, channels=1, z_dim=16, g_channels=16, min_channels=8)
    module = ConditionalGenerator(config, 5, 4, build_generator(config)).eval()
    split = latent_split(module)
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.allclose(split.rest(split.first(z)), module(z), atol=1e-6)


def test_pixels_under_the_mask_do_not_count(stable):
    targets = stable.sample([3, 4])
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 4:10, 3:12] = True
    changed = targets.copy()
    changed[masks] = 255 - changed[masks]
    first = project(stable, targets, masks=masks, **FAST)
    second = project(stable, changed, masks=masks, **FAST)
    assert np.array_equal(first.z, second.z) and np.array_equal(first.images, second.images)
    # ... while a known pixel does count (the test above could not pass by ignoring the targets).
    moved = targets.copy()
    moved[:, 0, 0] = 255 - moved[:, 0, 0]
    third = project(stable, moved, masks=masks, **FAST)
    assert not np.array_equal(first.z, third.z)


def test_projection_is_deterministic_by_seed_and_independent_of_batch(stable):
    targets = stable.sample([7, 8, 9])
    first = project(stable, targets, seed=3, **FAST)
    again = project(stable, targets, seed=3, **FAST)
    assert np.array_equal(first.z, again.z) and np.array_equal(first.images, again.images)
    other = project(stable, targets, seed=4, **FAST)
    assert not np.array_equal(first.z, other.z)
    one_by_one = project(stable, targets, seed=3, batch_size=1, **FAST)
    assert np.allclose(first.z, one_by_one.z, atol=1e-3)
    # A face's result depends on its index and the seed, not on the other faces given with it.
    alone = project(stable, targets[2:], seed=3, **FAST)
    assert not np.array_equal(alone.z[0], first.z[2])  # index 0 here, 2 there: another start


def test_progress_counts_every_step(stable):
    calls = []
    project(stable, stable.sample([0, 1, 2]), batch_size=2, progress=lambda done, total: calls.append((done, total)), **FAST)
    total = calls[-1][1]
    assert calls[-1][0] == total == 2 * (10 + 40)  # two batches x (start phase 10 + refinement 40)
    assert [done for done, _ in calls] == list(range(1, total + 1))


def test_identity_term_changes_the_optimum(stable):
    targets = stable.sample([11])
    without = project(stable, targets, steps=4, starts=1, identity_weight=0.0)
    with_identity = project(stable, targets, steps=4, starts=1, identity_weight=1.0)
    assert not np.array_equal(without.z, with_identity.z)
    assert with_identity.loss[0] > without.loss[0]  # the identity term adds a positive squared distance
    # A stale identity gradient (recomputed every 2nd step) is another path, and is recorded.
    every_other = project(stable, targets, steps=4, starts=1, identity_weight=1.0, identity_every=2)
    assert not np.array_equal(every_other.z, with_identity.z) and every_other.settings["identity_every"] == 2
    with pytest.raises(FaceganError, match="identity_every must be an integer from 1"):
        project(stable, targets, steps=4, starts=1, identity_every=0)


def test_save_and_load_round_trip(tmp_path, stable):
    targets = stable.sample([0, 1, 2])
    result = project(stable, targets, names=["a.png", "b.png", "c.png"], **FAST)
    folder = save_projection(tmp_path / "proj", result, targets, source="test")
    assert sorted(p.name for p in folder.iterdir()) == ["extended.npy", "grid.png", "latents.npy", "projection.json", "reconstructions"]
    loaded = load_projection(folder)
    assert np.array_equal(loaded.z, result.z) and np.array_equal(loaded.extended, result.extended)
    assert np.array_equal(loaded.images, result.images)
    assert np.allclose(loaded.psnr, result.psnr) and loaded.names == ["a.png", "b.png", "c.png"]
    assert np.array_equal(load_latents(folder / "latents.npy", z_dim=16), result.z)
    # Saving a smaller projection over it leaves no stale reconstruction behind.
    smaller = project(stable, targets[:1], extended=False, **FAST)
    save_projection(folder, smaller, targets[:1])
    assert sorted(p.name for p in (folder / "reconstructions").iterdir()) == ["0000.png"]
    assert not (folder / "extended.npy").exists() and load_projection(folder).extended is None


def test_composite_keeps_known_pixels_exactly(stable):
    targets = stable.sample([0, 1])
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 5:9, 5:9] = True
    result = project(stable, targets, masks=masks, **FAST)
    repaired = composite(result.images, targets, masks)
    assert np.array_equal(repaired[~masks], targets[~masks])
    assert np.array_equal(repaired[masks], result.images[masks])


def test_size_mismatch_is_one_line(stable):
    with pytest.raises(FaceganError, match="the targets are 32x32, the generator makes 16x16"):
        project(stable, np.zeros((1, 32, 32, 1), np.uint8), **FAST)


def test_all_hole_mask_is_refused(stable):
    masks = np.zeros((2, 16, 16), bool)
    masks[1] = True
    with pytest.raises(FaceganError, match="mask 1 hides every pixel"):
        project(stable, stable.sample([0, 1]), masks=masks, **FAST)


def test_mask_of_another_size_is_refused(stable):
    with pytest.raises(FaceganError, match="the masks are 8x8, the images are 16x16"):
        project(stable, stable.sample([0]), masks=np.zeros((1, 8, 8), bool), **FAST)


def test_colour_targets_project_into_a_grey_generator(stable):
    grey = stable.sample([0])
    result = project(stable, np.repeat(grey, 3, axis=3), **FAST)
    reference = project(stable, grey, **FAST)
    assert np.array_equal(result.z, reference.z)


def test_load_latents_refuses_bad_files_in_one_line(tmp_path):
    np.save(tmp_path / "wrong_dim.npy", np.zeros((2, 8), np.float32))
    with pytest.raises(FaceganError, match="holds 8-D latents, the generator takes 16-D z"):
        load_latents(tmp_path / "wrong_dim.npy", z_dim=16)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FaceganError, match="cannot read latents"):
        load_latents(tmp_path / "objects.npy")
    np.save(tmp_path / "nan.npy", np.full((1, 16), np.nan, np.float32))
    with pytest.raises(FaceganError, match="NaN or infinite"):
        load_latents(tmp_path / "nan.npy")
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(FaceganError, match="cannot read latents"):
        load_latents(tmp_path / "text.npy")
    with pytest.raises(FaceganError, match="latents file not found"):
        load_latents(tmp_path / "missing.npy")
