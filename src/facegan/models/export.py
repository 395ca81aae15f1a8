"""Generator export: `config.json` + `model.safetensors`, and the `Generator` used to sample.

Loading never unpickles anything: weights come from safetensors, the architecture from JSON.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from facegan.errors import FaceganError

EXPORT_FORMAT = "facegan-generator"
EXPORT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_export(folder: str | os.PathLike, generator: nn.Module, model_config: Any, metadata: dict[str, Any]) -> Path:
    """Write `folder/config.json` and `folder/model.safetensors` atomically."""
    from safetensors.torch import save_file

    from facegan import __version__
    from facegan.config import save_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in generator.state_dict().items()}
    temporary = folder / f".{WEIGHTS_NAME}.tmp-{os.getpid()}"
    save_file(state, str(temporary), metadata={"format": EXPORT_FORMAT})
    os.replace(temporary, folder / WEIGHTS_NAME)
    config = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "facegan_version": __version__,
        "model": asdict(model_config),
        **metadata,
    }
    save_json(config, folder / CONFIG_NAME)
    return folder


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latent rows a and b (D,) at fractions t (T,) -> (T, D)."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_unit * b_unit).sum().clamp(-1.0, 1.0))
    t = t.view(-1, 1)
    if omega.abs() < 1e-6:  # (nearly) parallel: plain linear interpolation is exact enough
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def latents_for_seeds(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    """One latent per seed, each from its own RNG, so an image depends only on its seed: (N, z_dim)."""
    rows = [torch.randn(z_dim, generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    if not rows:
        raise FaceganError("no seeds given")
    return torch.stack(rows)


@torch.inference_mode()
def render(module: nn.Module, z: torch.Tensor, truncation: float = 1.0, batch_size: int = 64) -> np.ndarray:
    """Latents (N, z_dim) -> uint8 (N, H, W, C), in eval mode (BatchNorm uses running statistics).

    Truncation pulls z toward its mean (0) by the factor psi. The module's train/eval mode is restored.
    """
    from facegan.images import to_uint8

    if not 0.0 <= truncation <= 1.0:
        raise FaceganError(f"--truncation must be between 0 and 1, got {truncation}")
    was_training = module.training
    device = next(module.parameters()).device
    module.eval()
    try:
        chunks = [to_uint8(module(z[i : i + batch_size].to(device) * truncation)) for i in range(0, len(z), batch_size)]
    finally:
        module.train(was_training)
    return torch.cat(chunks).numpy()


class Generator:
    """A loaded generator: images depend only on (seed, truncation), never on batch or call."""

    def __init__(self, module: nn.Module, model_config: Any, metadata: dict[str, Any] | None = None, device: str | torch.device = "cpu") -> None:
        self.module = module.eval().requires_grad_(False).to(device)
        self.config = model_config
        self.metadata = dict(metadata or {})
        self.device = torch.device(device)

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def z_for_seeds(self, seeds: Iterable[int]) -> torch.Tensor:
        """One latent per seed, each from its own RNG: (N, z_dim)."""
        return latents_for_seeds(seeds, self.z_dim)

    def synthesize(self, z: torch.Tensor, truncation: float = 1.0, batch_size: int = 64) -> np.ndarray:
        """Latents (N, z_dim) -> uint8 (N, H, W, C); see `render`."""
        return render(self.module, z, truncation, batch_size)

    def sample(self, seeds: Iterable[int], truncation: float = 1.0, batch_size: int = 64) -> np.ndarray:
        """Images for the given seeds: uint8 (N, H, W, C)."""
        return self.synthesize(self.z_for_seeds(list(seeds)), truncation, batch_size)

    def interpolate(self, seed_a: int, seed_b: int, num_steps: int = 8, truncation: float = 1.0) -> np.ndarray:
        """Spherical interpolation in z from seed_a to seed_b: uint8 (num_steps, H, W, C)."""
        if num_steps < 2:
            raise FaceganError(f"--steps must be at least 2, got {num_steps}")
        z = self.z_for_seeds([seed_a, seed_b])
        path = slerp(z[0], z[1], torch.linspace(0.0, 1.0, num_steps))
        return self.synthesize(path, truncation)


def resolve_export_path(path: str | os.PathLike) -> Path:
    """A run folder, an export folder or a model.safetensors file -> the export folder."""
    path = Path(path)
    if not path.exists():
        raise FaceganError(f"no such run or export: {path}")
    if path.is_file():
        if path.suffix == ".pt":
            raise FaceganError(f"{path} is a training checkpoint (resume state); pass the run folder or its export/ folder")
        if path.name != WEIGHTS_NAME:
            raise FaceganError(f"{path} is not a facegan export; pass a run folder, an export folder or its {WEIGHTS_NAME}")
        path = path.parent
    if (path / "export" / CONFIG_NAME).is_file():  # a run folder
        path = path / "export"
    if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        raise FaceganError(
            f"{path} holds no generator export ({CONFIG_NAME} + {WEIGHTS_NAME}); train a model first or pass the run folder"
        )
    return path


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Load a generator from a run folder, an export folder or its model.safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from facegan.config import from_dict
    from facegan.models import build_generator
    from facegan.models.config import ModelConfig

    folder = resolve_export_path(path)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FaceganError(f"{folder / CONFIG_NAME} is corrupt; export the model again") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise FaceganError(f"{folder / CONFIG_NAME} is not a facegan generator export (format {config.get('format') if isinstance(config, dict) else None!r})")
    model_config = from_dict(ModelConfig, config["model"])
    module = build_generator(model_config)
    try:
        state = load_file(str(folder / WEIGHTS_NAME))
    except (SafetensorError, OSError, ValueError) as error:
        raise FaceganError(f"{folder / WEIGHTS_NAME} is corrupt or unreadable ({error}); export the model again") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError:
        raise FaceganError(f"{folder / WEIGHTS_NAME} does not match the architecture in {CONFIG_NAME}; the export is inconsistent") from None
    metadata = {key: value for key, value in config.items() if key != "model"}
    return Generator(module, model_config, metadata, device)
