"""Safe image decoding: any file in, an RGB uint8 (H, W, 3) array or a named reason to skip it out.

This is the only place facegan reads image files. Every way a file can be bad maps to one short
reason (see SKIP_REASONS) so `prepare` can count and list skipped files instead of stopping.
"""
from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facegan.files import ReadRefused, read_regular_file

# Pillow's own default (~89.5 million pixels, a 9459 x 9459 image, ~270 MB as RGB). Anything larger
# is far beyond what a face crop needs and is the signature of a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485

# Formats we let Pillow try, by content (not by extension). Keeping the list short keeps Pillow's
# rarely used decoders (and their security history) out of reach of untrusted folders. "JPEG" also
# opens multi-picture camera JPEGs (reported as MPO); GIF is a common mislabelled "jpg".
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")

SKIP_REASONS: dict[str, str] = {
    "unreadable": "the file could not be read (permission denied, vanished, or a dangling link)",
    "not_a_regular_file": "the path is a folder, FIFO, device, socket or a link to one (never opened)",
    "zero_byte": "the file is empty",
    "not_an_image": "the content is not a JPEG, PNG, WebP, BMP or GIF image",
    "truncated": "the image data ends early (an interrupted download or copy)",
    "corrupt": "the image header or data is damaged",
    "damaged": "the decoder reported corrupt data (e.g. JPEG extraneous bytes, premature end); pixels would be wrong",
    "too_large": "the image has more pixels than the limit (possible decompression bomb) or the file more bytes",
    "unsupported_mode": "the image uses a colour mode that cannot be converted to RGB",
    "too_small": "the image is smaller than the minimum side length asked for",
    "no_face": "dlib found no face in the image",
}

# Files larger than this are skipped as `too_large` before a byte is read: no face photo needs
# 256 MiB, and reading a mislabelled disk image whole would exhaust memory.
DEFAULT_MAX_FILE_BYTES = 256 << 20

# File signatures of the formats above: a file that starts like an image but cannot be opened is
# reported as `corrupt`, not `not_an_image`, which points the user at the right fix.
_MAGIC_PREFIXES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")

# The 16-bit modes Pillow produces for greyscale PNGs (and "I" for older Pillow / other writers).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


_PROCESS_STATE_LOCK = threading.RLock()

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
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    keep_damaged: bool = False,
) -> np.ndarray:
    """Read one image file as RGB uint8 (H, W, 3), upright per its EXIF orientation.

    Raises SkippedImage for every kind of bad file; never anything else for bad input.
    `draft_size` lets JPEG decoding run at a reduced scale (1/2 .. 1/8) as long as the result
    stays at least that large, which makes big photos several times cheaper to shrink.
    `min_side` skips images whose shorter side (as stored) is below it, before decoding pixels.
    Only regular files of at most `max_file_bytes` are read. A JPEG whose decoder reports corrupt
    data is skipped as `damaged` unless `keep_damaged`.
    """
    pixels, damage = decode_image_with_damage(path, max_pixels, draft_size, min_side, max_file_bytes)
    if damage and not keep_damaged:
        raise SkippedImage("damaged", damage)
    return pixels


def decode_image_with_damage(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    min_side: int = 0,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> tuple[np.ndarray, str]:
    """Like decode_image, but a damaged file is returned with its decoder warning ('' when clean)."""
    try:
        data = read_regular_file(path, max_file_bytes)
    except ReadRefused as refused:  # FIFO, device, huge file, permission denied, dangling link
        raise SkippedImage(refused.reason, refused.detail) from None
    if not data:
        raise SkippedImage("zero_byte")
    return decode_image_bytes_with_damage(data, max_pixels=max_pixels, draft_size=draft_size, min_side=min_side)


def decode_image_bytes(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    min_side: int = 0,
    keep_damaged: bool = False,
) -> np.ndarray:
    """Like decode_image, for bytes already in memory."""
    pixels, damage = decode_image_bytes_with_damage(data, max_pixels, draft_size, min_side)
    if damage and not keep_damaged:
        raise SkippedImage("damaged", damage)
    return pixels


def decode_image_bytes_with_damage(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    min_side: int = 0,
) -> tuple[np.ndarray, str]:
    """Decode bytes to RGB uint8 (H, W, 3) plus the decoder's corruption warning ('' when clean)."""
    if not data:
        raise SkippedImage("zero_byte")
    _check_riff_length(data)
    # One decode at a time per process: the pixel limit, the warnings filter and the stderr capture are
    # process-wide, and `facegan serve` decodes uploads in several threads (preparing uses processes).
    with _PROCESS_STATE_LOCK, _pixel_limit(max_pixels):
        image = _open(data, max_pixels)
        if min(image.size) < min_side:
            raise SkippedImage("too_small", f"{image.size[0]}x{image.size[1]} < {min_side} px")
        is_jpeg = image.format in ("JPEG", "MPO")
        if draft_size is not None and is_jpeg:
            # Only the DCT scale changes; the mode stays as decoded so CMYK etc. are handled below.
            image.draft(image.mode, draft_size)
        _load(image, data)
        # Checked after a successful load, so truncated and undecodable files keep their own reasons.
        damage = jpeg_decoder_warnings(data) if is_jpeg else ""
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - a broken EXIF block should not cost a good image its pixels
            pass
        return to_rgb_array(image), damage


def jpeg_decoder_warnings(data: bytes) -> str:
    """libjpeg's first warning for these JPEG bytes ("Corrupt JPEG data: ...", "Premature end of
    JPEG file"), or '' when it reports none.

    Pillow silences libjpeg's warnings and returns the damaged pixels as if nothing happened; dlib's
    loader (the same libjpeg family) prints them on file descriptor 2, so we decode once more
    through dlib with that descriptor pointed at an in-memory file. Without dlib nothing is checked.
    """
    try:
        import dlib
    except ImportError:
        return ""
    # Capture first: if descriptor 2 was closed, the capture file takes it, not the image's memfd.
    with _captured_stderr() as captured, _bytes_as_path(data) as path:
        try:
            dlib.load_rgb_image(path)
        except Exception:  # noqa: BLE001 - an error dlib alone raises (a mode it lacks) is not damage
            pass
    text = captured.read().decode("utf-8", errors="replace").strip()
    return text.splitlines()[0][:200] if text else ""


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
def _bytes_as_path(data: bytes) -> Iterator[str]:
    """A path that reads back exactly `data`, removed on exit: the file that was checked is the one
    decoded, even if the source file changes meanwhile."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        descriptor = os.memfd_create("facegan-jpeg-check", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.NamedTemporaryFile(suffix=".jpg") as handle:
        handle.write(data)
        handle.flush()
        yield handle.name


@contextlib.contextmanager
def _captured_stderr() -> Iterator[io.BytesIO]:
    """What native code writes to file descriptor 2 inside the block (kept from the user's terminal);
    the returned buffer is filled when the block ends."""
    captured = io.BytesIO()
    with contextlib.suppress(Exception):  # a closed or broken sys.stderr must not stop decoding
        sys.stderr.flush()
    try:
        saved: int | None = os.dup(2)
    except OSError:  # descriptor 2 is closed (`2>&-`): capture anyway, and close it again after
        saved = None
    with tempfile.TemporaryFile() as handle:
        os.dup2(handle.fileno(), 2)
        try:
            yield captured
        finally:
            handle.seek(0)
            captured.write(handle.read(4096))
            captured.seek(0)
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            elif handle.fileno() != 2:  # (if the capture file itself got descriptor 2, closing it closes 2)
                os.close(2)


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
