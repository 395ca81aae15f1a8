"""Format 2's key-only pattern: one smooth residual per key, the same in every image, and format 1 still loads.

Why it matters (README "The learned fingerprint"): a GAN trained for 50 kimg on 32 px faces reproduces a fixed
smooth pattern almost fully but a near-Nyquist, image-dependent residual hardly at all, so format 1's key did not
transfer. These tests pin the properties that make the difference; benchmarks/fingerprint.py measures the transfer.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from facegan.errors import FaceganError
from facegan.fingerprint import FingerprintConfig, detect, load_fingerprint, train_fingerprint
from facegan.fingerprint.codec import Encoder
from facegan.fingerprint.fingerprint import CONFIG_NAME, FORMAT_VERSION


def _radial_energy(residuals: np.ndarray, cutoff: float) -> float:
    """Fraction of the residuals' energy at spatial frequencies above `cutoff` cycles per pixel."""
    spectrum = (np.abs(np.fft.fft2(residuals[..., 0].astype(np.float64))) ** 2).sum(0)
    frequencies = np.fft.fftfreq(residuals.shape[1])
    radius = np.sqrt(frequencies[:, None] ** 2 + frequencies[None] ** 2)
    return float(spectrum[radius > cutoff].sum() / spectrum.sum())


def test_the_residual_is_the_same_in_every_image_and_smooth(tiny_fingerprint, faces16_images):
    assert tiny_fingerprint.config.pattern_grid > 0 and tiny_fingerprint.config.image_fraction == 0
    originals = faces16_images[:40]
    residuals = tiny_fingerprint.encode(originals).astype(np.int16) - originals
    # Away from clipping at 0 and 255, every face gets the very same residual (up to rounding to grey levels).
    reference = np.median(residuals, axis=0, keepdims=True)
    inside = (originals + reference > 0) & (originals + reference < 255)
    assert np.abs(residuals - reference)[inside].max() <= 1
    # Its energy sits below the coarse grid's Nyquist frequency (grid g over R px: g / (2R) cycles per pixel),
    # where a generator reproduces it; format 1's residual had 64 % of its energy at 0.3-0.5 cycles per pixel.
    nyquist = tiny_fingerprint.config.pattern_grid / (2 * tiny_fingerprint.resolution)
    assert _radial_energy(residuals.astype(np.float64) * inside, 2 * nyquist) < 0.1


def test_the_key_pattern_alone_carries_the_key(tiny_fingerprint, faces16_images):
    """Adding only the key's pattern (what a generator that learned the data's mean difference would add) is read."""
    key = torch.from_numpy(tiny_fingerprint.key).float()[None]
    pattern = tiny_fingerprint.encoder.key_pattern(key)[0].permute(1, 2, 0).numpy() * tiny_fingerprint.config.residual_rms * 127.5
    marked = np.clip(faces16_images.astype(np.float64) + pattern, 0, 255).round().astype(np.uint8)
    assert tiny_fingerprint.bit_accuracy(marked).mean() > 0.75
    # Half the pattern's amplitude (a generator that reproduces it only in part) is still read above chance.
    half = np.clip(faces16_images.astype(np.float64) + 0.5 * pattern, 0, 255).round().astype(np.uint8)
    assert tiny_fingerprint.bit_accuracy(half).mean() > 0.6
    assert detect(faces16_images, tiny_fingerprint).detection_rate <= 0.05


def test_pattern_and_image_parts_mix_at_the_stated_energy():
    torch.manual_seed(0)
    config = FingerprintConfig(bits=8, resolution=16, encoder_width=4, key_channels=2, pattern_grid=4, image_fraction=0.25).validate()
    encoder = Encoder(config)
    images = torch.rand(6, 1, 16, 16) * 2 - 1
    bits = torch.randint(0, 2, (1, 8)).float().expand(6, -1)
    residual = encoder.residual(images, bits)  # (6, 1, 16, 16)
    rms = residual.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, config.residual_rms), rtol=1e-4)
    # A quarter of the energy follows the image: the residuals of different images differ, but stay close to the pattern.
    pattern = encoder.key_pattern(bits[:1]) * config.residual_rms
    cosine = (residual * pattern).sum(dim=(1, 2, 3)) / (residual.flatten(1).norm(dim=1) * pattern.norm())
    assert (cosine > 0.5).all() and (cosine < 0.999).all()
    with pytest.raises(FaceganError, match="pattern_grid"):
        FingerprintConfig(resolution=16, pattern_grid=17).validate()
    with pytest.raises(FaceganError, match="image_fraction"):
        FingerprintConfig(image_fraction=1.5).validate()
    with pytest.raises(FaceganError, match="fewer than the key's 32 bits; raise pattern_grid"):
        FingerprintConfig(bits=32, channels=1, pattern_grid=5).validate()  # 25 grid values cannot hold 32 bits
    FingerprintConfig(bits=32, channels=3, pattern_grid=4).validate()  # 48 values can
    with pytest.raises(FaceganError, match="drop image_fraction"):
        FingerprintConfig(pattern_grid=0, image_fraction=0.5).validate()


def test_a_format_1_fingerprint_still_loads_and_encodes_as_before(faces16, faces16_images, tmp_path):
    """Format 1 (no key-only pattern) is kept as pattern_grid 0; a folder saved by it loads without the new keys."""
    config = FingerprintConfig(bits=8, steps=3, batch_size=4, encoder_width=4, decoder_width=4, key_channels=1, pattern_grid=0)
    made = train_fingerprint(faces16, tmp_path / "v2", config, seed=0)
    old = tmp_path / "v1"
    shutil.copytree(made.path, old)
    metadata = json.loads((old / CONFIG_NAME).read_text())
    assert metadata["format_version"] == FORMAT_VERSION == 2
    metadata["format_version"] = 1
    for name in ("pattern_grid", "image_fraction"):
        del metadata["config"][name]  # what format 1 wrote
    (old / CONFIG_NAME).write_text(json.dumps(metadata))
    loaded = load_fingerprint(old)
    assert loaded.config.pattern_grid == 0 and loaded.id == made.id
    assert np.array_equal(loaded.encode(faces16_images[:10]), made.encode(faces16_images[:10]))
    # A format-1 folder that names format-2 keys is inconsistent, and says so in one line.
    metadata["config"]["pattern_grid"] = 8
    (old / CONFIG_NAME).write_text(json.dumps(metadata))
    with pytest.raises(FaceganError, match="format 1 but its config has format-2 keys"):
        load_fingerprint(old)
    metadata["format_version"] = 3
    (old / CONFIG_NAME).write_text(json.dumps(metadata))
    with pytest.raises(FaceganError, match="newer facegan"):
        load_fingerprint(old)


def test_the_demo_refuses_a_format_1_fingerprint_it_left_before(faces16, tmp_path):
    from facegan.data.dataset import FaceDataset
    from facegan.demo import ensure_fingerprint

    folder = tmp_path / "fingerprint"
    train_fingerprint(faces16, folder, FingerprintConfig(bits=8, steps=2, batch_size=4, encoder_width=4, decoder_width=4, key_channels=1,
                                                         pattern_grid=0), seed=0)
    with pytest.raises(FaceganError, match="earlier facegan's demo .*make clean"):
        ensure_fingerprint(folder, FaceDataset.load(faces16), steps=None, progress=False)
