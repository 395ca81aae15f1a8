"""Refuse differential-privacy options that are impossible or would leak real data around the clipping.

Each error is one line naming the option or layer and what to use instead; `--preset dp` fixes them all.
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
    """Refuse privacy settings out of range, and DP with a recipe whose real-image gradients escape clipping."""
    privacy = config.privacy
    if privacy.epsilon < 0 or privacy.noise_multiplier < 0:
        raise FaceganError("privacy.epsilon and privacy.noise_multiplier must be >= 0 (0 = not set)")
    if privacy.max_grad_norm <= 0:
        raise FaceganError(f"privacy.max_grad_norm (--dp-max-grad-norm) must be positive, got {privacy.max_grad_norm}")
    if not 0 <= privacy.delta < 1:
        raise FaceganError(f"privacy.delta (--dp-delta) must be in [0, 1), got {privacy.delta}; 0 picks 1/(10 N)")
    if not privacy.enabled:
        return
    model = config.model
    if model.architecture == "stable" and model.spectral_norm:
        raise FaceganError(
            "differentially private training cannot use spectral norm in the discriminator (its power iteration "
            f"is shared across the batch, so per-sample gradients are wrong); {FIX} or --set model.spectral_norm=false"
        )
    if model.architecture == "stable" and model.minibatch_std:
        raise FaceganError(
            "differentially private training cannot use the minibatch-std layer (it mixes the samples of a batch, so "
            f"one face changes every other face's gradient); {FIX} or --set model.minibatch_std=false"
        )
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
