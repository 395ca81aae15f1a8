"""facegan: privacy-aware synthetic faces.

The one flow: image files -> FaceDataset -> training run -> Generator -> metrics/audits -> report.
Heavy submodules (torch models, training) are imported lazily so `import facegan` stays cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "train", "load_generator", "FaceganError"]

from facegan.errors import FaceganError
from facegan.version import __version__

if TYPE_CHECKING:
    from facegan.training.config import TrainConfig
    from facegan.training.loop import TrainResult


def train(config: TrainConfig, **options: Any) -> TrainResult:
    """Train (or resume) a GAN as `config` says: with DP-SGD when `config.privacy` asks for it.

    Options as `facegan.training.loop.train` (resume, progress, ...). The router lives here, above both
    training and privacy, so that training never has to import privacy.
    """
    from facegan.training.config import TrainConfig

    if not isinstance(config, TrainConfig):
        raise FaceganError(
            f"facegan.train needs a TrainConfig (facegan.training.config.TrainConfig), got {type(config).__name__}"
        )
    if config.privacy.enabled:
        from facegan.privacy.training import train_private

        return train_private(config, **options)
    from facegan.training.loop import train as train_plain

    return train_plain(config, **options)


def __getattr__(name: str):
    # Lazy re-export: `facegan.load_generator(path)`.
    if name == "load_generator":
        from facegan.models.export import load_generator

        return load_generator
    raise AttributeError(f"module 'facegan' has no attribute {name!r}")
