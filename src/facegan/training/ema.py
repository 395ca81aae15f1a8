"""Exponential moving average of generator weights (as in StyleGAN2-ADA: half-life in kimg, ramp-up)."""
from __future__ import annotations

import torch
from torch import nn

from facegan.training.config import EmaConfig


def ema_beta(config: EmaConfig, batch_size: int, num_images_seen: int) -> float:
    """Per-step decay for a half-life of `half_life_kimg`, shortened early in training by `rampup`."""
    half_life_images = config.half_life_kimg * 1000
    if config.rampup > 0:
        half_life_images = min(half_life_images, num_images_seen * config.rampup)
    return 0.5 ** (batch_size / max(half_life_images, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - beta)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)
