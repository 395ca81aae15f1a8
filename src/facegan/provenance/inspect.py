"""Reading provenance back from image files: the XMP record and the C2PA manifest, validated."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from facegan.errors import FaceganError

# Image files larger than this are refused (facegan's are kilobytes; a camera JPEG is a few MB).
MAX_IMAGE_FILE_BYTES = 256 * 2**20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def expand_image_paths(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as the image files directly inside them (sorted); refuses what is missing."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                inside = sorted(entry for entry in path.iterdir() if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file()
                                and not entry.name.startswith("."))
            except OSError as error:
                raise FaceganError(f"cannot list {path}: {error.strerror}") from None
            if not inside:
                raise FaceganError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(inside)
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            raise FaceganError(f"{path} does not exist; give image files or folders of them")
    return files


def read_provenance(path: str | os.PathLike, trust_anchors_pem: str | None = None) -> dict[str, Any]:
    """{"path", "format", "xmp": {...} | None, "xmp_error"?, "c2pa": {...} | None} for one image file."""
    from PIL import Image

    from facegan.files import ReadRefused, read_regular_file
    from facegan.provenance.credentials import read_credentials
    from facegan.provenance.record import XmpError, parse_xmp

    path = Path(path)
    try:
        payload = read_regular_file(path, MAX_IMAGE_FILE_BYTES)
    except ReadRefused as error:
        raise FaceganError(f"{error}; give image files") from None
    try:
        image = Image.open(io.BytesIO(payload))
        image_format = image.format
        packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
        if packet is None and image_format == "PNG":
            packet = _png_xmp_chunk(payload)  # after the pixel data, where Pillow looks only once it decodes them
    except Image.DecompressionBombError:
        raise FaceganError(f"{path} claims a huge size (a decompression bomb?); not read") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for a file that is not an image
        raise FaceganError(f"{path} is not a readable image ({type(error).__name__}); give PNG, JPEG or WebP files") from None
    record: dict[str, Any] = {"path": str(path), "format": image_format, "xmp": None, "c2pa": None}
    if packet:
        try:
            record["xmp"] = parse_xmp(packet)
        except XmpError as error:
            record["xmp_error"] = str(error)
    record["c2pa"] = read_credentials(payload, image_format, trust_anchors_pem)
    return record


def _png_xmp_chunk(payload: bytes) -> bytes | None:
    """The XMP packet of an iTXt chunk anywhere in a PNG, found by walking the chunks (no pixel decoding)."""
    import struct
    import zlib

    offset = 8
    while offset + 8 <= len(payload):
        (length,) = struct.unpack(">I", payload[offset : offset + 4])
        kind = payload[offset + 4 : offset + 8]
        data = payload[offset + 8 : offset + 8 + length]
        if kind == b"iTXt" and data.startswith(b"XML:com.adobe.xmp\x00"):
            rest = data[len(b"XML:com.adobe.xmp\x00"):]
            if len(rest) < 2:
                return None
            compressed, rest = rest[0], rest[2:]
            rest = rest.split(b"\x00", 2)[-1] if rest.count(b"\x00") >= 2 else b""  # skip language tag and translated keyword
            try:
                return zlib.decompressobj().decompress(rest, 4 * 2**20) if compressed else rest
            except zlib.error:
                return None
        if kind == b"IEND":
            break
        offset += 12 + length
    return None


def _printable(value: Any) -> str:
    """A value from a file, safe to print on one line: control characters (a newline in an XMP attribute would
    forge a second line of output) shown as escapes."""
    text = str(value)
    return "".join(character if character.isprintable() else character.encode("unicode_escape").decode("ascii") for character in text)


def describe(record: dict[str, Any]) -> str:
    """One line for a person: what the file says it is (every string from the file escaped)."""
    record = {key: ({name: _printable(item) if isinstance(item, str) else item for name, item in value.items()}
                    if isinstance(value, dict) else value) for key, value in record.items()}
    if isinstance(record.get("c2pa"), dict) and isinstance(record["c2pa"].get("failures"), list):
        record["c2pa"]["failures"] = [_printable(code) for code in record["c2pa"]["failures"]]
    parts = []
    xmp = record.get("xmp")
    if xmp:
        kind = xmp.get("digital_source_type") or ("re-encoded by facegan, nothing generated; origin not recorded" if xmp.get("content") == "reencoded" else "no source type")
        details = ", ".join(f"{key} {xmp[key]}" for key in ("action", "model", "seed", "seeds", "fingerprint") if xmp.get(key))
        parts.append(f"xmp: {kind} ({xmp.get('tool', 'unknown tool')}{', ' + details if details else ''})")
    elif record.get("xmp_error"):
        parts.append(f"xmp: unreadable ({record['xmp_error']})")
    else:
        parts.append("xmp: none")
    c2pa = record.get("c2pa")
    if c2pa:
        failures = f", failures: {', '.join(c2pa['failures'])}" if c2pa.get("failures") else ""
        signer = f", signed by {c2pa['signer']}" if c2pa.get("signer") else ""
        parts.append(f"c2pa: {c2pa.get('state')} ({c2pa.get('digital_source_type', 'no source type')}{signer}{failures})")
    else:
        parts.append("c2pa: none")
    return "; ".join(parts)
