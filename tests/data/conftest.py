"""Fixtures for the data tests: small image files written on the fly, good and deliberately broken."""
from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    """Encode a Pillow image to bytes in `image_format`."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims width x height (a decompression bomb's shape).

    Written by hand so the test never allocates the claimed pixels.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def corrupt_png() -> bytes:
    """A PNG whose compressed pixel data is overwritten with zeros in the middle (zlib stream error)."""
    data = bytearray(encode(Image.fromarray(random_rgb(32, 32, seed=1)), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(200)
    return bytes(data)


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """write_file('sub/name.jpg', payload) -> the written path under tmp_path/'source'."""

    def write(relative: str, payload: bytes) -> Path:
        path = tmp_path / "source" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        return path

    return write


# Every file in the messy folder: name -> (payload factory, expected skip reason or None if kept).
MESSY_FILES: dict[str, tuple[Callable[[], bytes], str | None]] = {
    "good.jpg": (lambda: encode(Image.fromarray(random_rgb(40, 30)), "JPEG", quality=95), None),
    "UPPER.JPEG": (lambda: encode(Image.fromarray(random_rgb(20, 20, seed=2)), "JPEG"), None),
    "png_named_as.jpg": (lambda: encode(Image.new("RGB", (24, 24), (0, 128, 255)), "PNG"), None),
    "cmyk.jpg": (lambda: encode(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), "JPEG", quality=100), None),
    # 25700 = 100 * 257: a 16-bit value that scales to exactly 100 in 8 bits.
    "sixteen_bit.png": (lambda: encode(Image.fromarray(np.full((24, 24), 25700, dtype=np.uint16)), "PNG"), None),
    "palette.png": (lambda: encode(Image.new("RGB", (24, 24), (200, 30, 60)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), None),
    "transparent.png": (lambda: encode(Image.new("RGBA", (24, 24), (255, 0, 0, 0)), "PNG"), None),
    "grey.png": (lambda: encode(Image.new("L", (24, 24), 77), "PNG"), None),
    "nested/deeper/tiny.bmp": (lambda: encode(Image.new("RGB", (7, 5), (1, 2, 3)), "BMP"), None),
    "lossless.webp": (lambda: encode(Image.new("RGB", (24, 24), (9, 99, 199)), "WEBP", lossless=True), None),
    "zero.jpg": (lambda: b"", "zero_byte"),
    "text.jpg": (lambda: b"this is not an image, just text\n" * 4, "not_an_image"),
    "truncated.jpg": (lambda: (lambda data: data[: len(data) // 2])(encode(Image.fromarray(random_rgb(64, 64)), "JPEG")), "truncated"),
    "corrupt.png": (corrupt_png, "corrupt"),
    "bomb.png": (lambda: png_claiming_size(20000, 20000), "too_large"),
}


@pytest.fixture
def messy_expectations() -> dict[str, str | None]:
    """File name in messy_folder -> the skip reason prepare must give it (None: kept)."""
    return {name: reason for name, (_, reason) in MESSY_FILES.items()} | {"dangling.jpg": "unreadable"}


@pytest.fixture
def messy_folder(tmp_path: Path, write_file) -> Path:
    """A folder holding every kind of good and bad file MESSY_FILES lists, plus a dangling link and a text file."""
    for name, (make_payload, _) in MESSY_FILES.items():
        write_file(name, make_payload())
    source = tmp_path / "source"
    (source / "notes.txt").write_text("not an image extension: ignored, not counted\n")
    # Tests run as root, where chmod 000 does not stop reads; a link to nothing is unreadable for anyone.
    (source / "dangling.jpg").symlink_to(source / "does-not-exist.jpg")
    return source


@pytest.fixture
def celeba_folder(tmp_path: Path) -> Path:
    """A fake CelebA: 6 JPEGs (one of them empty) and the three annotation files."""
    root = tmp_path / "celeba"
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    for number in range(1, 7):
        payload = b"" if number == 4 else encode(Image.fromarray(random_rgb(36, 30, seed=number)), "JPEG")
        (images / f"{number:06d}.jpg").write_bytes(payload)
    names = [f"Attribute_{index:02d}" for index in range(40)]
    rows = [f"{number:06d}.jpg " + " ".join("1" if (number + index) % 3 == 0 else "-1" for index in range(40)) for number in range(1, 7)]
    (root / "list_attr_celeba.txt").write_text("6\n" + " ".join(names) + "\n" + "\n".join(rows) + "\n")
    identities = {1: 2880, 2: 17, 3: 2880, 4: 5, 5: 17, 6: 9}
    (root / "identity_CelebA.txt").write_text("".join(f"{number:06d}.jpg {identity}\n" for number, identity in identities.items()))
    partitions = {1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 2}
    (root / "list_eval_partition.txt").write_text("".join(f"{number:06d}.jpg {part}\n" for number, part in partitions.items()))
    return root


@pytest.fixture
def lfw_folder(tmp_path: Path) -> Path:
    """A fake LFW: 3 persons with 2, 1 and 3 images, and pairs.txt."""
    root = tmp_path / "lfw"
    counts = {"Zoe_Zed": 2, "Aaron_Eckhart": 1, "George_W_Bush": 3}
    for seed, (person, count) in enumerate(counts.items()):
        for number in range(1, count + 1):
            path = root / person / f"{person}_{number:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(Image.fromarray(random_rgb(40, 40, seed=seed * 10 + number)), "JPEG"))
    (root / "pairs.txt").write_text("1\t1\nGeorge_W_Bush\t1\t2\n")
    return root


@pytest.fixture
def encode_image() -> Callable[..., bytes]:
    """encode_image(pil_image, 'PNG', **options) -> bytes."""
    return encode
