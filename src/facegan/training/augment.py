"""DiffAugment (Zhao et al., 2020): differentiable colour, translation and cutout on a batch.

Applied identically in spirit to real and fake images whenever the discriminator sees them, so that
D cannot memorise a small training set and G still receives gradients through the augmentation.
All randomness comes from one `torch.Generator`, saved with the checkpoint for exact resume.
"""
from __future__ import annotations

import torch

from facegan.training.config import KNOWN_POLICIES, AugmentConfig  # noqa: F401  (re-exported)


class DiffAugment:
    """Callable augmentation of float NCHW batches in [-1, 1]."""

    def __init__(self, config: AugmentConfig, generator: torch.Generator) -> None:
        self.config = config
        self.generator = generator
        self.policies = [name.strip() for name in config.policy.split(",") if name.strip()]

    @property
    def enabled(self) -> bool:
        return bool(self.policies) and self.config.probability > 0

    def _rand(self, *shape: int, device: torch.device) -> torch.Tensor:
        # Draw on the CPU generator, then move: identical numbers on CPU and CUDA runs.
        return torch.rand(*shape, generator=self.generator).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return images
        augmented = images
        for name in self.policies:
            augmented = getattr(self, f"_{name}")(augmented)
        if self.config.probability < 1.0:
            keep = self._rand(images.shape[0], 1, 1, 1, device=images.device) >= self.config.probability
            augmented = torch.where(keep, images, augmented)
        return augmented

    def _color(self, x: torch.Tensor) -> torch.Tensor:
        batch, device = x.shape[0], x.device
        x = x + (self._rand(batch, 1, 1, 1, device=device) - 0.5)  # brightness
        if x.shape[1] > 1:  # saturation (a no-op on gray images)
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (self._rand(batch, 1, 1, 1, device=device) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (self._rand(batch, 1, 1, 1, device=device) + 0.5) + mean  # contrast

    def _translation(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        shift_y = int(height * self.config.translation_ratio + 0.5)
        shift_x = int(width * self.config.translation_ratio + 0.5)
        # Integer shifts in [-shift, shift]; pixels shifted in from outside are zero (mid-gray).
        dy = (self._rand(batch, 1, 1, device=x.device) * (2 * shift_y + 1)).floor().long() - shift_y  # (N, 1, 1)
        dx = (self._rand(batch, 1, 1, device=x.device) * (2 * shift_x + 1)).floor().long() - shift_x
        rows = torch.arange(height, device=x.device).view(1, -1, 1) - dy  # (N, H, 1) source rows
        cols = torch.arange(width, device=x.device).view(1, 1, -1) - dx  # (N, 1, W) source cols
        valid = ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)).unsqueeze(1)  # (N, 1, H, W)
        flat_index = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).view(batch, 1, -1)
        gathered = x.flatten(2).gather(2, flat_index.expand(-1, x.shape[1], -1)).view_as(x)
        return gathered * valid

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        size_y = int(height * self.config.cutout_ratio + 0.5)
        size_x = int(width * self.config.cutout_ratio + 0.5)
        center_y = (self._rand(batch, 1, 1, device=x.device) * (height + 1 - size_y % 2)).floor().long()
        center_x = (self._rand(batch, 1, 1, device=x.device) * (width + 1 - size_x % 2)).floor().long()
        rows = torch.arange(height, device=x.device).view(1, -1, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, -1)
        inside = (
            (rows >= center_y - size_y // 2) & (rows < center_y - size_y // 2 + size_y)
            & (cols >= center_x - size_x // 2) & (cols < center_x - size_x // 2 + size_x)
        )  # (N, H, W)
        return x * (~inside).unsqueeze(1).to(x.dtype)
