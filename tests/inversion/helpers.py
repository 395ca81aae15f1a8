"""A tiny stand-alone generator export (random-init DCGAN, 32 px grey) for the projection CLI tests."""
from __future__ import annotations

from pathlib import Path

import torch


def make_tiny_export(folder: Path) -> Path:
    from facegan.models import ModelConfig, build_generator
    from facegan.models.export import save_export

    torch.manual_seed(0)
    config = ModelConfig(architecture="dcgan", resolution=32, channels=1, z_dim=16, g_channels=32)
    return save_export(folder, build_generator(config), config, {})
