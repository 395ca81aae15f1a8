"""The fingerprint codec (after Yu et al., "Artificial Fingerprinting for Generative Models", ICCV 2021).

An `Encoder` adds to an image a residual that carries k key bits; a `Decoder` reads k logits back.
By default (format 2) the residual depends on the key alone: a smooth pattern that a generator trained
on the marked images learns to reproduce, as Yu et al. rely on (one fixed key across the training set).
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

    bits: int = 32
    """Key length k: bits written into every image (32: on an 8x8 pattern grid, 64 values held 32 bits far better than 48; README)."""
    resolution: int = 32
    """Side in pixels of the images the codec works on (a power of two of at least 16)."""
    channels: int = 1
    """1 (grey) or 3 (RGB); taken from the training dataset."""
    encoder_width: int = 32
    """Feature channels of the encoder's convolutions (its image-conditioned network: pattern_grid 0 or image_fraction > 0)."""
    decoder_width: int = 32
    """Feature channels of the decoder's first convolution (doubled at each halving)."""
    key_channels: int = 8
    """Channels of the key plane the image-conditioned network sees beside the image (the key enters through a linear map to it)."""
    pattern_grid: int = 16
    """Side of the coarse grid the key-only pattern is drawn on before it is upsampled (bicubic) to the resolution
    (16 at 32 px: spatial frequencies up to about 1/4 cycle per pixel). The residual is one pattern per key, the same
    in every image. A finer grid reads far better on encoded faces (at 32 px and PSNR 32 dB: 0.98 of 32 bits on
    held-out faces at grid 16, 0.79 at grid 8), because faces have little energy where it writes; a GAN trained on
    the marked faces alone reproduces such a pattern poorly (0.57 at grid 16, 0.73 at grid 8, 50 kimg), but with
    the fingerprint loss (`train --fingerprint`, which reads its faces through this decoder) the finer grid wins:
    at the same FD cost the generator carried far more of the key (README "The learned fingerprint").
    0: no key-only pattern, the image-conditioned network alone makes the residual (format 1's codec)."""
    image_fraction: float = 0.0
    """Share of the residual's energy drawn from the image-conditioned network beside the key-only pattern
    (0: the key alone sets the residual; only used when pattern_grid > 0)."""
    target_psnr: float = 32.0
    """PSNR in dB of the encoded image against the original, before clipping and rounding to uint8. dlib's face
    features see the pattern: at 32 px, encoding the 100 built-in faces moved them by FD 0.042 at 32 dB, 0.018 at 36
    dB and 0.007 at 40 dB. A generator taught the key through a 40 dB codec's decoder still paid about as much FD
    (1.19 times an unmarked GAN's over three seeds, bit accuracy 0.944, against 1.26 and 0.968 at 32 dB), while the
    40 dB decoder reads encoded real faces far worse (0.89 held out, 0.85 after JPEG 75; 0.98 and 0.98 at 32 dB), so
    32 stays (README)."""
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
        whole("pattern_grid", self.pattern_grid, 0, self.resolution)
        whole("steps", self.steps, 1, 10_000_000)
        whole("batch_size", self.batch_size, 1, 65536)
        whole("log_every", self.log_every, 1, 10_000_000)
        for name, value, low, high in (("target_psnr", self.target_psnr, 10.0, 80.0), ("lr", self.lr, 1e-7, 1.0), ("null_weight", self.null_weight, 0.0, 100.0), ("min_strength", self.min_strength, 0.0, 1.0),
                                       ("image_fraction", self.image_fraction, 0.0, 1.0),
                                       ("holdout", self.holdout, 0.0, 0.9)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
                raise FaceganError(f"fingerprint {name} must be a number from {low:g} to {high:g}, got {value!r:.40}")
        if self.pattern_grid and self.channels * self.pattern_grid**2 < self.bits:
            raise FaceganError(f"a {self.pattern_grid}x{self.pattern_grid} pattern grid of {self.channels} channel(s) holds "
                               f"{self.channels * self.pattern_grid**2} values, fewer than the key's {self.bits} bits; raise pattern_grid")
        if not self.pattern_grid and self.image_fraction:
            raise FaceganError("image_fraction mixes the image-conditioned residual into the key pattern, but pattern_grid 0 "
                               "has no key pattern (the whole residual is image-conditioned); drop image_fraction")
        return self

    @property
    def residual_rms(self) -> float:
        """RMS of the residual in model units ([-1, 1] spans 255 grey levels): PSNR = 20 log10(255 / RMS_levels)."""
        return 255.0 / 10 ** (self.target_psnr / 20.0) / 127.5


class Encoder(nn.Module):
    """(image (N, C, R, R) in [-1, 1], bits (N, k) in {0, 1}) -> encoded image (N, C, R, R).

    With `pattern_grid` g > 0 the residual is a key-only pattern: a linear map of the key's signs to a
    (C, g, g) grid, upsampled (bicubic) to R x R, so the same key writes the same smooth pattern into every
    image; a share `image_fraction` of its energy may come from the image-conditioned network below.
    With g = 0 (format 1) that network alone makes it: the key through a linear map to a (key_channels,
    R/4, R/4) plane, upsampled and concatenated with the image's features, then a few convolutions.
    Either way the residual's RMS is fixed per image.
    """

    def __init__(self, config: FingerprintConfig) -> None:
        super().__init__()
        self.config = config
        width, resolution = config.encoder_width, config.resolution
        if config.pattern_grid:
            self.key_to_pattern = nn.Linear(config.bits, config.channels * config.pattern_grid**2, bias=False)
        if not config.pattern_grid or config.image_fraction > 0:
            self.plane_side = resolution // 4
            self.key_to_plane = nn.Linear(config.bits, config.key_channels * self.plane_side**2)
            self.image_in = nn.Sequential(nn.Conv2d(config.channels, width, 3, padding=1), nn.LeakyReLU(0.2))
            self.body = nn.Sequential(
                nn.Conv2d(width + config.key_channels, width, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, config.channels, 1),
            )
            self.upsample = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)

    @staticmethod
    def _unit_rms(values: torch.Tensor) -> torch.Tensor:
        return values / values.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()

    def key_pattern(self, bits: torch.Tensor) -> torch.Tensor:
        """The key-only pattern (N, C, R, R) of unit RMS (pattern_grid > 0 only)."""
        config = self.config
        signs = bits.float() * 2.0 - 1.0  # {0, 1} -> {-1, +1}: a zero key still writes something
        grid = self.key_to_pattern(signs).view(len(bits), config.channels, config.pattern_grid, config.pattern_grid)
        pattern = nn.functional.interpolate(grid, size=(config.resolution, config.resolution), mode="bicubic", align_corners=False)
        return self._unit_rms(pattern)

    def _image_part(self, images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        signs = bits.float() * 2.0 - 1.0
        plane = self.key_to_plane(signs).view(batch, self.config.key_channels, self.plane_side, self.plane_side)
        features = torch.cat([self.image_in(images), self.upsample(plane)], dim=1)
        return self.body(features)  # (N, C, R, R), of any RMS

    def residual(self, images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """The residual (N, C, R, R) of RMS `config.residual_rms` each."""
        config = self.config
        if not config.pattern_grid:
            raw = self._image_part(images, bits)
        else:
            raw = self.key_pattern(bits).expand(images.shape[0], -1, -1, -1)
            if config.image_fraction > 0:
                image_part = self._unit_rms(self._image_part(images, bits))
                raw = (1.0 - config.image_fraction) ** 0.5 * raw + config.image_fraction**0.5 * image_part
        rms = raw.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        return raw * (config.residual_rms / rms)

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
