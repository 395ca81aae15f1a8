"""Model configuration shared by every architecture (saved in run and export config.json)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ModelConfig:
    """Architecture of the generator/discriminator pair."""

    architecture: Literal["dcgan", "stable"] = "stable"
    """`dcgan`: the classic recipe (dense -> transposed convs + BatchNorm); `stable`: the modern default."""
    z_dim: int = 128
    """Length of the latent vector z ~ N(0, I)."""
    resolution: int = 0
    """Image side in pixels (power of two); 0 takes it from the dataset."""
    channels: int = 0
    """Image channels (1 gray, 3 RGB); 0 takes it from the dataset."""
    g_channels: int = 64
    """Widest generator feature maps (at 4x4); later stages halve down to `min_channels`."""
    d_channels: int = 64
    """Widest discriminator feature maps (at its last, coarsest stage)."""
    min_channels: int = 32
    """Narrowest feature maps of the `stable` architecture at full resolution."""
    leaky_slope: float = 0.2
    """Negative slope of every LeakyReLU."""
    spectral_norm: bool = True
    """Spectral normalisation of every discriminator layer (`stable` only)."""
    d_norm: Literal["none", "group"] = "none"
    """Extra discriminator normalisation (`group` is DP-compatible; BatchNorm never is)."""
    d_dropout: float = 0.0
    """Dropout after each discriminator stage (the classic DCGAN recipe uses 0.3)."""
    minibatch_std: bool = True
    """Minibatch standard-deviation feature in the discriminator (`stable` only; off under DP)."""

    def validate(self) -> None:
        """Refuse impossible or unfittable architectures before any weight is allocated."""
        from facegan.config import check_range, format_gib, show_value
        from facegan.errors import FaceganError

        if self.resolution < 0 or (self.resolution and (self.resolution < 8 or self.resolution > MAX_RESOLUTION or self.resolution & (self.resolution - 1))):
            raise FaceganError(f"model.resolution must be a power of two from 8 to {MAX_RESOLUTION}, got {self.resolution}")
        if self.architecture == "dcgan" and self.resolution and self.resolution not in (32, 64, 128):
            raise FaceganError(
                f"the dcgan architecture supports resolution 32, 64 or 128, got {self.resolution}; "
                "prepare the data with --size 32/64/128"
            )
        if self.channels not in (0, 1, 3):
            raise FaceganError(f"model.channels must be 1 or 3, got {self.channels}")
        width = max(self.g_channels, self.d_channels)
        for name in ("z_dim", "g_channels", "d_channels", "min_channels"):
            value = getattr(self, name)
            if value < 1:
                # The stable architecture would silently widen a 0 or negative width to min_channels.
                raise FaceganError(f"model.{name} must be at least 1, got {value}")
            if value > MAX_WIDTH:
                raise FaceganError(
                    f"model.{name}={show_value(value)} would need {format_gib(_weights_bytes(name, value, self.z_dim, width))} of weights; "
                    f"at most {MAX_WIDTH}"
                )
        if self.architecture == "dcgan" and self.g_channels < 4:
            raise FaceganError(f"the dcgan architecture halves model.g_channels twice, so it must be at least 4, got {self.g_channels}")
        check_range("model.leaky_slope", self.leaky_slope, 0, 1, max_open=True)
        check_range("model.d_dropout", self.d_dropout, 0, 1, max_open=True, hint="the classic DCGAN recipe uses 0.3")


# Beyond these no model fits a machine (or a 64-bit tensor size); refused with an estimate.
MAX_WIDTH = 4096
MAX_RESOLUTION = 1024


def _weights_bytes(name: str, value: int, z_dim: int, width: int) -> int:
    """Rough float32 size of the widest layers if `name` took `value` (two 3x3 convs, or the z -> 4x4 dense layer)."""
    if name == "z_dim":
        parameters = value * 16 * width
    else:
        parameters = 2 * 9 * value * value + z_dim * 16 * value
    return parameters * 4
