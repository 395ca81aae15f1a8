"""Generator/discriminator architectures, presets and the generator export format."""
from __future__ import annotations

from torch import nn

from facegan.models.config import ModelConfig
from facegan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from facegan.models.stable import StableDiscriminator, StableGenerator

__all__ = ["ModelConfig", "build_generator", "build_discriminator", "Generator", "load_generator", "save_export"]


def build_generator(config: ModelConfig) -> nn.Module:
    """The generator network for a resolved config (resolution and channels set)."""
    config.validate()
    return DCGANGenerator(config) if config.architecture == "dcgan" else StableGenerator(config)


def build_discriminator(config: ModelConfig) -> nn.Module:
    """The discriminator network for a resolved config."""
    config.validate()
    return DCGANDiscriminator(config) if config.architecture == "dcgan" else StableDiscriminator(config)


def __getattr__(name: str):
    if name in ("Generator", "load_generator", "save_export"):
        from facegan.models import export

        return getattr(export, name)
    raise AttributeError(name)
