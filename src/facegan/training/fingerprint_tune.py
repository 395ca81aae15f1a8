"""Fingerprint a trained generator after the fact: Stable Signature's fine-tune (Fernandez et al., ICCV 2023), for a GAN.

A copy of the generator is fine-tuned so that the fingerprint's frozen decoder reads the key in what it makes (the
binary cross-entropy after one random differentiable distortion), while a consistency term, the mean squared
difference from the untouched generator's face for the same latent, keeps every face where it was:

    loss = BCE(decoder(distort(G'(z))), key) + consistency * MSE(G'(z), G(z))

The marked generator then makes the original's faces plus what the decoder reads, instead of a generator whose
adversarial training was pulled toward the key (`fingerprint.mode=joint`), which cost more FD at the same bits (README).
No image is read, real or otherwise: whatever guarantee the generator had (DP training's) covers the tuned one
(post-processing). `facegan fingerprint embed` runs it on any export; `facegan train --fingerprint FP` on its own
export when training ends (`fingerprint.mode=tune`, the default).
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facegan.errors import FaceganError

# Latents of the closing measurement: its own seeds, never those of the tuning steps.
MEASURE_SEED = 991_007
MEASURE_COUNT = 256


@dataclass(frozen=True)
class TuneSettings:
    steps: int = 1500
    consistency: float = 100.0
    lr: float = 2e-4
    batch_size: int = 64
    distort: bool = True
    seed: int = 0
    schedule: str = "cosine"  # the learning rate: "cosine" (from lr down to 0 over the steps) or "constant"

    def validate(self) -> None:
        from facegan.config import check_range

        check_range("fingerprint.tune_steps", self.steps, 1, 10_000_000)
        check_range("fingerprint.tune_consistency", self.consistency, 0, 1e9)
        check_range("fingerprint.tune_lr", self.lr, 0, 1, min_open=True)
        check_range("fingerprint.tune_batch_size", self.batch_size, 1, 4096)
        if self.schedule not in ("cosine", "constant"):
            raise FaceganError(f"fingerprint.tune_schedule must be 'cosine' or 'constant', got {self.schedule!r:.40}")

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "consistency": self.consistency, "lr": self.lr, "schedule": self.schedule,
                "batch_size": self.batch_size, "distort": self.distort, "seed": self.seed}


def check_tunable(module_resolution: int, module_channels: int, fingerprint: Any) -> None:
    """One error line when the fingerprint's decoder cannot read what the generator makes."""
    if module_channels != fingerprint.channels:
        raise FaceganError(f"the fingerprint reads {fingerprint.channels}-channel images, the generator makes {module_channels}")
    if module_resolution < fingerprint.resolution:
        raise FaceganError(f"the generator makes {module_resolution}x{module_resolution} faces, smaller than the fingerprint's "
                           f"{fingerprint.resolution}x{fingerprint.resolution}")


def _forward(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    return module(z)  # truncation 1: what `sample` makes by default (an identity model: new identities from z)


def tune_generator(module: nn.Module, fingerprint: Any, z_dim: int, settings: TuneSettings,
                   progress: Callable[[int, int, dict[str, float]], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, bf16: bool = False) -> tuple[nn.Module | None, dict[str, Any]]:
    """A fine-tuned copy of `module` (left untouched) and what was measured; (None, partial stats) if stopped.

    progress(step, steps, stats) is called every step (stats: the running means, computed every 50 steps).
    bf16: the two generators run under bf16 autocast (as training does where the hardware has it); the losses, the
    weights and the closing measurement stay float32.
    """
    from facegan.fingerprint.detection import detect
    from facegan.fingerprint.distortions import random_distortion
    from facegan.models.export import render

    settings.validate()
    device = next(module.parameters()).device
    source = copy.deepcopy(module).eval().requires_grad_(False)
    # Eval mode throughout: BatchNorm keeps the running statistics the export renders with.
    tuned = copy.deepcopy(module).float().eval().requires_grad_(True)
    source.float()
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(tuned.parameters(), lr=settings.lr, betas=(0.0, 0.99), fused=fused)
    decoder = copy.deepcopy(fingerprint.decoder).to(device).eval().requires_grad_(False)
    key = torch.from_numpy(fingerprint.key).float().to(device)
    rng = torch.Generator().manual_seed(settings.seed * 1_000_003 + 17)
    resolution = fingerprint.resolution
    sums = torch.zeros(3, device=device)  # bce, mse, bits right: summed between reads (one host sync per read)
    count, shown = 0, {}
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    started = time.perf_counter()
    for step in range(settings.steps):
        if should_stop is not None and should_stop():
            return None, {"stopped_at_step": step, "seconds": round(time.perf_counter() - started, 2)}
        z = torch.randn(settings.batch_size, z_dim, generator=rng).to(device)
        with torch.no_grad(), autocast():
            reference = _forward(source, z).float()
        with autocast():
            out = _forward(tuned, z).float()
        seen = out
        if seen.shape[-1] != resolution:  # the decoder reads its own resolution (as `detect` resizes down)
            seen = F.interpolate(seen, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        if settings.distort:
            seen = random_distortion(seen, rng)
        logits = decoder(seen)  # (B, k)
        target = key.expand_as(logits)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        mse = F.mse_loss(out, reference)
        loss = bce + settings.consistency * mse
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.schedule == "cosine":  # the last steps, at a small rate, settle the faces back toward the untuned ones
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        optimizer.step()
        sums += torch.stack([bce.detach(), mse.detach(), ((logits.detach() > 0).float() == target).float().mean()])
        count += 1
        if count == 50 or step == settings.steps - 1:
            bce_mean, mse_mean, bits_mean = (sums / count).tolist()
            shown = {"bce": bce_mean, "psnr": _psnr_model_units(mse_mean), "bit_accuracy": bits_mean}
            sums.zero_()
            count = 0
        if progress is not None:
            progress(step + 1, settings.steps, shown)
    seconds = time.perf_counter() - started
    tuned.eval().requires_grad_(False)
    for name, tensor in tuned.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FaceganError(f"fingerprint tuning diverged ('{name}' is not finite); lower fingerprint.tune_lr")
    # The closing measurement, on latents the tuning never drew, in uint8 as `sample` writes them.
    z = torch.randn(MEASURE_COUNT, z_dim, generator=torch.Generator().manual_seed(MEASURE_SEED))
    before, after = render(source, z), render(tuned, z)
    error = np.mean((after.astype(np.float64) - before) ** 2)
    psnr = float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))
    result = detect(after, fingerprint).summary()
    measured = {"num_images": MEASURE_COUNT, "psnr_vs_untuned": round(psnr, 2), "bit_accuracy": round(result["mean_bit_accuracy"], 4),
                "detection_rate": round(result["detection_rate"], 4),
                "untuned_bit_accuracy": round(detect(before, fingerprint).summary()["mean_bit_accuracy"], 4)}
    return tuned, {**settings.to_dict(), "bf16": bf16, "seconds": round(seconds, 2), "measured": measured}


def _psnr_model_units(mse: float) -> float:
    """PSNR of a mean squared error in model units ([-1, 1], peak-to-peak 2)."""
    return float("inf") if mse <= 0 else float(10 * np.log10(4.0 / mse))
