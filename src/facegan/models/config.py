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
        from facegan.errors import FaceganError

        if self.resolution and (self.resolution < 8 or self.resolution & (self.resolution - 1)):
            raise FaceganError(f"model.resolution must be a power of two >= 8, got {self.resolution}")
        if self.architecture == "dcgan" and self.resolution and self.resolution not in (32, 64, 128):
            raise FaceganError(
                f"the dcgan architecture supports resolution 32, 64 or 128, got {self.resolution}; "
                "prepare the data with --size 32/64/128"
            )
        if self.channels not in (0, 1, 3):
            raise FaceganError(f"model.channels must be 1 or 3, got {self.channels}")
        if self.z_dim < 1:
            raise FaceganError(f"model.z_dim must be positive, got {self.z_dim}")
