"""Safe image decoding: any file in, an RGB uint8 (H, W, 3) array or a named reason to skip it out.

This is the only place facegan reads image files. Every way a file can be bad maps to one short
reason (see SKIP_REASONS) so `prepare` can count and list skipped files instead of stopping.
"""
from __future__ import annotations

import contextlib
import io
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own default (~89.5 million pixels, a 9459 x 9459 image, ~270 MB as RGB). Anything larger
# is far beyond what a face crop needs and is the signature of a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485

# Formats we let Pillow try, by content (not by extension). Keeping the list short keeps Pillow's
# rarely used decoders (and their security history) out of reach of untrusted folders. "JPEG" also
# opens multi-picture camera JPEGs (reported as MPO); GIF is a common mislabelled "jpg".
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")

SKIP_REASONS: dict[str, str] = {
    "unreadable": "the file could not be read (permission denied, vanished, or not a regular file)",
    "zero_byte": "the file is empty",
    "not_an_image": "the content is not a JPEG, PNG, WebP, BMP or GIF image",
    "truncated": "the image data ends early (an interrupted download or copy)",
    "corrupt": "the image header or data is damaged",
    "too_large": "the image has more pixels than the limit (possible decompression bomb)",
    "unsupported_mode": "the image uses a colour mode that cannot be converted to RGB",
    "too_small": "the image is smaller than the minimum side length asked for",
    "no_face": "dlib found no face in the image",
}

# File signatures of the formats above: a file that starts like an image but cannot be opened is
# reported as `corrupt`, not `not_an_image`, which points the user at the right fix.
_MAGIC_PREFIXES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")

# The 16-bit modes Pillow produces for greyscale PNGs (and "I" for older Pillow / other writers).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class SkippedImage(Exception):
    """A file that cannot become a training image; `reason` is a key of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def decode_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    min_side: int = 0,
) -> np.ndarray:
    """Read one image file as RGB uint8 (H, W, 3), upright per its EXIF orientation.

    Raises SkippedImage for every kind of bad file; never anything else for bad input.
    `draft_size` lets JPEG decoding run at a reduced scale (1/2 .. 1/8) as long as the result
    stays at least that large, which makes big photos several times cheaper to shrink.
    `min_side` skips images whose shorter side (as stored) is below it, before decoding pixels.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:  # PermissionError, IsADirectoryError, FileNotFoundError (dangling link), EIO
        raise SkippedImage("unreadable", error.strerror or type(error).__name__) from None
    if not data:
        raise SkippedImage("zero_byte")
    return decode_image_bytes(data, max_pixels=max_pixels, draft_size=draft_size, min_side=min_side)


def decode_image_bytes(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    min_side: int = 0,
) -> np.ndarray:
    """Like decode_image, for bytes already in memory."""
    if not data:
        raise SkippedImage("zero_byte")
    _check_riff_length(data)
    with _pixel_limit(max_pixels):
        image = _open(data, max_pixels)
        if min(image.size) < min_side:
            raise SkippedImage("too_small", f"{image.size[0]}x{image.size[1]} < {min_side} px")
        if draft_size is not None and image.format in ("JPEG", "MPO"):
            # Only the DCT scale changes; the mode stays as decoded so CMYK etc. are handled below.
            image.draft(image.mode, draft_size)
        _load(image, data)
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - a broken EXIF block should not cost a good image its pixels
            pass
        return to_rgb_array(image)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8 (H, W, 3): 16-bit scaled, palettes expanded, alpha on white."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        # Scale the full 16-bit range onto 0..255 (65535 -> 255, 257 * k -> k) rather than
        # clipping, which would turn every 16-bit image white.
        values = np.asarray(image).astype(np.float64)
        grey = np.rint(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        grey = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0, 255)).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P":
        mode_after = "RGBA" if "transparency" in image.info else "RGB"
        image = image.convert(mode_after)
        mode = image.mode
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        # Transparent pixels often hold arbitrary colours; show them as a viewer would, on white.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    try:
        rgb = image.convert("RGB")
    except (ValueError, OSError) as error:  # e.g. LAB, which Pillow cannot convert without a profile
        raise SkippedImage("unsupported_mode", f"{mode}: {error}") from None
    return np.asarray(rgb, dtype=np.uint8)


# ---- internals --------------------------------------------------------------------------------
@contextlib.contextmanager
def _pixel_limit(max_pixels: int) -> Iterator[None]:
    """Make Pillow's own bomb check use our limit, and turn its warning into an error, for one decode."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Identify the format from the header; no pixel data is decoded yet."""
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SkippedImage("too_large", str(error).split(".")[0]) from None
    except UnidentifiedImageError:
        if _looks_like_image(data):
            raise SkippedImage("corrupt", "image signature present but the header cannot be parsed") from None
        raise SkippedImage("not_an_image") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for malformed headers
        raise SkippedImage(*_classify_decode_error(error)) from None
    width, height = image.size
    # Pillow only checks at 1x (warning) and 2x (error) its limit; we enforce ours exactly.
    if width * height > max_pixels:
        raise SkippedImage("too_large", f"{width}x{height} pixels > limit {max_pixels}")
    if width < 1 or height < 1:
        raise SkippedImage("corrupt", f"image claims size {width}x{height}")
    return image


def _load(image: Image.Image, data: bytes) -> None:
    """Decode the pixels, classifying failures (truncation is kept apart from other damage)."""
    try:
        image.load()
    except SkippedImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SkippedImage("too_large", str(error).split(".")[0]) from None
    except Exception as error:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, zlib.error, ...
        raise SkippedImage(*_classify_decode_error(error)) from None


def _classify_decode_error(error: BaseException) -> tuple[str, str]:
    message = str(error) or type(error).__name__
    if isinstance(error, EOFError) or "truncated" in message.lower():
        return "truncated", message
    if isinstance(error, MemoryError):
        return "too_large", "out of memory while decoding"
    # OSError, SyntaxError, ValueError, zlib.error, struct.error, ...: the data is damaged.
    return "corrupt", f"{type(error).__name__}: {message}"


def _check_riff_length(data: bytes) -> None:
    """libwebp reports a short file only as "could not create decoder"; the RIFF header says how
    long the file should be, which tells truncation apart from damage."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        (declared_size,) = struct.unpack("<I", data[4:8])
        if len(data) < declared_size + 8:
            raise SkippedImage("truncated", f"{len(data)} of {declared_size + 8} bytes")


def _looks_like_image(data: bytes) -> bool:
    if any(data.startswith(prefix) for prefix in _MAGIC_PREFIXES):
        return True
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
