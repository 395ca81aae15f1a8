"""Differentiable views of face recognisers: what an attack perturbs, and the same network on float pixels.

    model = differentiable("dlib")                     # or "pixel", "lbph", a `facegan recog train` run/export
    chips = model.domain(images)                       # uint8 NHWC: the images the attack perturbs (dlib: 150 px RGB chips)
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()   # (N, C, H, W) in 0..255
    scores = model.score(model.embed_pixels(x), target)        # (N,), minus the match-rule distance, differentiable

Scale convention (facegan.attacks): images are float (N, C, H, W) in 0..255, budgets on that scale.
`embed` on uint8 is the recogniser's own deployed path (`recogniser.embed`); `embed_pixels` is the same
computation on floats, so on integer-valued input the two agree (tests check it). The domain is made once
in uint8 (dlib's chips are resized there, not inside the attack), so a saved adversarial PNG is exactly
what the recogniser, or real dlib's `compute_face_descriptor`, reads.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facegan.errors import FaceganError
from facegan.faces.recognisers import Recogniser

__all__ = ["DifferentiableRecogniser", "differentiable", "torch_scores"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as the pixel recogniser and recogniser exports convert RGB to grey


def torch_scores(first: torch.Tensor, second: torch.Tensor, metric: str) -> torch.Tensor:
    """(N,) minus the `metric` distance of row pairs, in torch: the formulas of facegan.faces.match.pair_distances."""
    if metric == "euclidean":
        return -(first - second).square().sum(-1).clamp_min(1e-20).sqrt()  # the clamp keeps the gradient finite at distance 0
    if metric == "cosine":
        norms = first.norm(dim=-1) * second.norm(dim=-1)
        return (first * second).sum(-1) / norms.clamp_min(1e-12) - 1.0
    if metric == "chi-square":
        total = first + second
        used = total.abs() > torch.finfo(torch.float64).eps
        return -2.0 * torch.where(used, (first - second).square() / torch.where(used, total, torch.ones_like(total)), torch.zeros_like(total)).sum(-1)
    raise FaceganError(f"unknown descriptor distance {metric!r}; choose euclidean, cosine or chi-square")


class DifferentiableRecogniser:
    """A recogniser as an attack sees it: its input domain, a differentiable embedding of float pixels, its score.

    Subclasses write `domain` (when the attacked images are not the dataset's own) and `embed_pixels`.
    """

    differentiable: bool = True

    def __init__(self, recogniser: Recogniser, device: str | torch.device = "cpu") -> None:
        self.recogniser = recogniser
        self.name: str = recogniser.name
        self.metric: str = recogniser.match.metric
        self.device = torch.device(getattr(recogniser, "device", device))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def domain(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) dataset images -> the uint8 NHWC images the attack perturbs (here: the same)."""
        return _check_uint8_nhwc(images)

    def embed_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """float (N, C, H, W) in 0..255 (the domain's layout) -> (N, D) descriptors, differentiable."""
        raise NotImplementedError

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 NHWC domain images -> float32 (N, D): the recogniser's own deployed path."""
        return np.asarray(self.recogniser.embed(_check_uint8_nhwc(images), batch_size=batch_size))

    def score(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """(N,) minus the match-rule distance (higher = more alike), the formula `recogniser.distance` uses."""
        return torch_scores(first, second, self.metric)

    def scores(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """float64 (N,) minus `recogniser.distance` on numpy descriptors: how verification scores pairs."""
        return -np.asarray(self.recogniser.distance(first, second), dtype=np.float64)


def _check_uint8_nhwc(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise FaceganError(f"attacked images must be uint8, got {images.dtype}; convert with facegan.images.to_uint8")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise FaceganError(f"attacked images must be (N, H, W, C) with C 1 or 3, got shape {images.shape}")
    return images


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) with the ITU-R 601 weights."""
    return (x * torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


class _DlibResNet(DifferentiableRecogniser):
    """dlib's ResNet (the PyTorch port): attacked on 150 px RGB chips, resized once in uint8."""

    def domain(self, images: np.ndarray) -> np.ndarray:
        from facegan.faces.dlib_resnet import CHIP_SIZE
        from facegan.images import convert_channels, resize_whole

        images = _check_uint8_nhwc(images)
        if images.shape[1:] == (CHIP_SIZE, CHIP_SIZE, 3):
            return images
        # Once, in uint8: the saved adversarial PNG is then exactly the chip real dlib is given.
        return np.stack([convert_channels(image if image.shape[:2] == (CHIP_SIZE, CHIP_SIZE) else resize_whole(image, CHIP_SIZE), 3)
                         for image in images])

    def embed_pixels(self, x: torch.Tensor) -> torch.Tensor:
        from facegan.faces.dlib_resnet import CHIP_SIZE

        port = self.recogniser
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (CHIP_SIZE, CHIP_SIZE):
            raise FaceganError(f"dlib's recogniser is attacked on (N, 3, {CHIP_SIZE}, {CHIP_SIZE}) chips (see domain), got {tuple(x.shape)}")
        # dlib's input layer, as the port's `embed` applies it: (pixel - mean) / 256 straight from 0..255.
        normalised = ((x.to(port.device) - port.model.mean_rgb) / 256.0).contiguous(memory_format=port.memory_format)
        with port._autocast():
            return port.model.forward_dlib_input(normalised).float()


class _TrainedRecogniser(DifferentiableRecogniser):
    """A `facegan recog train` export: its net on [-1, 1] at its resolution, after the channel conversion and resize of `embed`."""

    def embed_pixels(self, x: torch.Tensor) -> torch.Tensor:
        recogniser = self.recogniser
        x = x.to(recogniser.device)
        if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
            raise FaceganError(f"a facegan recogniser takes square (N, C, S, S) chips with 1 or 3 channels, got {tuple(x.shape)}")
        if x.shape[1] != recogniser.channels:
            x = x.expand(-1, 3, -1, -1) if recogniser.channels == 3 else _grey(x)
        if x.shape[-1] != recogniser.resolution:
            x = F.interpolate(x, size=(recogniser.resolution, recogniser.resolution), mode="bilinear", align_corners=False, antialias=True)
        x = (x / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)
        return F.normalize(recogniser.net(x).float())


class _Pixel(DifferentiableRecogniser):
    """The pixel baseline: grey, resized (bilinear, antialiased like PIL), mean-free, unit norm."""

    def embed_pixels(self, x: torch.Tensor) -> torch.Tensor:
        size = self.recogniser.size
        grey = x.mean(1, keepdim=True) if x.shape[1] == 1 else _grey(x)  # (N, 1, H, W)
        if grey.shape[2:] != (size, size):
            grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        flat = grey.flatten(1)
        flat = flat - flat.mean(1, keepdim=True)
        return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-6)


class _LBPH(DifferentiableRecogniser):
    """OpenCV's LBPH: a histogram of pixel comparisons, with no gradient; only score-based (square) attacks apply."""

    differentiable = False

    def embed_pixels(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            # LBPH reads bytes: a float image is the uint8 image it would be saved as.
            pixels = x.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            return torch.from_numpy(self.embed(pixels)).to(x.device)


def differentiable(recogniser: Recogniser | str | os.PathLike | DifferentiableRecogniser, device: str = "cpu") -> DifferentiableRecogniser:
    """The differentiable adapter of a recogniser (a registered name, a `facegan recog train` run/export, or a loaded one)."""
    if isinstance(recogniser, DifferentiableRecogniser):
        return recogniser
    if isinstance(recogniser, (str, os.PathLike)):
        from facegan.recognition.resolve import resolve_recogniser

        recogniser = resolve_recogniser(recogniser, device=device)
    from facegan.faces.dlib_resnet import DlibResNetRecogniser
    from facegan.faces.lbph import LBPHRecogniser
    from facegan.faces.pixel import PixelRecogniser
    from facegan.recognition.export import TrainedRecogniser

    adapters: tuple[tuple[type, Any], ...] = (
        (DlibResNetRecogniser, _DlibResNet), (TrainedRecogniser, _TrainedRecogniser), (PixelRecogniser, _Pixel), (LBPHRecogniser, _LBPH),
    )
    for kind, adapter in adapters:
        if isinstance(recogniser, kind):
            return adapter(recogniser, device)
    raise FaceganError(f"recogniser {getattr(recogniser, 'name', recogniser)!r:.80} has no differentiable adapter; "
                       "attack dlib, pixel, lbph (square only) or a `facegan recog train` run/export")
