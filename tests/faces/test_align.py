"""Alignment: centre crop and resize invariants, and dlib 5-point alignment on a real photo."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage.data import astronaut

from facegan.data.align import align_image
from facegan.faces.align import align_face, dlib_model_path, find_largest_face
from facegan.images import center_crop, convert_channels, resize_whole
from facegan.errors import FaceganError

# Where dlib's HOG detector finds Eileen Collins' face in skimage's astronaut (512 x 512) photo.
ASTRONAUT_FACE_CENTER = (222, 126)  # (x, y)


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 160),
    width=st.integers(1, 160),
    channels=st.sampled_from([1, 3]),
    size=st.integers(4, 48),
    value=st.integers(0, 255),
    mode=st.sampled_from(["center", "none"]),
)
def test_crop_and_resize_give_size_square_and_keep_flat_colours(height, width, channels, size, value, mode):
    image = np.full((height, width, channels), value, dtype=np.uint8)
    result = align_image(image, size, mode)
    assert result.dtype == np.uint8
    assert result.shape == (size, size, channels)
    assert np.all(result == value)  # resampling a flat image must not shift its colour


def test_center_crop_takes_the_middle_square():
    wide = np.zeros((30, 90, 3), dtype=np.uint8)
    wide[:, 30:60] = 200  # only the middle third is bright
    assert np.all(center_crop(wide, 30) == 200)
    tall = np.zeros((90, 30, 1), dtype=np.uint8)
    tall[30:60] = 9
    assert np.all(center_crop(tall, 30) == 9)


def test_resize_whole_keeps_everything():
    wide = np.zeros((30, 90, 3), dtype=np.uint8)
    wide[:, :45] = 255  # left half white
    squeezed = resize_whole(wide, 30)
    assert squeezed[:, :12].min() == 255 and squeezed[:, 18:].max() == 0


def test_convert_channels_round_trip():
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    rgb = convert_channels(grey, 3)
    assert rgb.shape == (16, 16, 3) and np.array_equal(rgb[:, :, 1:2], grey)
    assert np.array_equal(convert_channels(rgb, 1), grey)  # equal R, G, B give back the same grey


def test_dlib_model_path_finds_the_5_point_predictor():
    path = dlib_model_path("shape_predictor_5_face_landmarks.dat")
    assert path.is_file() and path.stat().st_size > 1_000_000
    with pytest.raises(FaceganError, match="missing"):
        dlib_model_path("no_such_model.dat")


def test_dlib_finds_the_astronaut_face_and_not_noise():
    photo = astronaut()
    face = find_largest_face(photo)
    assert face is not None
    center = face.center()
    assert abs(center.x - ASTRONAUT_FACE_CENTER[0]) < 15 and abs(center.y - ASTRONAUT_FACE_CENTER[1]) < 15
    chip = align_face(photo, 48)
    assert chip.shape == (48, 48, 3) and chip.dtype == np.uint8
    assert chip.std() > 20  # a face, not a flat patch
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert align_face(noise, 48) is None


def test_dlib_detects_on_a_shrunk_copy_of_large_photos():
    # 1536 px > DETECT_MAX_SIDE: detection runs on a 1024 px copy; the box must map back to full size.
    large = np.asarray(Image.fromarray(astronaut()).resize((1536, 1536), Image.Resampling.BILINEAR))
    face = find_largest_face(large)
    assert face is not None
    assert abs(face.center().x - 3 * ASTRONAUT_FACE_CENTER[0]) < 40
    assert abs(face.center().y - 3 * ASTRONAUT_FACE_CENTER[1]) < 40
    assert align_face(large, 32).shape == (32, 32, 3)
