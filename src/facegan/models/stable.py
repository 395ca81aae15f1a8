"""The modern default architecture (`default` preset).

Generator: pixel-normalised z -> dense 4x4 -> [nearest up-sample, 3x3 conv, LeakyReLU, pixel norm] x2
per stage -> 1x1 conv to C -> tanh. Pixel norm (not BatchNorm) keeps every sample independent of its
batch, so an image depends only on its seed, and an EMA copy needs no statistics.
Discriminator: 1x1 from-image conv, then per stage two 3x3 convs and 2x average pooling down to 4x4,
minibatch-stddev, a 3x3 conv and two dense layers to one logit. Spectral norm on every layer.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from facegan.models.config import ModelConfig
from facegan.models.layers import Dropout
from facegan.models.registry import DPIncompatibility


def stage_channels(widest: int, narrowest: int, resolution: int) -> int:
    """Feature maps at a given resolution: widest at 4x4 and 8x8, halving with each doubling after."""
    return int(max(narrowest, min(widest, widest * 8 // resolution)))


def init_he(module: nn.Module, slope: float) -> None:
    """He init for layers feeding a LeakyReLU, so activations keep their scale through depth.

    PyTorch's default (kaiming-uniform with a=sqrt(5)) shrinks the signal about 1.7x per layer; a
    ten-layer discriminator then outputs near-constant logits and does not learn for thousands of steps.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, a=slope, nonlinearity="leaky_relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class ScaledSpectralNorm(nn.Module):
    """A spectrally normalised layer times a fixed gain: its initial spectral norm.

    Plain spectral norm divides each He-initialised layer by its largest singular value, about four
    times its typical gain, so a ten-layer discriminator starts a million times attenuated and barely
    separates real from fake within a CPU budget. A fixed (not learned) gain restores the He scale at
    initialisation while the network stays Lipschitz with a known constant (the product of the gains).
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        with torch.no_grad():
            weight = layer.weight.flatten(1)
            gain = torch.linalg.matrix_norm(weight, ord=2)
        self.layer = apply_spectral_norm(layer)
        self.register_buffer("gain", gain.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) * self.gain


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS (ProGAN); per sample, no batch statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class StableGenerator(nn.Module):
    """z (N, z_dim) -> images (N, C, H, W) in [-1, 1]."""

    # PixelNorm rescales z, so scaling z (the usual truncation) would change nothing: truncation is
    # applied to the normalised latent instead (see forward), and `render` passes it in.
    truncates_latent = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        slope = config.leaky_slope
        width = stage_channels(config.g_channels, config.min_channels, 4)
        self.norm = PixelNorm()
        self.dense = nn.Linear(config.z_dim, width * 16)
        self.stem = nn.Sequential(nn.LeakyReLU(slope), PixelNorm(), nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(slope), PixelNorm())
        stages: list[nn.Module] = []
        for level in range(3, int(math.log2(config.resolution)) + 1):
            out_width = stage_channels(config.g_channels, config.min_channels, 2**level)
            stages.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(width, out_width, 3, padding=1),
                    nn.LeakyReLU(slope),
                    PixelNorm(),
                    nn.Conv2d(out_width, out_width, 3, padding=1),
                    nn.LeakyReLU(slope),
                    PixelNorm(),
                )
            )
            width = out_width
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Conv2d(width, config.channels, 1)
        init_he(self, slope)

    def forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """`truncation` psi: dense(psi * norm(z)) = b + psi * (h - b), i.e. the first activation h pulled toward
        its mean b over z (E[norm(z)] = 0) — StyleGAN's truncation of an intermediate latent, here exact."""
        latent = self.norm(z)
        if truncation != 1.0:
            latent = latent * truncation
        x = self.dense(latent).view(z.shape[0], -1, 4, 4)  # (N, W, 4, 4)
        x = self.stages(self.stem(x))  # (N, W', R, R)
        return torch.tanh(self.to_image(x))  # (N, C, R, R)


class MinibatchStd(nn.Module):
    """Append the mean over features of the per-group standard deviation as one extra channel.

    Lets the discriminator see variety across samples, which discourages mode collapse. It mixes
    samples, so it is switched off for differentially private training.
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        group = min(self.group_size, batch)
        if batch % group:
            group = batch
        y = x.float().view(group, -1, channels, height, width)  # (G, N/G, C, H, W)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (N/G,)
        y = y.view(-1, 1, 1, 1).repeat(group, 1, height, width).to(x.dtype)  # (N, 1, H, W)
        return torch.cat([x, y], dim=1)


class StableDiscriminator(nn.Module):
    """images (N, C, H, W) -> real/fake logits (N,)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        slope = config.leaky_slope
        def wrap(layer: nn.Module) -> nn.Module:
            # He init first: spectral norm then rescales the weight it finds at wrap time.
            init_he(layer, slope)
            return ScaledSpectralNorm(layer) if config.spectral_norm else layer

        def norm(width: int) -> list[nn.Module]:
            # GroupNorm is per-sample, hence compatible with per-sample gradients (DP-SGD).
            return [nn.GroupNorm(min(8, width), width)] if config.d_norm == "group" else []

        def width_at(resolution: int) -> int:
            return stage_channels(config.d_channels, config.min_channels, resolution)

        width = width_at(config.resolution)
        self.from_image = nn.Sequential(wrap(nn.Conv2d(config.channels, width, 1)), nn.LeakyReLU(slope))
        stages: list[nn.Module] = []
        for level in range(int(math.log2(config.resolution)), 2, -1):
            out_width = width_at(2 ** (level - 1))
            layers: list[nn.Module] = [wrap(nn.Conv2d(width, width, 3, padding=1)), *norm(width), nn.LeakyReLU(slope)]
            layers += [wrap(nn.Conv2d(width, out_width, 3, padding=1)), *norm(out_width), nn.LeakyReLU(slope)]
            layers.append(nn.AvgPool2d(2))
            if config.d_dropout > 0:
                layers.append(Dropout(config.d_dropout))
            stages.append(nn.Sequential(*layers))
            width = out_width
        self.stages = nn.Sequential(*stages)
        self.minibatch_std = MinibatchStd() if config.minibatch_std else None
        head_in = width + (1 if config.minibatch_std else 0)
        self.head = nn.Sequential(
            wrap(nn.Conv2d(head_in, width, 3, padding=1)),
            nn.LeakyReLU(slope),
            nn.Flatten(),
            wrap(nn.Linear(width * 16, width)),
            nn.LeakyReLU(slope),
            wrap(nn.Linear(width, 1)),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.from_image(images))  # (N, W, 4, 4)
        if self.minibatch_std is not None:
            x = self.minibatch_std(x)  # (N, W+1, 4, 4)
        return self.head(x).squeeze(1)  # (N,)


def dp_incompatibility(config: ModelConfig) -> DPIncompatibility | None:
    """Why this discriminator cannot have per-sample gradients under `config`, or None (the `dp` preset)."""
    if config.spectral_norm:
        return DPIncompatibility(
            "spectral norm in the discriminator (its power iteration is shared across the batch, so per-sample gradients are wrong)",
            "--set model.spectral_norm=false",
        )
    if config.minibatch_std:
        return DPIncompatibility(
            "the minibatch-std layer (it mixes the samples of a batch, so one face changes every other face's gradient)",
            "--set model.minibatch_std=false",
        )
    return None
