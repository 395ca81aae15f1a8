"""Generator/discriminator architectures (a registry by name) and the generator export format."""
from __future__ import annotations

from torch import nn

from facegan.models import dcgan, stable
from facegan.models.config import ModelConfig
from facegan.models.registry import (
    Architecture,
    DPIncompatibility,
    always_dp_safe,
    available_architectures,
    get_architecture,
    never_dp_safe,
    register_architecture,
    unregister_architecture,
)

__all__ = [
    "ModelConfig", "build_generator", "build_discriminator", "Generator", "load_generator", "save_export",
    "Architecture", "DPIncompatibility", "register_architecture", "unregister_architecture", "available_architectures",
    "get_architecture", "always_dp_safe", "never_dp_safe",
]

register_architecture("dcgan", generator=dcgan.DCGANGenerator, discriminator=dcgan.DCGANDiscriminator, dp_safe=dcgan.dp_incompatibility)
register_architecture("stable", generator=stable.StableGenerator, discriminator=stable.StableDiscriminator, dp_safe=stable.dp_incompatibility)


def build_generator(config: ModelConfig) -> nn.Module:
    """The generator network for a resolved config (resolution and channels set)."""
    config.validate()
    return get_architecture(config.architecture).generator(config)


def build_discriminator(config: ModelConfig) -> nn.Module:
    """The discriminator network for a resolved config."""
    config.validate()
    return get_architecture(config.architecture).discriminator(config)


def __getattr__(name: str):
    if name in ("Generator", "load_generator", "save_export"):
        from facegan.models import export

        return getattr(export, name)
    raise AttributeError(name)
