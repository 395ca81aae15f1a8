"""Refuse differential-privacy recipes and layers that would leak real data around the clipping.

Each error is one line naming the option or layer and what to use instead; `--preset dp` fixes them all.
Range checks of the privacy options themselves live with the config (`TrainConfig.validate`); here are
the checks that need to know what DP-SGD requires of a discriminator.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from torch.nn.utils import parametrize

from facegan.errors import FaceganError

if TYPE_CHECKING:
    from facegan.training.config import TrainConfig

FIX = "use --preset dp"


def check_private_config(config: TrainConfig) -> None:
    """Refuse DP with a recipe whose real-image gradients escape per-sample clipping (a no-op without DP).

    The architecture says which of its settings are DP-safe (`register_architecture(..., dp_safe=...)`).
    """
    if not config.privacy.enabled:
        return
    from facegan.models import get_architecture

    problem = get_architecture(config.model.architecture).dp_safe(config.model)
    if problem is not None:
        raise FaceganError(f"differentially private training cannot use {problem.reason}; {FIX} or {problem.fix}")
    if config.loss.r1_gamma > 0:
        # Disabled rather than privatised: R1 is a gradient on real images that would bypass per-sample clipping.
        raise FaceganError(
            f"differentially private training cannot use the R1 penalty (loss.r1_gamma={config.loss.r1_gamma:g} "
            f"is an unclipped gradient on real images); {FIX} or --set loss.r1_gamma=0"
        )


def check_private_discriminator(discriminator: nn.Module) -> None:
    """Refuse a built discriminator with a layer that has no correct per-sample gradient."""
    from opacus.validators import ModuleValidator

    from facegan.models.stable import MinibatchStd, ScaledSpectralNorm

    for name, module in discriminator.named_modules():
        where = f"discriminator layer '{name or type(module).__name__}' ({type(module).__name__})"
        if isinstance(module, ScaledSpectralNorm) or parametrize.is_parametrized(module):
            raise FaceganError(f"{where} is parametrized (spectral norm) and has no per-sample gradient; {FIX} or --set model.spectral_norm=false")
        if isinstance(module, MinibatchStd):
            raise FaceganError(f"{where} mixes the samples of a batch; {FIX} or --set model.minibatch_std=false")
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise FaceganError(f"{where} is BatchNorm, which mixes the samples of a batch; {FIX} (GroupNorm, --set model.d_norm=group)")
    errors = ModuleValidator.validate(discriminator, strict=False)
    if errors:
        raise FaceganError(f"the discriminator cannot be trained privately: {str(errors[0]).splitlines()[0]}; {FIX}")
