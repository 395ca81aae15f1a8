"""The classic DCGAN recipe (the `seed-dcgan` preset), reproduced faithfully.

Generator: z (100) -> Dense to 4x4x256 -> BatchNorm -> LeakyReLU -> transposed 5x5 convolutions with
stride 2 (256 -> 128 -> 64 -> C), each but the last followed by BatchNorm + LeakyReLU -> tanh.
Resolution 32/64/128 by adding 256 -> 256 up-sampling stages in front of that tail.
Discriminator: stride-2 5x5 convolutions (64, 128, 256, ...) with LeakyReLU and dropout, down to 8x8,
flattened into one dense real/fake logit. As in the reference recipe, layers use Glorot-uniform init
and the convolutions before BatchNorm carry no bias.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from facegan.models.config import ModelConfig
from facegan.models.layers import Dropout
from facegan.models.registry import DPIncompatibility


def _num_up_stages(resolution: int) -> int:
    return int(math.log2(resolution)) - 2  # 4x4 -> resolution


def generator_channel_plan(config: ModelConfig) -> list[int]:
    """Feature maps from the 4x4 dense output to the image: e.g. [256, 128, 64, C] at 32 px."""
    widest = config.g_channels
    tail = [widest, widest // 2, widest // 4]
    return [widest] * (_num_up_stages(config.resolution) - 3) + tail + [config.channels]


def _glorot(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """z (N, z_dim) -> images (N, C, H, W) in [-1, 1]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        plan = generator_channel_plan(config)
        self.dense = nn.Linear(config.z_dim, 4 * 4 * plan[0], bias=False)
        self.dense_norm = nn.BatchNorm1d(4 * 4 * plan[0])
        self.act = nn.LeakyReLU(config.leaky_slope)
        layers: list[nn.Module] = []
        for index, (in_channels, out_channels) in enumerate(zip(plan[:-1], plan[1:])):
            last = index == len(plan) - 2
            # kernel 5, stride 2, padding 2, output_padding 1 doubles H and W ("same" padding).
            layers.append(
                nn.ConvTranspose2d(in_channels, out_channels, 5, stride=2, padding=2, output_padding=1, bias=last)
            )
            if not last:
                layers += [nn.BatchNorm2d(out_channels), nn.LeakyReLU(config.leaky_slope)]
        self.upsample = nn.Sequential(*layers)
        self.apply(_glorot)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.act(self.dense_norm(self.dense(z)))  # (N, 4*4*256)
        x = x.view(z.shape[0], -1, 4, 4)  # (N, 256, 4, 4)
        return torch.tanh(self.upsample(x))  # (N, C, R, R)


class DCGANDiscriminator(nn.Module):
    """images (N, C, H, W) -> real/fake logits (N,)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        num_stages = _num_up_stages(config.resolution) - 1  # down to 8x8, as the reference's 28 -> 7
        widths = [min(64 * 2**i, max(64, config.d_channels)) for i in range(num_stages)]
        layers: list[nn.Module] = []
        in_channels = config.channels
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, 5, stride=2, padding=2), nn.LeakyReLU(config.leaky_slope)]
            if config.d_dropout > 0:
                layers.append(Dropout(config.d_dropout))
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.logit = nn.Linear(in_channels * 8 * 8, 1)
        self.apply(_glorot)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(images)  # (N, W, 8, 8)
        return self.logit(x.flatten(1)).squeeze(1)  # (N,)


def dp_incompatibility(config: ModelConfig) -> DPIncompatibility | None:
    """Always DP-safe: the discriminator is convolutions, LeakyReLU and per-sample dropout (BatchNorm is only in G)."""
    return None
