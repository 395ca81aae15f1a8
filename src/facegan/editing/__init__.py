"""Attribute editing: InterFaceGAN directions in a generator's latent space, with conditional manipulation.

    from facegan.editing import edit_strip, strip_image
    result = edit_strip("runs/rf32", "Smiling", [-3, -1.5, 0, 1.5, 3], seeds=range(8), condition_on=["Male"])
    result.images          # uint8 (faces, strengths, H, W, C); the strength-0 column is the original sample
    result.report          # what `facegan edit` writes to STRIP.json: score change, others' change, identity drift

The pieces: `train_classifier` / `cached_classifier` (attribute labels -> AttributeClassifier),
`find_directions` / `cached_directions` (InterFaceGAN boundaries), `condition_direction`
(n - N (N^T N)^-1 N^T n), `facegan.editing.edit.edit` (z + s d; not re-exported here, where the name
is the submodule's) and `measure_edit`. Names are re-exported lazily, so importing this package loads no torch.
"""
from __future__ import annotations

from facegan.lazy import lazy_exports


_EXPORTS = {
    "AttributeClassifier": "classifier",
    "ClassifierSettings": "classifier",
    "cached_classifier": "classifier",
    "load_classifier": "classifier",
    "train_classifier": "classifier",
    "DirectionSettings": "directions",
    "Directions": "directions",
    "cached_directions": "directions",
    "condition_direction": "directions",
    "find_directions": "directions",
    "EditResult": "edit",
    "edit_strip": "edit",
    "load_latents": "edit",
    "measure_edit": "edit",
    "strip_image": "edit",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
