"""The fingerprint codec (after Yu et al., "Artificial Fingerprinting for Generative Models", ICCV 2021).

An `Encoder` adds to an image a residual that carries k key bits; a `Decoder` reads k logits back.
The residual's energy is fixed by construction (its RMS is set from `FingerprintConfig.target_psnr`),
so the networks trade nothing for imperceptibility: training only has to make the bits readable
under the distortions of `distortions.py`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from facegan.errors import FaceganError

from facegan.fingerprint import MAX_BITS, MIN_BITS  # noqa: E402 - the limits live where the CLI reads them without torch
MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024


@dataclass
class FingerprintConfig:
    """Architecture and training of a fingerprint codec (saved in fingerprint.json)."""

    bits: int = 48
    """Key length k: bits written into every image."""
    resolution: int = 32
    """Side in pixels of the images the codec works on (a power of two of at least 16)."""
    channels: int = 1
    """1 (grey) or 3 (RGB); taken from the training dataset."""
    encoder_width: int = 32
    """Feature channels of the encoder's convolutions."""
    decoder_width: int = 32
    """Feature channels of the decoder's first convolution (doubled at each halving)."""
    key_channels: int = 8
    """Channels of the key plane the encoder sees beside the image (the key enters through a linear map to it)."""
    target_psnr: float = 32.0
    """PSNR in dB of the encoded image against the original, before clipping and rounding to uint8."""
    steps: int = 1400
    """Optimiser steps (~100 s on 2 CPU cores at 32 px, batch 64)."""
    batch_size: int = 64
    """Images (each with its own random key) per step."""
    lr: float = 2e-3
    """Peak Adam learning rate (one cycle: warm-up over 10 % of the steps, then cosine annealing toward 0)."""
    min_strength: float = 1.0
    """Below 1, half of each batch has its residual scaled by a random factor in [min_strength, 1]: a generator
    trained on marked images reproduces the residual only in part. 1 (the default) turns it off."""
    null_weight: float = 0.0
    """Weight of a loss that keeps the decoder undecided (logits near 0) on never-encoded images, so an unmarked
    image does not lean toward the key. Measured in benchmarks/fingerprint.py, (null_weight 1, min_strength 0.3)
    against the defaults (0, 1): never-encoded real faces called fingerprinted at the nominal rate (1 % vs 3 % at a
    nominal 0.66 %), a 50 kimg GAN's faces carrying the key no better (bit accuracy 0.61 both), strong crops and
    resizes read worse (crop 80 %: 0.48 vs 0.74) and twice the training time; hence off by default."""
    holdout: float = 0.2
    """Fraction of the dataset held out of training to measure the bit accuracy."""
    log_every: int = 100
    """Steps between log lines (the only host synchronisations of the loop)."""

    def validate(self) -> "FingerprintConfig":
        def whole(name: str, value: object, low: int, high: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise FaceganError(f"fingerprint {name} must be a whole number from {low} to {high}, got {value!r:.40}")

        whole("bits", self.bits, MIN_BITS, MAX_BITS)
        whole("resolution", self.resolution, MIN_RESOLUTION, MAX_RESOLUTION)
        if self.resolution & (self.resolution - 1):
            raise FaceganError(f"fingerprint resolution must be a power of two (16, 32, 64, ...), got {self.resolution}")
        if self.channels not in (1, 3):
            raise FaceganError(f"fingerprint channels must be 1 or 3, got {self.channels!r:.40}")
        whole("encoder_width", self.encoder_width, 1, 1024)
        whole("decoder_width", self.decoder_width, 1, 1024)
        whole("key_channels", self.key_channels, 1, 256)
        whole("steps", self.steps, 1, 10_000_000)
        whole("batch_size", self.batch_size, 1, 65536)
        whole("log_every", self.log_every, 1, 10_000_000)
        for name, value, low, high in (("target_psnr", self.target_psnr, 10.0, 80.0), ("lr", self.lr, 1e-7, 1.0), ("null_weight", self.null_weight, 0.0, 100.0), ("min_strength", self.min_strength, 0.0, 1.0),
                                       ("holdout", self.holdout, 0.0, 0.9)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
                raise FaceganError(f"fingerprint {name} must be a number from {low:g} to {high:g}, got {value!r:.40}")
        return self

    @property
    def residual_rms(self) -> float:
        """RMS of the residual in model units ([-1, 1] spans 255 grey levels): PSNR = 20 log10(255 / RMS_levels)."""
        return 255.0 / 10 ** (self.target_psnr / 20.0) / 127.5


class Encoder(nn.Module):
    """(image (N, C, R, R) in [-1, 1], bits (N, k) in {0, 1}) -> encoded image (N, C, R, R).

    The key goes through a linear map to a (key_channels, R/4, R/4) plane, upsampled and concatenated
    with the image's features; a few convolutions make a residual whose RMS is fixed per image.
    """

    def __init__(self, config: FingerprintConfig) -> None:
        super().__init__()
        self.config = config
        width, resolution = config.encoder_width, config.resolution
        self.plane_side = resolution // 4
        self.key_to_plane = nn.Linear(config.bits, config.key_channels * self.plane_side**2)
        self.image_in = nn.Sequential(nn.Conv2d(config.channels, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.body = nn.Sequential(
            nn.Conv2d(width + config.key_channels, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, config.channels, 1),
        )
        self.upsample = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)

    def residual(self, images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """The residual (N, C, R, R) of RMS `config.residual_rms` each."""
        batch = images.shape[0]
        signs = bits.float() * 2.0 - 1.0  # {0, 1} -> {-1, +1}: a zero key still writes something
        plane = self.key_to_plane(signs).view(batch, self.config.key_channels, self.plane_side, self.plane_side)
        features = torch.cat([self.image_in(images), self.upsample(plane)], dim=1)
        raw = self.body(features)  # (N, C, R, R)
        rms = raw.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        return raw * (self.config.residual_rms / rms)

    def forward(self, images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        return images + self.residual(images, bits)


class Decoder(nn.Module):
    """image (N, C, R, R) in [-1, 1] -> k logits (positive: bit 1)."""

    def __init__(self, config: FingerprintConfig) -> None:
        super().__init__()
        self.config = config
        width = config.decoder_width
        layers: list[nn.Module] = [nn.Conv2d(config.channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        side, channels = config.resolution, width
        while side > 4:  # halve to 4 x 4, doubling the channels up to 4x the first width
            out = min(channels * 2, width * 4)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            side, channels = side // 2, out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, 256), nn.LeakyReLU(0.2), nn.Linear(256, config.bits))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
