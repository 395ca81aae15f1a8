"""GAN inversion: find the latent that reproduces a face (pixel + face-space loss, several starts, optional mask).

    from facegan.inversion import project, save_projection
    result = project(load_generator("runs/lfw32"), targets_uint8_nhwc, masks=None, steps=300)
    save_projection("out/proj", result, targets)      # latents.npy, reconstructions/, grid.png, projection.json
"""
from __future__ import annotations

from facegan.inversion.projector import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_IDENTITY_WEIGHT,
    DEFAULT_STARTS,
    DEFAULT_STEPS,
    LatentSplit,
    ProjectionResult,
    composite,
    latent_split,
    measure,
    project,
)
from facegan.inversion.results import load_latents, load_projection, read_targets, save_projection

__all__ = [
    "DEFAULT_BATCH_SIZE", "DEFAULT_IDENTITY_WEIGHT", "DEFAULT_STARTS", "DEFAULT_STEPS", "LatentSplit", "ProjectionResult",
    "composite", "latent_split", "measure", "project", "load_latents", "load_projection", "read_targets", "save_projection",
]
