"""The masked-completion network and its patch discriminator (DeepFill v2 style, sized for 32-128 px chips).

`RepairNet` is a U-Net-shaped encoder-decoder built from gated convolutions (Yu et al., "Free-Form Image
Inpainting with Gated Convolution", ICCV 2019): every layer computes features and a sigmoid gate from the
same input, so the network learns per pixel and per channel how much to trust what it sees (a hole, the
hole's border, a noisy pixel) instead of treating a zeroed hole as black paint. Dilated gated convolutions
at the bottleneck widen the receptive field to the whole chip at 32-128 px without contextual attention.

Input: the image with its holes zeroed, plus the mask channel (1 = missing). Output: the image with the
holes filled; where an image has no hole at all (a degraded image to restore) the whole output is the
network's. Known pixels are copied from the input (`torch.where`, exact), never re-predicted.

`PatchDiscriminator` is SN-PatchGAN's: spectrally normalised stride-2 convolutions on image + mask, one
real/fake logit per patch, trained with the hinge loss.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from facegan.repair.config import MAX_RESOLUTION, MIN_RESOLUTION


class GatedConv2d(nn.Module):
    """conv -> (features, gate); out = act(features) * sigmoid(gate). 'same' padding, optional stride/dilation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 activation: bool = True) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        # One convolution makes both halves: half the launches of two separate convolutions.
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, stride, padding, dilation)
        self.activation = activation
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, gate = self.conv(x).chunk(2, dim=1)  # (B, out, H/stride, W/stride) each
        if self.activation:
            features = F.elu(features)  # DeepFill v2 uses ELU on the feature half
        return features * torch.sigmoid(gate)


class GatedUp(nn.Module):
    """Nearest x2 upsampling then a gated 3x3 convolution (no transposed-conv checkerboards)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = GatedConv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def num_downsamplings(resolution: int) -> int:
    """2 at 16-32 px, 3 at 64 px, 4 at 128 px and above: the bottleneck stays 8x8 (4x4 at 16 px)."""
    return max(2, min(4, int(math.log2(resolution)) - 3))


class RepairNet(nn.Module):
    """Gated-convolution encoder-decoder with skip connections: (image with holes, mask) -> repaired image."""

    def __init__(self, resolution: int, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1):
            raise ValueError(f"RepairNet works on square power-of-two sizes {MIN_RESOLUTION}-{MAX_RESOLUTION} px, got {resolution}")
        self.resolution, self.channels, self.width = resolution, channels, width
        depth = num_downsamplings(resolution)
        widths = [min(width * 2**level, 8 * width) for level in range(depth + 1)]
        self.stem = GatedConv2d(channels + 1, widths[0], 5)
        self.down = nn.ModuleList(GatedConv2d(widths[level], widths[level + 1], 3, stride=2) for level in range(depth))
        bottleneck = resolution >> depth
        # Dilations that still see inside the bottleneck (a dilation of 8 on a 4x4 map only sees padding).
        dilations = [d for d in (2, 4, 8) if d < bottleneck] or [1]
        self.middle = nn.Sequential(*[GatedConv2d(widths[-1], widths[-1], 3, dilation=d) for d in [1, *dilations, 1]])
        # Each up block takes the upsampled features concatenated with the encoder's features at that size.
        self.up = nn.ModuleList(GatedUp(widths[level + 1] if level == depth - 1 else 2 * widths[level + 1], widths[level])
                                for level in reversed(range(depth)))
        self.head = nn.Sequential(GatedConv2d(2 * widths[0], widths[0], 3), nn.Conv2d(widths[0], channels, 3, padding=1))

    def raw(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The network's own prediction for every pixel (before known pixels are copied back).

        images: float (B, C, H, W) in [-1, 1]; masks: float (B, 1, H, W), 1 = missing.
        """
        known = images * (1.0 - masks)  # holes read as 0 (mid-grey), whatever the input held there
        x = self.stem(torch.cat([known, masks], dim=1))  # (B, w, H, W)
        skips = [x]
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.middle(skips.pop())
        for index, layer in enumerate(self.up):
            x = layer(x if index == 0 else torch.cat([x, skips.pop()], dim=1))
        x = self.head(torch.cat([x, skips.pop()], dim=1))  # (B, C, H, W)
        # Residual on the known image: restoring a noisy face starts from the face, a hole starts from grey.
        return known + x

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Repaired images: holes filled, known pixels exactly the input's; an image without holes is restored whole."""
        raw = self.raw(images, masks)
        return composite(images, masks, raw)


def composite(images: torch.Tensor, masks: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Known pixels from `images`, holes from `predicted`; images with no hole at all take `predicted` whole.

    torch.where, not image * (1 - mask) + predicted * mask: a non-finite prediction cannot leak into a known
    pixel, and the known values are bit-equal to the input.
    """
    has_hole = masks.flatten(1).amax(1).view(-1, 1, 1, 1) > 0.5  # (B, 1, 1, 1)
    take_predicted = (masks > 0.5) | ~has_hole  # (B, 1, H, W), broadcast over channels
    return torch.where(take_predicted, predicted, images)


class PatchDiscriminator(nn.Module):
    """SN-PatchGAN: spectrally normalised 5x5 stride-2 convolutions on (image, mask) -> (B, 1, h, w) patch logits."""

    def __init__(self, resolution: int, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        # Down to 4x4 patches (each sees most of a small chip), at most 6 layers as in SN-PatchGAN.
        depth = max(2, min(6, int(math.log2(resolution)) - 2))
        layers: list[nn.Module] = []
        in_channels = channels + 1
        for level in range(depth):
            out_channels = min(width * 2**level, 4 * width)
            layers += [nn.utils.parametrizations.spectral_norm(nn.Conv2d(in_channels, out_channels, 5, 2, 2)), nn.LeakyReLU(0.2)]
            in_channels = out_channels
        layers.append(nn.utils.parametrizations.spectral_norm(nn.Conv2d(in_channels, 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([images, masks], dim=1))
