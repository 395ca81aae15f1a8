"""GAN training: configs and presets, losses, augmentation, EMA, checkpoints, the loop, DDP."""
from facegan.training.config import PRESETS, TrainConfig, resolve_config

__all__ = ["PRESETS", "TrainConfig", "resolve_config", "train"]


def train(*args, **kwargs):
    """Train or resume a GAN (see facegan.training.loop.train)."""
    from facegan.training.loop import train as _train

    return _train(*args, **kwargs)
