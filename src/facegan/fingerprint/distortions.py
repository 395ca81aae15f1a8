"""Distortions a fingerprint must survive: differentiable ones for training, exact ones for evaluation.

- Training (torch, float NCHW in [-1, 1], differentiable): `DifferentiableJpeg` (YCbCr, 8x8 DCT,
  IJG quality-scaled quantisation tables, straight-through rounding), resize down and up, centre crop
  resized back, Gaussian blur, Gaussian noise, grey conversion; `random_distortion` picks one per batch.
- Evaluation (uint8 NHWC, numpy/Pillow, exact): `EVAL_TRANSFORMS`, a registry of named transforms
  ("jpeg75" is Pillow's real JPEG at quality 75, "resize0.5" shrinks to half and back, ...).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from facegan.errors import FaceganError

# The IJG (libjpeg) base quantisation tables, quality 50; Pillow writes exactly these scaled by quality.
LUMA_TABLE = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
], dtype=torch.float32)
CHROMA_TABLE = torch.tensor([
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
], dtype=torch.float32)


def quality_tables(quality: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """IJG scaling of a base table for qualities (N,) in [1, 100] -> (N, 8, 8) quantisation steps."""
    quality = quality.float().round().clamp(1, 100)
    # libjpeg's integer arithmetic: 5000 / quality truncates (quality 30 scales by 166, not 166.7).
    scale = torch.where(quality < 50, torch.floor(5000.0 / quality), 200.0 - 2.0 * quality)  # (N,)
    # libjpeg: (base * scale + 50) // 100, clamped to [1, 255] (baseline JPEG).
    return torch.floor((base[None] * scale[:, None, None] + 50.0) / 100.0).clamp(1, 255)


def _dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix D: coefficients = D @ block @ D.T."""
    index = torch.arange(8, dtype=torch.float64)
    matrix = torch.cos((2 * index[None, :] + 1) * index[:, None] * math.pi / 16)
    matrix[0] *= 1 / math.sqrt(2)
    return (matrix * 0.5).float()


DCT_MATRIX = _dct_matrix()


def round_straight_through(values: torch.Tensor) -> torch.Tensor:
    """round() forward, identity backward: the gradient flows through quantisation."""
    return values + (torch.round(values) - values).detach()


def _to_blocks(plane: torch.Tensor) -> torch.Tensor:
    """(N, H, W) with H, W multiples of 8 -> (N, H/8, W/8, 8, 8)."""
    batch, height, width = plane.shape
    return plane.reshape(batch, height // 8, 8, width // 8, 8).permute(0, 1, 3, 2, 4)


def _from_blocks(blocks: torch.Tensor) -> torch.Tensor:
    batch, rows, columns = blocks.shape[:3]
    return blocks.permute(0, 1, 3, 2, 4).reshape(batch, rows * 8, columns * 8)


def _jpeg_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One level-shifted plane (N, H, W) through DCT, quantise/dequantise with (N, 8, 8) steps, inverse DCT."""
    dct = DCT_MATRIX.to(plane)
    blocks = _to_blocks(plane)  # (N, h, w, 8, 8)
    coefficients = dct @ blocks @ dct.T
    steps = table[:, None, None]  # (N, 1, 1, 8, 8)
    quantised = round_straight_through(coefficients / steps) * steps
    return _from_blocks(dct.T @ quantised @ dct)


def differentiable_jpeg(images: torch.Tensor, quality: torch.Tensor | float, subsample_chroma: bool = True) -> torch.Tensor:
    """A differentiable JPEG round trip of float NCHW images in [-1, 1] (C = 1 or 3) at quality (N,) or scalar.

    Follows libjpeg as Pillow calls it: pixels in 0..255 (rounded, straight-through), RGB -> YCbCr
    (JFIF), chroma averaged over 2x2 (4:2:0, Pillow's default for RGB),
    8x8 DCT, quantisation by the IJG tables scaled to the quality, then back. Images whose sides are not
    multiples of 8 (16 with subsampled chroma) are padded by edge replication, as libjpeg does.
    """
    batch, channels, height, width = images.shape
    if channels not in (1, 3):
        raise ValueError(f"differentiable_jpeg takes 1 or 3 channels, got {channels}")
    if not isinstance(quality, torch.Tensor):
        quality = torch.tensor(float(quality))
    quality = quality.to(images.device).float().expand(batch)
    multiple = 16 if (channels == 3 and subsample_chroma) else 8
    pad_bottom, pad_right = (-height) % multiple, (-width) % multiple
    pixels = round_straight_through(((images + 1.0) * 127.5).clamp(0, 255))
    if pad_bottom or pad_right:
        pixels = F.pad(pixels, (0, pad_right, 0, pad_bottom), mode="replicate")
    luma_table = quality_tables(quality, LUMA_TABLE.to(images.device))
    if channels == 1:
        decoded = _jpeg_plane(pixels[:, 0] - 128.0, luma_table)[:, None] + 128.0
    else:
        red, green, blue = pixels[:, 0], pixels[:, 1], pixels[:, 2]
        luma = 0.299 * red + 0.587 * green + 0.114 * blue
        blue_difference = -0.168736 * red - 0.331264 * green + 0.5 * blue
        red_difference = 0.5 * red - 0.418688 * green - 0.081312 * blue
        chroma_table = quality_tables(quality, CHROMA_TABLE.to(images.device))
        luma = _jpeg_plane(luma - 128.0, luma_table) + 128.0

        def chroma(plane: torch.Tensor) -> torch.Tensor:
            if not subsample_chroma:
                return _jpeg_plane(plane, chroma_table)
            small = F.avg_pool2d(plane[:, None], 2)[:, 0]
            decoded_small = _jpeg_plane_padded(small, chroma_table)
            # libjpeg's "fancy" upsampling is a triangle filter: bilinear with half-pixel centres.
            return F.interpolate(decoded_small[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0]

        blue_difference, red_difference = chroma(blue_difference), chroma(red_difference)
        decoded = torch.stack([
            luma + 1.402 * red_difference,
            luma - 0.344136 * blue_difference - 0.714136 * red_difference,
            luma + 1.772 * blue_difference,
        ], dim=1)
    decoded = decoded[:, :, :height, :width]
    # The decoder writes uint8 pixels: clamp and round (straight-through) like it.
    decoded = round_straight_through(decoded.clamp(0, 255))
    return decoded / 127.5 - 1.0


def _jpeg_plane_padded(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    height, width = plane.shape[-2:]
    pad_bottom, pad_right = (-height) % 8, (-width) % 8
    if pad_bottom or pad_right:
        plane = F.pad(plane[:, None], (0, pad_right, 0, pad_bottom), mode="replicate")[:, 0]
    return _jpeg_plane(plane, table)[:, :height, :width]


def resize_down_up(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Shrink by `factor` (antialiased bilinear) and enlarge back to the original size."""
    height, width = images.shape[-2:]
    small = (max(1, round(height * factor)), max(1, round(width * factor)))
    shrunk = F.interpolate(images, size=small, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(shrunk, size=(height, width), mode="bilinear", align_corners=False)


def center_crop_resize(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep the central `fraction` of each side and resize it back to the original size."""
    height, width = images.shape[-2:]
    crop_height, crop_width = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    cropped = images[:, :, top : top + crop_height, left : left + crop_width]
    return F.interpolate(cropped, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """A normalised 1-D Gaussian (2 * radius + 1,) of standard deviation `sigma` pixels."""
    radius = max(1, math.ceil(3 * sigma)) if radius is None else radius
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / max(sigma, 1e-3)) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders."""
    kernel = gaussian_kernel(sigma).to(images)
    radius = (len(kernel) - 1) // 2
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    horizontal = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(horizontal, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """RGB -> ITU-R 601 luma repeated in every channel (grey images pass unchanged)."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True).expand_as(images)


# Training mixes one distortion per batch; JPEG is what images meet most often, so it is drawn most.
TRAIN_DISTORTIONS = ("none", "jpeg", "resize", "crop", "blur", "noise", "grey")
TRAIN_WEIGHTS = (0.15, 0.35, 0.12, 0.12, 0.1, 0.1, 0.06)


def random_distortion(images: torch.Tensor, generator: torch.Generator, name: str | None = None) -> torch.Tensor:
    """One distortion drawn at random (or the one named) with random strength, applied to the whole batch.

    Strengths: JPEG quality 50-95 per image, resize factor 0.5-1.0, crop 80-100 %, blur sigma 0.3-1.0 px,
    noise sigma 0-4 grey levels, grey conversion.
    """
    def uniform(low: float, high: float, size: int = 1) -> torch.Tensor:
        return low + (high - low) * torch.rand(size, generator=generator)

    if name is None:
        index = int(torch.multinomial(torch.tensor(TRAIN_WEIGHTS), 1, generator=generator))
        name = TRAIN_DISTORTIONS[index]
    if name == "none":
        return images
    if name == "jpeg":
        return differentiable_jpeg(images, uniform(50, 95, len(images)).round())
    if name == "resize":
        return resize_down_up(images, float(uniform(0.5, 1.0)))
    if name == "crop":
        return center_crop_resize(images, float(uniform(0.8, 1.0)))
    if name == "blur":
        return gaussian_blur(images, float(uniform(0.3, 1.0)))
    if name == "noise":
        sigma = float(uniform(0.0, 4.0)) / 127.5  # grey levels -> model units
        noise = torch.randn(images.shape, generator=generator).to(images)
        return images + sigma * noise
    if name == "grey":
        return to_grey(images)
    raise ValueError(f"unknown training distortion {name!r}")


# ---- exact evaluation transforms on uint8 NHWC ---------------------------------------------------
def _pil_images(images: np.ndarray) -> list[Image.Image]:
    if images.shape[3] == 1:
        return [Image.fromarray(np.ascontiguousarray(image[:, :, 0]), mode="L") for image in images]
    return [Image.fromarray(np.ascontiguousarray(image), mode="RGB") for image in images]


def _stack(pictures: list[Image.Image], channels: int) -> np.ndarray:
    arrays = [np.asarray(picture, dtype=np.uint8) for picture in pictures]
    stacked = np.stack(arrays)
    return stacked[..., None] if channels == 1 else stacked


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """A real JPEG round trip through Pillow (libjpeg) at `quality`, Pillow's default 4:2:0 chroma for RGB."""
    pictures = []
    for picture in _pil_images(images):
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        pictures.append(Image.open(buffer).convert(picture.mode))
    return _stack(pictures, images.shape[3])


def resize(images: np.ndarray, factor: float) -> np.ndarray:
    """Shrink each image by `factor` (bicubic, antialiased) and enlarge it back (bicubic)."""
    height, width = images.shape[1:3]
    small = (max(1, round(width * factor)), max(1, round(height * factor)))
    return _stack([picture.resize(small, Image.Resampling.BICUBIC).resize((width, height), Image.Resampling.BICUBIC)
                   for picture in _pil_images(images)], images.shape[3])


def crop(images: np.ndarray, fraction: float) -> np.ndarray:
    """Keep the central `fraction` of each side, resized back to the original size (bicubic)."""
    height, width = images.shape[1:3]
    crop_height, crop_width = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    box = (left, top, left + crop_width, top + crop_height)
    return _stack([picture.resize((width, height), Image.Resampling.BICUBIC, box=box) for picture in _pil_images(images)],
                  images.shape[3])


def blur(images: np.ndarray, radius: float) -> np.ndarray:
    """Pillow's Gaussian blur with standard deviation `radius` pixels."""
    return _stack([picture.filter(ImageFilter.GaussianBlur(radius)) for picture in _pil_images(images)], images.shape[3])


def noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise of `sigma` grey levels (a fixed seed: the same input gives the same output)."""
    rng = np.random.default_rng(seed)
    noisy = images.astype(np.float32) + rng.normal(0.0, sigma, size=images.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def grey(images: np.ndarray) -> np.ndarray:
    """RGB -> ITU-R 601 luma (Pillow's "L"), repeated in every channel; grey images pass unchanged."""
    if images.shape[3] == 1:
        return images.copy()
    luma = _stack([picture.convert("L") for picture in _pil_images(images)], 1)
    return np.repeat(luma, 3, axis=3)


@dataclass(frozen=True)
class EvalTransform:
    """A named exact distortion on uint8 NHWC images (same shape out)."""

    name: str
    description: str
    apply: Callable[[np.ndarray], np.ndarray]


def _registry(*transforms: EvalTransform) -> dict[str, EvalTransform]:
    registry: dict[str, EvalTransform] = {}
    for transform in transforms:
        if transform.name in registry:  # a duplicate name would silently shadow the first one
            raise ValueError(f"duplicate evaluation transform {transform.name!r}")
        registry[transform.name] = transform
    return registry


EVAL_TRANSFORMS: dict[str, EvalTransform] = _registry(
    EvalTransform("clean", "no change", lambda images: images.copy()),
    *(EvalTransform(f"jpeg{quality}", f"Pillow JPEG at quality {quality}", lambda images, q=quality: jpeg(images, q))
      for quality in (90, 75, 50)),
    *(EvalTransform(f"resize{factor:g}", f"shrink to {factor:g} of the side and back (bicubic)", lambda images, f=factor: resize(images, f))
      for factor in (0.5, 0.7, 0.9)),
    *(EvalTransform(f"crop{round(fraction * 100)}", f"centre crop {round(fraction * 100)} % resized back", lambda images, f=fraction: crop(images, f))
      for fraction in (0.8, 0.9, 0.95)),
    EvalTransform("blur", "Gaussian blur, sigma 1 px", lambda images: blur(images, 1.0)),
    EvalTransform("noise", "Gaussian noise, sigma 4 grey levels", lambda images: noise(images, 4.0)),
    EvalTransform("grey", "grey conversion (ITU-R 601 luma)", grey),
)


def apply_transform(images: np.ndarray, name: str) -> np.ndarray:
    """The registered evaluation transform `name` applied to uint8 NHWC images."""
    if name not in EVAL_TRANSFORMS:
        raise FaceganError(f"unknown image transform {name!r}; choose from {', '.join(EVAL_TRANSFORMS)}")
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[3] not in (1, 3):
        raise FaceganError(f"transforms take uint8 (N, H, W, 1 or 3) images, got {images.dtype} {images.shape}")
    return EVAL_TRANSFORMS[name].apply(images)
