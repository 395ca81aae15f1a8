"""decode_image: every kind of bad file maps to one reason; every good one becomes RGB uint8."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facegan.data.decode import SKIP_REASONS, SkippedImage, decode_image, decode_image_bytes, decode_image_bytes_with_damage


def skip_reason(path, **options) -> str:
    with pytest.raises(SkippedImage) as caught:
        decode_image(path, **options)
    return caught.value.reason


def test_each_bad_file_maps_to_its_reason(messy_folder, messy_expectations):
    for name, expected in messy_expectations.items():
        if expected is not None:
            assert skip_reason(messy_folder / name) == expected, name
    assert skip_reason(messy_folder / "dangling.jpg") == "unreadable"
    assert skip_reason(messy_folder / "nested") == "not_a_regular_file"  # a folder is never opened as a file


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_is_unreadable(write_file, encode_image):
    path = write_file("locked.png", encode_image(Image.new("RGB", (8, 8)), "PNG"))
    path.chmod(0)
    try:
        assert skip_reason(path) == "unreadable"
    finally:
        path.chmod(0o644)


def test_modes_convert_to_rgb_with_the_right_values(messy_folder):
    sixteen_bit = decode_image(messy_folder / "sixteen_bit.png")
    assert sixteen_bit.dtype == np.uint8 and sixteen_bit.shape == (24, 24, 3)
    assert np.all(sixteen_bit == 100)  # 25700 / 257, not clipped to 255
    assert np.all(decode_image(messy_folder / "transparent.png") == 255)  # transparent red on white
    assert np.all(decode_image(messy_folder / "grey.png") == 77)
    assert np.all(decode_image(messy_folder / "palette.png") == (200, 30, 60))
    assert np.all(decode_image(messy_folder / "png_named_as.jpg") == (0, 128, 255))
    cmyk = decode_image(messy_folder / "cmyk.jpg").astype(int)
    assert np.abs(cmyk - (255, 0, 0)).max() <= 3  # CMYK red becomes RGB red (JPEG-lossy)


def test_full_16_bit_range_maps_to_full_8_bit_range(encode_image):
    ramp = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    decoded = decode_image_bytes(encode_image(Image.fromarray(ramp), "PNG"))
    assert decoded[0, :, 0].tolist() == [0, 1, 128, 255]


def test_pixel_limit_is_configurable(write_file, encode_image):
    path = write_file("forty.png", encode_image(Image.new("RGB", (40, 40)), "PNG"))
    assert decode_image(path, max_pixels=1600).shape == (40, 40, 3)
    assert skip_reason(path, max_pixels=1599) == "too_large"
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # our limit is set for one decode, then restored


def test_min_side_skips_small_images(write_file, encode_image):
    path = write_file("small.png", encode_image(Image.new("RGB", (30, 12)), "PNG"))
    assert skip_reason(path, min_side=13) == "too_small"
    assert decode_image(path, min_side=12).shape == (12, 30, 3)


def test_exif_orientation_is_applied(write_file, encode_image):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    path = write_file("rotated.jpg", encode_image(Image.fromarray(pixels), "JPEG", exif=exif, quality=100))
    upright = decode_image(path)
    assert upright.shape == (40, 20, 3)
    assert upright[:15].mean() > 200 and upright[25:].mean() < 50  # the white half is now on top


def test_signature_without_a_parsable_header_is_corrupt():
    assert _reason_of_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30) == "corrupt"
    assert _reason_of_bytes(b"GIF89a" + b"\x00") in ("corrupt", "truncated")
    assert _reason_of_bytes(b"%PDF-1.4 not a picture") == "not_an_image"


def test_truncated_webp_is_truncated(encode_image):
    data = encode_image(Image.fromarray(np.full((32, 32, 3), 90, np.uint8)), "WEBP")
    assert _reason_of_bytes(data[: len(data) // 2]) == "truncated"


def test_skip_reasons_are_documented():
    # Every reason decode/prepare can report, each explained by a phrase that names its cause.
    expected = {
        "unreadable": "permission denied",
        "zero_byte": "empty",
        "not_an_image": "not a JPEG, PNG, WebP, BMP or GIF",
        "truncated": "ends early",
        "corrupt": "damaged",
        "too_large": "more pixels than the limit",
        "not_a_regular_file": "FIFO, device, socket",
        "damaged": "corrupt data",
        "unsupported_mode": "colour mode",
        "too_small": "minimum side",
        "no_face": "no face",
    }
    assert set(SKIP_REASONS) == set(expected)
    for reason, phrase in expected.items():
        assert phrase in SKIP_REASONS[reason], reason
        assert "\n" not in SKIP_REASONS[reason] and SKIP_REASONS[reason][0].islower(), reason  # one line, reads after "reason: "
    skipped = SkippedImage("truncated", "photo.jpg")
    assert skipped.reason == "truncated" and str(skipped) == "truncated: photo.jpg" and str(SkippedImage("zero_byte")) == "zero_byte"
    with pytest.raises(ValueError, match="unknown skip reason 'made_up_reason'"):
        SkippedImage("made_up_reason")


def _reason_of_bytes(data: bytes) -> str:
    with pytest.raises(SkippedImage) as caught:
        decode_image_bytes(data)
    return caught.value.reason


# (mode, formats that can store it)
_MODES_AND_FORMATS = [
    ("1", ["PNG", "BMP"]),
    ("L", ["PNG", "JPEG", "BMP", "WEBP"]),
    ("P", ["PNG", "BMP", "GIF"]),
    ("RGB", ["PNG", "JPEG", "BMP", "WEBP"]),
    ("RGBA", ["PNG", "WEBP"]),
    ("LA", ["PNG"]),
    ("I;16", ["PNG"]),
    ("CMYK", ["JPEG"]),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode_and_formats=st.sampled_from(_MODES_AND_FORMATS),
    format_choice=st.integers(0, 3),
    width=st.integers(1, 70),
    height=st.integers(1, 70),
    seed=st.integers(0, 2**16),
)
def test_any_supported_mode_decodes_to_rgb_uint8_of_its_size(encode_image, mode_and_formats, format_choice, width, height, seed):
    mode, formats = mode_and_formats
    image_format = formats[format_choice % len(formats)]
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    image = Image.fromarray(noise, "RGBA").convert(mode if mode not in ("I;16", "1") else "L")
    if mode == "I;16":
        image = Image.fromarray(noise[:, :, 0].astype(np.uint16) * 257)
    elif mode == "1":
        image = image.convert("1")
    decoded = decode_image_bytes(encode_image(image, image_format))
    assert decoded.dtype == np.uint8
    assert decoded.shape == (height, width, 3)


_SEEDS_FOR_FUZZ = {
    image_format: Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 24, 3), dtype=np.uint8))
    for image_format in ("PNG", "JPEG", "BMP", "GIF", "WEBP")
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    image_format=st.sampled_from(sorted(_SEEDS_FOR_FUZZ)),
    cut_fraction=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6),
)
def test_damaged_files_never_raise_anything_but_a_skip(encode_image, image_format, cut_fraction, flips):
    data = bytearray(encode_image(_SEEDS_FOR_FUZZ[image_format], image_format))
    for position, value in flips:
        data[int(position * (len(data) - 1))] = value
    data = data[: max(1, int(cut_fraction * len(data)))] if cut_fraction < 0.95 else data
    try:
        decoded = decode_image_bytes(bytes(data), max_pixels=1_000_000)
    except SkippedImage as skipped:
        assert skipped.reason in SKIP_REASONS
    else:
        assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3


def _jpeg_with_extraneous_bytes(encode_image) -> bytes:
    """Garbage before the end marker: Pillow decodes it silently; libjpeg warns about extraneous bytes."""
    data = encode_image(Image.fromarray(np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)), "JPEG", quality=90)
    end = data.rfind(b"\xff\xd9")
    return data[:end] + b"\x00\x01\x02" + data[end:]


def test_jpeg_with_decoder_warnings_is_damaged_and_quiet(encode_image, capfd):
    damaged = _jpeg_with_extraneous_bytes(encode_image)
    with pytest.raises(SkippedImage) as skipped:
        decode_image_bytes(damaged)
    assert skipped.value.reason == "damaged" and "extraneous bytes" in skipped.value.detail
    assert capfd.readouterr().err == ""  # libjpeg's message is captured, not printed on the terminal
    kept = decode_image_bytes(damaged, keep_damaged=True)
    assert kept.shape == (32, 32, 3)
    good = encode_image(Image.fromarray(np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)), "JPEG", quality=90)
    assert decode_image_bytes_with_damage(good)[1] == ""


def test_damage_is_detected_with_stderr_closed(tmp_path, encode_image):
    import subprocess
    import sys

    import facegan

    (tmp_path / "d.jpg").write_bytes(_jpeg_with_extraneous_bytes(encode_image))
    script = (
        "import sys\nfrom facegan.data.decode import decode_image_with_damage\n"
        f"sys.stdout.write(decode_image_with_damage({str(tmp_path / 'd.jpg')!r})[1])\n"
    )
    src = str(Path(facegan.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60,
        env={**os.environ, "PYTHONPATH": src}, preexec_fn=lambda: os.close(2),
    )
    assert result.returncode == 0 and "extraneous bytes" in result.stdout.decode()
