"""The architecture registry: each name maps to its generator, its discriminator, and its DP declaration.

An architecture declares whether its discriminator can be trained with per-sample gradients (DP-SGD)
under given settings; `facegan.privacy` asks that declaration instead of knowing architecture names.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from facegan.errors import FaceganError
from facegan.models.config import ModelConfig
from facegan.registry import Registry


@dataclass(frozen=True)
class DPIncompatibility:
    """Why a discriminator's settings break per-sample gradients, and the setting that fixes it."""

    reason: str
    """What cannot be used and why, e.g. "the minibatch-std layer (it mixes the samples of a batch ...)"."""
    fix: str
    """The option that removes it, e.g. "--set model.minibatch_std=false"."""


DPDeclaration = Callable[[ModelConfig], "DPIncompatibility | None"]


def always_dp_safe(config: ModelConfig) -> DPIncompatibility | None:
    """The declaration of an architecture whose discriminator is per-sample in every setting."""
    return None


def never_dp_safe(reason: str, fix: str) -> DPDeclaration:
    """The declaration of an architecture that can never be trained privately."""
    return lambda config: DPIncompatibility(reason, fix)


@dataclass(frozen=True)
class Architecture:
    """A registered generator/discriminator pair."""

    name: str
    generator: Callable[[ModelConfig], nn.Module]
    discriminator: Callable[[ModelConfig], nn.Module]
    dp_safe: DPDeclaration
    """None when the discriminator built for a config gives correct per-sample gradients, else why not."""


_ARCHITECTURES: Registry[Architecture] = Registry("architecture", unknown="unknown model.architecture '{name}' (known: {known})")


def register_architecture(name: str, *, generator: Callable[[ModelConfig], nn.Module],
                          discriminator: Callable[[ModelConfig], nn.Module], dp_safe: DPDeclaration) -> Architecture:
    """Add an architecture; `dp_safe(config)` must say why it cannot train privately (or None). Duplicate names are refused."""
    if not callable(dp_safe):
        raise FaceganError(f"architecture '{name}': dp_safe must be a function of the model config (always_dp_safe, never_dp_safe(...))")
    return _ARCHITECTURES.add(name, Architecture(name, generator, discriminator, dp_safe))


def unregister_architecture(name: str) -> None:
    """Remove a registered architecture (for tests and plug-ins that register temporarily)."""
    _ARCHITECTURES.remove(name)


def available_architectures() -> tuple[str, ...]:
    return tuple(_ARCHITECTURES.names())


def get_architecture(name: str) -> Architecture:
    return _ARCHITECTURES.get(name)
