"""Random hole masks for repair: boxes, free-form strokes, and face-shaped occluders (eyes, mouth).

A mask is bool (N, H, W), True = MISSING pixel. Every kind is built the same way: a per-pixel
*priority* map (which pixel the occluder covers first as it grows), then the `k` first pixels are
the hole, with k = the asked hole ratio x H x W rounded. So the hole ratio is met to one pixel
(|ratio - asked| <= 0.5 / (H W)), and a band (lo, hi) draws k uniformly among the pixel counts
inside [lo, hi] - the irregular-mask protocol's bands are then met exactly, at any resolution.

Face occluders sit where aligned faces have their features (`FaceAnchors`, fractions of the image
side). Measured with dlib's 5-point landmarks on the built-in faces at 32 px:
  builtin:lfw-subset    eyes y 0.34-0.37 (x 0.19-0.67), nose tip y 0.61  -> ALIGNED_ANCHORS
  builtin:rendered-faces eyes y 0.49 (x 0.39-0.61), nose tip y 0.62, face box y 0.36-0.78 -> RENDERED_ANCHORS
dlib-aligned chips (padding 0.25) put the eyes near 0.35-0.40 as LFW does. `estimate_anchors`
measures them on any images. Each image's RNG is np.random.default_rng([seed, index]), so a mask
depends on its seed and index only, not on the batch it was made in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facegan.errors import FaceganError

MASK_KINDS = ("box", "strokes", "eyes", "mouth")
# The usual irregular-mask protocol (Liu et al. 2018): hole ratio bands of 10 % up to 60 %.
BANDS = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))
TRAINING_RATIO_RANGE = (0.05, 0.6)

Ratio = float | tuple[float, float]


@dataclass(frozen=True)
class FaceAnchors:
    """Where the occluders go, as fractions of the image side (0 = top / left)."""

    eye_y: float = 0.37  # the eye line: the sunglasses band's centre
    lower_face_y: float = 0.72  # between the nose tip and the mouth: the lower-face mask's centre
    center_x: float = 0.5  # the face's vertical midline


ALIGNED_ANCHORS = FaceAnchors()
RENDERED_ANCHORS = FaceAnchors(eye_y=0.49, lower_face_y=0.67, center_x=0.5)

# Shape of the occluders: the eye band grows 3.5 times wider than tall (it spans both eyes at 10 %
# of the image and reaches the sides before it grows much taller); the lower-face mask is an
# ellipse 1.3 times wider than tall. Centres jitter a little per image, as real occluders do.
EYE_BAND_ASPECT = 3.5
LOWER_FACE_ASPECT = 1.3
ANCHOR_JITTER = 0.02


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    # Pixel centres, so a centre at 16.0 in a 32 px image is exactly between pixels 15 and 16.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return yy, xx


def _chebyshev_priority(size: int, center_y: float, center_x: float, aspect: float) -> np.ndarray:
    """A rectangle growing from (center_y, center_x), `aspect` times wider than tall (pixels)."""
    yy, xx = _pixel_grid(size)
    dy, dx = np.abs(yy - center_y), np.abs(xx - center_x) / aspect
    # Euclidean distance breaks ties on a rectangle's edge, so a partly grown edge fills from its middle.
    return np.maximum(dy, dx) + 1e-6 * np.hypot(dy, dx)


def _ellipse_priority(size: int, center_y: float, center_x: float, aspect: float) -> np.ndarray:
    yy, xx = _pixel_grid(size)
    return np.hypot(yy - center_y, (xx - center_x) / aspect)


def _box_priority(size: int, rng: np.random.Generator) -> np.ndarray:
    center_y, center_x = rng.uniform(0.25, 0.75, 2) * size
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    return _chebyshev_priority(size, center_y, center_x, aspect)


def _eyes_priority(size: int, rng: np.random.Generator, anchors: FaceAnchors) -> np.ndarray:
    center_y = (anchors.eye_y + rng.uniform(-ANCHOR_JITTER, ANCHOR_JITTER)) * size
    center_x = (anchors.center_x + rng.uniform(-ANCHOR_JITTER, ANCHOR_JITTER)) * size
    return _chebyshev_priority(size, center_y, center_x, EYE_BAND_ASPECT)


def _mouth_priority(size: int, rng: np.random.Generator, anchors: FaceAnchors) -> np.ndarray:
    center_y = (anchors.lower_face_y + rng.uniform(-ANCHOR_JITTER, ANCHOR_JITTER)) * size
    center_x = (anchors.center_x + rng.uniform(-ANCHOR_JITTER, ANCHOR_JITTER)) * size
    return _ellipse_priority(size, center_y, center_x, LOWER_FACE_ASPECT)


def _strokes_priority(size: int, rng: np.random.Generator, num_holes: int) -> np.ndarray:
    """Free-form brush strokes (DeepFill v2 style random walks), drawn until `num_holes` pixels are covered.

    A pixel's priority is the segment that first covered it plus how far along that segment it lies,
    so the last stroke is cut where the ratio is reached, not filled in raster order.
    """
    yy, xx = _pixel_grid(size)
    priority = np.full((size, size), np.inf)
    segment = 0
    covered = 0
    max_segments = 64 * 64  # far more than any ratio <= 0.95 needs; a guard, not a limit in practice
    while covered < num_holes and segment < max_segments:
        width = rng.uniform(size / 14, size / 6)
        start = rng.uniform(0.1, 0.9, 2) * size
        angle = rng.uniform(0, 2 * math.pi)
        for _ in range(int(rng.integers(4, 10))):
            angle += rng.uniform(-math.pi / 2.5, math.pi / 2.5)
            length = rng.uniform(size / 10, size / 4)
            end = np.clip(start + length * np.array([math.sin(angle), math.cos(angle)]), 0, size)
            direction = end - start
            span = float(direction @ direction)
            along = ((yy - start[0]) * direction[0] + (xx - start[1]) * direction[1]) / max(span, 1e-12)
            along = np.clip(along, 0.0, 1.0)
            distance = np.hypot(yy - (start[0] + along * direction[0]), xx - (start[1] + along * direction[1]))
            new = (distance <= width / 2) & np.isinf(priority)
            priority[new] = segment + 0.999 * along[new]
            covered += int(new.sum())
            segment += 1
            start = end
            if covered >= num_holes:
                break
    if covered < num_holes:  # unreachable in practice; keeps the ratio exact regardless
        rest = np.isinf(priority)
        priority[rest] = segment + np.arange(int(rest.sum()))
    return priority


def _num_holes(size: int, ratio: Ratio, rng: np.random.Generator) -> int:
    pixels = size * size
    if isinstance(ratio, tuple):
        low, high = ratio
        fewest, most = math.ceil(low * pixels - 1e-9), min(math.floor(high * pixels + 1e-9), pixels - 1)
        return int(rng.integers(fewest, most + 1))
    return min(max(round(ratio * pixels), 1), pixels - 1)


def check_ratio(ratio: object, size: int | None = None) -> Ratio:
    """A hole ratio in (0, 1), or a band (lo, hi) with 0 <= lo < hi <= 1; one clear line otherwise."""
    if isinstance(ratio, (list, tuple)):
        if len(ratio) != 2 or not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in ratio):
            raise FaceganError(f"a mask ratio band is two numbers (lo, hi), got {ratio!r}")
        low, high = float(ratio[0]), float(ratio[1])
        if not (0.0 <= low < high <= 1.0):
            raise FaceganError(f"a mask ratio band needs 0 <= lo < hi <= 1, got ({low}, {high})")
        if size is not None:
            pixels = size * size
            if math.ceil(low * pixels - 1e-9) > min(math.floor(high * pixels + 1e-9), pixels - 1):
                raise FaceganError(f"no hole of {size}x{size} pixels has a ratio in ({low}, {high}); widen the band or use larger images")
        return (low, high)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0.0 < float(ratio) < 1.0) or math.isnan(float(ratio)):
        raise FaceganError(f"the mask ratio is the fraction of pixels hidden, between 0 and 1 (e.g. 0.3); got {ratio!r}")
    return float(ratio)


def check_kind(kind: str) -> str:
    if kind not in MASK_KINDS:
        raise FaceganError(f"unknown mask kind {kind!r}; use one of {', '.join(MASK_KINDS)}")
    return kind


def make_mask(size: int, kind: str, ratio: Ratio, rng: np.random.Generator, anchors: FaceAnchors = ALIGNED_ANCHORS) -> np.ndarray:
    """One bool (size, size) mask of `kind` whose hole ratio is `ratio` (to one pixel) or inside the band."""
    num_holes = _num_holes(size, ratio, rng)
    if kind == "box":
        priority = _box_priority(size, rng)
    elif kind == "strokes":
        priority = _strokes_priority(size, rng, num_holes)
    elif kind == "eyes":
        priority = _eyes_priority(size, rng, anchors)
    elif kind == "mouth":
        priority = _mouth_priority(size, rng, anchors)
    else:
        check_kind(kind)
    order = np.argsort(priority, axis=None, kind="stable")
    mask = np.zeros(size * size, dtype=bool)
    mask[order[:num_holes]] = True
    return mask.reshape(size, size)


def make_masks(count: int, size: int, kind: str, ratio: Ratio, seed: int = 0, anchors: FaceAnchors = ALIGNED_ANCHORS) -> np.ndarray:
    """`count` masks bool (count, size, size), True = hole; image i's mask depends on (seed, i) only.

    `ratio` is a target hole ratio (met to 0.5 / size**2) or a band (lo, hi) (each mask's ratio inside it).
    """
    check_kind(kind)
    ratio = check_ratio(ratio, size)
    if count < 0 or size < 2:
        raise FaceganError(f"masks need a count >= 0 and a size >= 2, got {count} and {size}")
    masks = np.zeros((count, size, size), dtype=bool)
    for index in range(count):
        masks[index] = make_mask(size, kind, ratio, np.random.default_rng([seed, index]), anchors)
    return masks


def training_masks(count: int, size: int, rng: np.random.Generator, kinds: Sequence[str] = MASK_KINDS,
                   ratio_range: tuple[float, float] = TRAINING_RATIO_RANGE, anchors: FaceAnchors = ALIGNED_ANCHORS) -> np.ndarray:
    """A training batch of masks: each a uniformly drawn kind from `kinds` and hole ratio from `ratio_range`."""
    for kind in kinds:
        check_kind(kind)
    if not kinds:
        raise FaceganError("training masks need at least one mask kind")
    check_ratio(tuple(ratio_range), size)
    masks = np.zeros((count, size, size), dtype=bool)
    for index in range(count):
        kind = kinds[int(rng.integers(len(kinds)))]
        masks[index] = make_mask(size, kind, (float(ratio_range[0]), float(ratio_range[1])), rng, anchors)
    return masks


def hole_ratio(masks: np.ndarray) -> np.ndarray:
    """The fraction of pixels hidden, per mask (N,)."""
    masks = np.asarray(masks, dtype=bool)
    return masks.reshape(len(masks), -1).mean(axis=1)


def estimate_anchors(images: np.ndarray, max_images: int = 64, fallback: FaceAnchors = ALIGNED_ANCHORS) -> FaceAnchors:
    """Measure where the eyes and nose are on these faces (dlib 5-point landmarks, median); `fallback` if none is found.

    Small chips are enlarged to 256 px first: dlib's HOG detector finds faces of about 80 px and up.
    """
    from PIL import Image

    from facegan.faces.align import load_dlib_models

    detector, predictor = load_dlib_models()
    eyes, noses, centers = [], [], []
    for image in np.asarray(images)[:max_images]:
        rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
        side = 256
        big = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((side, side), Image.Resampling.BICUBIC))
        faces = detector(big, 1)
        if not faces:
            continue
        shape = predictor(big, max(faces, key=lambda rect: rect.area()))
        points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64) / side
        eyes.append(points[:4, 1].mean())  # points 0-3: the eye corners, 4: the base of the nose
        noses.append(points[4, 1])
        centers.append(points[:, 0].mean())
    if not eyes:
        return fallback
    eye_y, nose_y = float(np.median(eyes)), float(np.median(noses))
    # The mouth is about 0.8 of an eye-to-nose distance below the nose; centre the mask between them.
    lower_face_y = nose_y + 0.4 * (nose_y - eye_y)
    return FaceAnchors(eye_y=round(eye_y, 3), lower_face_y=round(min(lower_face_y, 0.85), 3), center_x=round(float(np.median(centers)), 3))
