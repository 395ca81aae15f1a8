"""facegan: privacy-aware synthetic faces.

The one flow: image files -> FaceDataset -> training run -> Generator -> metrics/audits -> report.
Heavy submodules (torch models, training) are imported lazily so `import facegan` stays cheap.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "train", "load_generator", "FaceganError"]

from facegan.errors import FaceganError


def __getattr__(name: str):
    # Lazy re-exports: `facegan.train(config)` and `facegan.load_generator(path)`.
    if name == "train":
        from facegan.training.loop import train

        return train
    if name == "load_generator":
        from facegan.models.export import load_generator

        return load_generator
    raise AttributeError(f"module 'facegan' has no attribute {name!r}")
