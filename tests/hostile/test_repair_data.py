"""Hostile mask files and repair-data arguments: each is one clear FaceganError line, never a traceback or a hang."""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facegan.errors import FaceganError
from facegan.images import read_masks, write_masks


def _refused(path, count=4, size=16) -> str:
    with pytest.raises(FaceganError) as caught:
        read_masks(path, count, size)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _masks(count=4, size=16):
    masks = np.zeros((count, size, size), dtype=bool)
    masks[:, 4:8, 4:8] = True
    return masks


def test_mask_of_another_size_names_both_sizes(tmp_path):
    write_masks(tmp_path / "m", _masks(4, 64))
    assert _refused(tmp_path / "m") == "mask 0 (00000.png) is 64x64, the images are 16x16; give masks of the images' size"
    np.save(tmp_path / "m.npy", _masks(4, 32))
    assert "has shape (4, 32, 32), the images are 16x16" in _refused(tmp_path / "m.npy")


def test_mask_count_mismatch_is_refused(tmp_path):
    write_masks(tmp_path / "m", _masks(3))
    assert "holds 3 PNG masks for 4 images" in _refused(tmp_path / "m")
    np.save(tmp_path / "m.npy", _masks(3))
    assert "holds 3 masks for 4 images" in _refused(tmp_path / "m.npy")


def test_all_hole_mask_is_refused(tmp_path):
    masks = _masks()
    masks[2] = True
    write_masks(tmp_path / "m", masks)
    assert _refused(tmp_path / "m").startswith("mask 2 hides every pixel: nothing is left to repair from")


def test_unreadable_mask_files_are_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    assert "is not a readable PNG" in _refused(tmp_path / "bad.png")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    assert "is not a readable .npy" in _refused(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "not a readable .npy" in _refused(tmp_path / "obj.npy")
    np.save(tmp_path / "float.npy", np.zeros((4, 16, 16), np.float32))
    assert "holds float32; masks are bool or uint8" in _refused(tmp_path / "float.npy")
    assert "does not exist" in _refused(tmp_path / "missing.png")
    (tmp_path / "m.txt").write_text("x")
    assert "is not a folder, .png or .npy" in _refused(tmp_path / "m.txt")
    (tmp_path / "empty").mkdir()
    assert "holds no .png masks" in _refused(tmp_path / "empty")


def test_truncated_png_mask_is_one_line(tmp_path):
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    message = _refused(tmp_path / "cut.png")
    assert "cut.png" in message and ("damaged PNG" in message or "not a readable PNG" in message)


def test_fifo_and_folder_named_png_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    assert "FIFO" in _refused(tmp_path / "pipe.png")
    folder = tmp_path / "masks"
    write_masks(folder, _masks(1))
    (folder / "00001.png").mkdir()  # a folder where a mask should be
    assert "is a folder" in _refused(folder, count=2)


def test_huge_png_header_is_refused_before_decoding(tmp_path):
    # A 45-byte PNG whose header claims 30000x30000 grey pixels (900 M): refused from the header alone.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    message = _refused(tmp_path / "huge.png")
    assert "huge.png" in message and ("30000x30000" in message or "huge size" in message)


def test_band_no_mask_of_that_size_can_meet_is_one_line():
    from facegan.repair.masks import make_masks

    with pytest.raises(FaceganError) as caught:
        make_masks(2, 4, "box", (0.1, 0.11), seed=0)  # 16 pixels: no hole count gives 10-11 %
    assert str(caught.value) == "no hole of 4x4 pixels has a ratio in (0.1, 0.11); widen the band or use larger images"


def test_evaluation_refuses_a_method_named_like_the_reference_row_and_too_few_faces():
    from facegan.repair.baselines import INPAINTERS
    from facegan.repair.evaluate import evaluate_inpainting

    faces = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(FaceganError, match="'masked' names the no-repair reference row"):
        evaluate_inpainting({"masked": INPAINTERS["telea"]}, faces, recogniser=object())
    with pytest.raises(FaceganError, match="are 1 image"):
        evaluate_inpainting(INPAINTERS, faces[:1], recogniser=object())
    with pytest.raises(FaceganError, match="uint8 square images"):
        evaluate_inpainting(INPAINTERS, faces.astype(np.float32), recogniser=object())


def test_degrade_refuses_wrong_images_and_severity_in_one_line():
    from facegan.repair.degrade import degrade

    with pytest.raises(FaceganError, match=r"the JPEG quality is a whole number from 1 to 95 \(e.g. 10\); got 0"):
        degrade(np.zeros((1, 16, 16, 3), np.uint8), "jpeg", severity=0)
    with pytest.raises(FaceganError, match="uint8 images"):
        degrade(np.zeros((16, 16, 3), np.uint8), "noise")
