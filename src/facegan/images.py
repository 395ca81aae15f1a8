"""The one place that converts images between their two representations.

- At the edges (files, arrays, UI): uint8, NHWC, values 0..255.
- Inside models: float32, NCHW, values in [-1, 1].
Also: grids, strips and the one image writer (PNG, JPEG, WebP, BMP by suffix): every image facegan
writes goes through `encode_image`, which embeds the image's provenance (XMP, and a C2PA manifest
when a signer is given; see facegan.provenance).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from facegan.errors import FaceganError
from facegan.files import write_bytes_atomic
from facegan.provenance.record import Provenance

if TYPE_CHECKING:  # torch is imported where a tensor is made, so `import facegan.images` stays light
    import torch

# Lanczos is antialiased in Pillow (its kernel widens with the reduction factor), so shrinking a
# 4000 px photo to 64 px does not alias; it is also what StyleGAN's dataset tool uses.
PHOTO_RESAMPLE = Image.Resampling.LANCZOS


def to_model(images: torch.Tensor | np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 NHWC (or HWC) -> float32 NCHW in [-1, 1]."""
    import torch

    tensor = torch.as_tensor(images)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"to_model expects uint8 images, got {tensor.dtype}")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if device is not None:
        tensor = tensor.to(device, non_blocking=True)
    # (N, H, W, C) -> (N, C, H, W); the permute is a view, the division materialises it.
    return tensor.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float NCHW in [-1, 1] -> uint8 NHWC on the CPU (values outside [-1, 1] are clipped)."""
    import torch

    if images.ndim != 4:
        raise ValueError(f"to_uint8 expects (N, C, H, W), got shape {tuple(images.shape)}")
    scaled = (images.detach().float() + 1.0) * 127.5
    # Round half away from zero once, so the same float image always gives the same bytes.
    return scaled.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()


def grid_shape(count: int, height: int, width: int, channels: int, num_columns: int | None = None, padding: int = 2) -> tuple[int, int, int]:
    """The (H, W, C) of the grid `make_grid` would build, without building it (to refuse one that cannot fit)."""
    if num_columns is None:
        num_columns = math.isqrt(count - 1) + 1 if count > 0 else 1  # ceil(sqrt(count)), exact for big counts
    num_columns = max(1, min(num_columns, count))
    num_rows = -(-count // num_columns)
    return num_rows * (height + padding) + padding, num_columns * (width + padding) + padding, channels


# A grid is one image held in memory and encoded at once: at most this many pixels (~768 MiB as RGB),
# and no side beyond what the format can store.
MAX_GRID_PIXELS = 2**28
MAX_GRID_SIDE = {".webp": 16383, ".jpg": 65535, ".jpeg": 65535}


def check_grid_fits(count: int, height: int, width: int, channels: int, num_columns: int | None, suffix: str, option: str) -> None:
    """Refuse a grid too big to hold or encode, naming its size; call before rendering anything."""
    grid_height, grid_width, _ = grid_shape(count, height, width, channels, num_columns)
    gib = grid_height * grid_width * channels / 2**30
    if grid_height * grid_width > MAX_GRID_PIXELS:
        raise FaceganError(
            f"{option} is {count} images (~{gib:,.1f} GiB as a {grid_width}x{grid_height} grid); at most {MAX_GRID_PIXELS:,} pixels "
            "in one grid: use fewer seeds, or --out-dir for one file per seed"
        )
    side_limit = MAX_GRID_SIDE.get(suffix.lower())
    if side_limit and max(grid_height, grid_width) > side_limit:
        raise FaceganError(f"a {grid_width}x{grid_height} grid is too large for {suffix} (at most {side_limit} px a side); write .png")


def make_grid(images: np.ndarray, num_columns: int | None = None, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile uint8 NHWC images into one uint8 HWC image (row-major)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError("make_grid expects uint8 (N, H, W, C)")
    count, height, width, channels = images.shape
    if count == 0:
        raise ValueError("make_grid needs at least one image")
    if num_columns is None:
        num_columns = int(np.ceil(np.sqrt(count)))
    num_columns = max(1, min(num_columns, count))
    num_rows = int(np.ceil(count / num_columns))
    grid = np.full(
        (num_rows * (height + padding) + padding, num_columns * (width + padding) + padding, channels),
        pad_value,
        dtype=np.uint8,
    )
    for index in range(count):
        row, column = divmod(index, num_columns)
        top = padding + row * (height + padding)
        left = padding + column * (width + padding)
        grid[top : top + height, left : left + width] = images[index]
    return grid


def to_pil(image: np.ndarray):
    """uint8 HWC (C = 1 or 3) -> PIL image."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        return Image.fromarray(image[:, :, 0], mode="L")
    return Image.fromarray(image)


def upscale_nearest(image: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Enlarge small images by an integer factor so a person can see them (pixel-exact)."""
    factor = max(1, int(np.ceil(min_side / max(1, min(image.shape[0], image.shape[1])))))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def png_bytes(image: np.ndarray, provenance: Provenance) -> bytes:
    """Encode uint8 HWC as PNG bytes carrying `provenance` (for figures embedded in HTML, and files)."""
    return encode_image(image, ".png", provenance)


def save_png(image: np.ndarray, path: str | os.PathLike, provenance: Provenance) -> Path:
    """Write uint8 HWC to a PNG atomically (temp file + rename), carrying `provenance`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, encode_image(image, ".png", provenance, title=path.name))
    return path


# Suffix -> (Pillow format, save options). JPEG at quality 95 without chroma subsampling (tiny faces
# would lose their colour detail at 4:2:0); WebP lossless.
IMAGE_FORMATS: dict[str, tuple[str, dict[str, object]]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"lossless": True}),
    ".bmp": ("BMP", {}),
}
# Formats with no place for metadata: written only with provenance off (--no-provenance).
NO_METADATA_FORMATS = (".bmp",)
XMP_PNG_KEY = "XML:com.adobe.xmp"


def check_image_path(path: str | os.PathLike, option: str = "the output", provenance: Provenance | None = None) -> Path:
    """Refuse, before any work, an image path whose suffix names no format we write, or that is a folder,
    or (with provenance on) a format that cannot carry it."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_FORMATS:
        raise FaceganError(
            f"{option} {path} has no image suffix facegan writes ({path.suffix or 'none'}); end it in {', '.join(IMAGE_FORMATS)}"
        )
    if path.is_dir():
        raise FaceganError(f"{option} {path} is a folder; give a file name such as {path / 'grid.png'}")
    if provenance is not None:
        _check_can_mark(path.suffix, provenance, f"{option} {path}")
    return path


def _check_can_mark(suffix: str, provenance: Provenance, label: str) -> None:
    if provenance.enabled and suffix.lower() in NO_METADATA_FORMATS:
        raise FaceganError(f"{label}: {suffix} cannot carry provenance metadata; write .png, .jpg or .webp (or pass --no-provenance)")


def encode_image(image: np.ndarray, suffix: str, provenance: Provenance, title: str = "image") -> bytes:
    """THE image writer: uint8 HWC encoded in the format `suffix` names, with `provenance` embedded.

    Provenance on: an XMP packet (PNG iTXt `XML:com.adobe.xmp`, JPEG APP1, WebP XMP chunk), then a
    signed C2PA manifest when `provenance.signer` is set and the image is generated or changed.
    """
    if not isinstance(provenance, Provenance):
        raise TypeError(f"encode_image needs a Provenance (Provenance.off() for none), got {type(provenance).__name__}")
    if suffix.lower() not in IMAGE_FORMATS:
        raise FaceganError(f"cannot write images as '{suffix}'; use one of {', '.join(IMAGE_FORMATS)}")
    _check_can_mark(suffix, provenance, title)
    image_format, options = IMAGE_FORMATS[suffix.lower()]
    options = dict(options)
    if provenance.enabled:
        packet = provenance.xmp()
        if image_format == "PNG":
            from PIL import PngImagePlugin

            info = PngImagePlugin.PngInfo()
            info.add_itxt(XMP_PNG_KEY, packet.decode("utf-8"), zip=False)
            options["pnginfo"] = info
        else:
            options["xmp"] = packet
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format=image_format, **options)
    payload = buffer.getvalue()
    if provenance.enabled and provenance.signer is not None and provenance.source_type is not None:
        payload = provenance.signer.sign(payload, image_format, provenance, title)
    return payload


def animation_bytes(frames: np.ndarray, provenance: Provenance, frame_ms: int = 120) -> bytes:
    """uint8 (N, H, W, C) frames as one looping, lossless animated WebP carrying `provenance` (XMP; GIF has no place for it)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError("animation_bytes expects uint8 (N, H, W, C) with N >= 1")
    if not isinstance(provenance, Provenance):
        raise TypeError(f"animation_bytes needs a Provenance (Provenance.off() for none), got {type(provenance).__name__}")
    options: dict[str, object] = {"lossless": True, "loop": 0, "duration": int(frame_ms)}
    if provenance.enabled:
        options["xmp"] = provenance.xmp()
    pictures = [to_pil(frame) for frame in frames]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="WEBP", save_all=True, append_images=pictures[1:], **options)
    return buffer.getvalue()


def image_bytes(image: np.ndarray, suffix: str, provenance: Provenance) -> bytes:
    """Encode uint8 HWC in the format a file suffix names (.png, .jpg/.jpeg, .webp, .bmp), with provenance."""
    return encode_image(image, suffix, provenance)


def save_image(image: np.ndarray, path: str | os.PathLike, provenance: Provenance) -> Path:
    """Write uint8 HWC atomically in the format the suffix names (.png, .jpg/.jpeg at quality 95, lossless .webp, .bmp)."""
    path = check_image_path(path)
    payload = encode_image(image, path.suffix, provenance, title=path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a dangling or looping link, or a file, where the folder should be
        reason = "a file or a broken or looping link is in the way" if isinstance(error, FileExistsError) else error.strerror or error
        raise FaceganError(f"cannot create the folder {path.parent} for {path.name}: {reason}; give another path") from None
    write_bytes_atomic(path, payload)
    return path


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of the image, resized to (size, size) in one antialiased step."""
    height, width = image.shape[:2]
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    return _resize(image, size, box=(left, top, left + side, top + side))


def resize_whole(image: np.ndarray, size: int) -> np.ndarray:
    """The whole image squeezed to (size, size); the aspect ratio is not kept."""
    return _resize(image, size, box=None)


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HWC uint8 with 1 or 3 channels -> HWC uint8 with `channels` (grey uses ITU-R 601 luma, as Pillow)."""
    image = image if image.ndim == 3 else image[:, :, None]
    current = image.shape[2]
    if current == channels:
        return image
    if current == 1 and channels == 3:
        return np.repeat(image, 3, axis=2)
    if current == 3 and channels == 1:
        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("L"))[:, :, None]
    raise ValueError(f"cannot convert {current} channels to {channels}")


def _resize(image: np.ndarray, size: int, box: tuple[int, int, int, int] | None) -> np.ndarray:
    channels = 1 if image.ndim == 2 else image.shape[2]
    pil_image = Image.fromarray(np.ascontiguousarray(image if channels != 1 else image.reshape(image.shape[:2])))
    resized = np.asarray(pil_image.resize((size, size), PHOTO_RESAMPLE, box=box), dtype=np.uint8)
    return resized.reshape(size, size, channels)



# ---- Masks for repair and masked projection ------------------------------------------------------
# A mask is bool (H, W) with True = MISSING pixel (the hole). On disk: a PNG per image (white >= 128
# is a hole) in a folder, matched to the images by sorted file name, or one PNG for every image, or
# a .npy of bool / uint8 (N, H, W) or (H, W).
MASK_THRESHOLD = 128


def _mask_file_limit(count: int, size: int) -> int:
    # The largest honest mask file: an uncompressed 64-bit array of every mask, plus room for headers.
    return count * size * size * 8 + (1 << 20)


def _decode_mask_png(data: bytes, label: str, size: int) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data), formats=("PNG",))
    except Image.DecompressionBombError:
        raise FaceganError(f"{label} claims a huge size; give masks of the images' size ({size}x{size})") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for a bad header
        raise FaceganError(f"{label} is not a readable PNG ({type(error).__name__}); give a PNG mask, white = hole") from None
    width, height = image.size
    # The size is checked from the header, so a huge (bomb) PNG is refused before it is decoded.
    if (width, height) != (size, size):
        raise FaceganError(f"{label} is {width}x{height}, the images are {size}x{size}; give masks of the images' size")
    try:
        grey = np.asarray(image.convert("L"))
    except Exception as error:  # noqa: BLE001 - truncated or damaged pixel data
        raise FaceganError(f"{label} is a damaged PNG ({type(error).__name__}: {error}); write it again") from None
    return grey >= MASK_THRESHOLD


def _decode_mask_npy(data: bytes, label: str, count: int, size: int) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - not .npy, pickled objects, truncated
        raise FaceganError(f"{label} is not a readable .npy array ({type(error).__name__}); save masks with numpy.save (bool, no pickles)") from None
    if not isinstance(array, np.ndarray) or array.dtype not in (np.bool_, np.uint8):
        raise FaceganError(f"{label} holds {getattr(array, 'dtype', type(array).__name__)}; masks are bool or uint8 (True / 1 / >= 128 = hole)")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (size, size):
        raise FaceganError(f"{label} has shape {array.shape}, the images are {size}x{size}; give (N, {size}, {size}) or ({size}, {size})")
    if array.dtype == np.uint8:
        # 0/1 arrays mark holes with 1; anything else is read like a grey PNG (>= 128 = hole).
        array = array == 1 if array.max(initial=0) <= 1 else array >= MASK_THRESHOLD
    return np.ascontiguousarray(array, dtype=bool)


def read_masks(path: str | os.PathLike, count: int, size: int) -> np.ndarray:
    """Masks for `count` images of `size` x `size` as bool (count, size, size), True = hole.

    `path` is a folder of PNGs (one per image in sorted name order, or a single one for all), a
    PNG (for all), or a .npy (N, H, W) / (H, W). A mask that hides every pixel is refused: nothing
    would be left to repair from.
    """
    from facegan.files import ReadRefused, read_regular_file

    if count < 1 or size < 1:
        raise ValueError(f"read_masks needs count >= 1 and size >= 1, got {count} and {size}")
    path = Path(path)
    limit = _mask_file_limit(count, size)

    def read(file: Path) -> bytes:
        try:
            return read_regular_file(file, limit)
        except ReadRefused as error:
            if error.reason == "too_large":
                raise FaceganError(f"cannot read the mask {file}: {error.detail}; masks are small bool images") from None
            raise FaceganError(f"{error}; give a mask PNG, a folder of them, or a .npy") from None

    if not path.exists() and not path.is_symlink():
        raise FaceganError(f"the mask path {path} does not exist; give a PNG, a folder of PNGs or a .npy")
    if path.is_dir():
        try:
            entries = sorted(entry for entry in path.iterdir() if entry.suffix.lower() == ".png" and not entry.name.startswith("."))
        except OSError as error:
            raise FaceganError(f"cannot list the mask folder {path}: {error.strerror}") from None
        if not entries:
            raise FaceganError(f"the mask folder {path} holds no .png masks; give one PNG per image (white = hole)")
        if len(entries) not in (1, count):
            raise FaceganError(
                f"the mask folder {path} holds {len(entries)} PNG masks for {count} images; give one per image (sorted by name) or one for all"
            )
        masks = np.stack([_decode_mask_png(read(entry), f"mask {index} ({entry.name})", size) for index, entry in enumerate(entries)])
    elif path.suffix.lower() == ".png":
        masks = _decode_mask_png(read(path), f"the mask {path.name}", size)[None]
    elif path.suffix.lower() == ".npy":
        masks = _decode_mask_npy(read(path), f"the mask file {path.name}", count, size)
        if len(masks) not in (1, count):
            raise FaceganError(f"the mask file {path.name} holds {len(masks)} masks for {count} images; give one per image or one for all")
    else:
        raise FaceganError(f"the mask path {path} is not a folder, .png or .npy; give masks as PNGs (white = hole) or a bool .npy")
    if len(masks) == 1 and count != 1:
        masks = np.repeat(masks, count, axis=0)
    full = np.flatnonzero(masks.reshape(len(masks), -1).all(axis=1))
    if len(full):
        raise FaceganError(f"mask {int(full[0])} hides every pixel: nothing is left to repair from; leave some of the face visible")
    return masks


def write_masks(folder: str | os.PathLike, masks: np.ndarray, provenance: Provenance | None = None) -> list[Path]:
    """Write bool (N, H, W) masks as PNGs (white = hole) named so sorted order is mask order; read back by read_masks.

    Masks are marked as algorithmic media (made by an algorithm, no training data) unless told otherwise."""
    from facegan.provenance.record import ALGORITHMIC

    provenance = provenance or Provenance(source_type=ALGORITHMIC, action="mask")
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.dtype != np.bool_:
        raise ValueError(f"write_masks expects bool (N, H, W), got {masks.dtype} {masks.shape}")
    folder = Path(folder)
    digits = max(5, len(str(len(masks) - 1)))
    return [save_png(mask.astype(np.uint8)[:, :, None] * 255, folder / f"{index:0{digits}d}.png", provenance) for index, mask in enumerate(masks)]
