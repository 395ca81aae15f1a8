"""Distortions: the differentiable JPEG against Pillow's, gradients, and the evaluation registry."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.errors import FaceganError
from facegan.fingerprint.distortions import (
    EVAL_TRANSFORMS, LUMA_TABLE, CHROMA_TABLE, TRAIN_DISTORTIONS, apply_transform, differentiable_jpeg, jpeg, quality_tables,
    random_distortion,
)
from facegan.images import to_model, to_uint8


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    mse = np.mean((first.astype(np.float64) - second.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def faces32_images(faces32):
    from facegan.data.dataset import FaceDataset

    return np.array(FaceDataset.load(faces32).images[:40])


@pytest.mark.parametrize("quality", [30, 50, 75, 95])
def test_quality_tables_are_libjpegs(quality):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    stored = Image.open(buffer).quantization  # natural order in Pillow >= 8
    ours_luma = quality_tables(torch.tensor([float(quality)]), LUMA_TABLE)[0].flatten().int().tolist()
    ours_chroma = quality_tables(torch.tensor([float(quality)]), CHROMA_TABLE)[0].flatten().int().tolist()
    assert ours_luma == list(stored[0]) and ours_chroma == list(stored[1])


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_differentiable_jpeg_is_close_to_pillow_on_real_faces(faces32_images, quality):
    real = jpeg(faces32_images, quality)
    ours = to_uint8(differentiable_jpeg(to_model(faces32_images), float(quality))).numpy()
    assert psnr(real, faces32_images) < 40  # the JPEG really changes the images ...
    assert psnr(ours, real) > 45  # ... and ours changes them the way libjpeg does


def test_differentiable_jpeg_rgb_is_close_to_pillow(faces32_images):
    rgb = np.concatenate([faces32_images, np.roll(faces32_images, 3, axis=1), np.roll(faces32_images, 5, axis=2)], axis=3)
    real = jpeg(rgb, 75)
    ours = to_uint8(differentiable_jpeg(to_model(rgb), 75.0)).numpy()
    assert psnr(ours, real) > 36
    assert psnr(ours, real) > psnr(rgb, real) + 10


def test_differentiable_jpeg_has_gradients(faces32_images):
    images = to_model(faces32_images[:4]).requires_grad_(True)
    qualities = torch.tensor([50.0, 60.0, 80.0, 95.0])
    (differentiable_jpeg(images, qualities) * torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().mean() > 0.1


@pytest.mark.parametrize("name", TRAIN_DISTORTIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_training_distortions_keep_shape_and_gradient(name, channels):
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(3, channels, 16, 16, generator=generator) * 2 - 1).requires_grad_(True)
    out = random_distortion(images, generator, name)
    assert out.shape == images.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_registry_has_the_benchmark_transforms():
    expected = {"clean", "jpeg90", "jpeg75", "jpeg50", "resize0.5", "resize0.7", "resize0.9", "crop80", "crop90", "crop95", "blur", "noise", "grey"}
    assert expected <= set(EVAL_TRANSFORMS)


@pytest.mark.parametrize("name", list(EVAL_TRANSFORMS))
@pytest.mark.parametrize("channels", [1, 3])
def test_evaluation_transforms_return_uint8_images_of_the_same_shape(faces32_images, name, channels):
    images = np.repeat(faces32_images[:6], channels, axis=3)
    out = apply_transform(images, name)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out, apply_transform(images, name))  # deterministic (noise has a fixed seed)
    if name in ("clean",) or (name == "grey" and channels == 1):
        assert np.array_equal(out, images)
    elif name != "grey":
        assert not np.array_equal(out, images)
    if name == "grey" and channels == 3:
        assert np.array_equal(out[..., 0], out[..., 1])


def test_unknown_transform_is_refused(faces32_images):
    with pytest.raises(FaceganError, match="unknown image transform 'jpeg12'"):
        apply_transform(faces32_images, "jpeg12")
