"""The one converter each way between uint8 NHWC and float NCHW in [-1, 1]."""
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from facegan.images import make_grid, to_model, to_uint8


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3]))))
def test_uint8_round_trip_is_exact(images):
    model = to_model(images)
    assert model.shape == (images.shape[0], images.shape[3], images.shape[1], images.shape[2])
    assert model.dtype == torch.float32 and model.min() >= -1 and model.max() <= 1
    assert np.array_equal(to_uint8(model).numpy(), images)


def test_to_uint8_clips():
    out = to_uint8(torch.tensor([[[[-3.0, 3.0]]]]))
    assert out.flatten().tolist() == [0, 255]


def test_grid_layout():
    images = np.arange(4 * 2 * 2 * 1, dtype=np.uint8).reshape(4, 2, 2, 1)
    grid = make_grid(images, num_columns=2, padding=1, pad_value=255)
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 1)
    assert np.array_equal(grid[4:6, 4:6], images[3])


# ---- writing by suffix (issue 7 §4) ---------------------------------------------------------------

import io  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from facegan.errors import FaceganError  # noqa: E402
from facegan.images import check_image_path, save_image  # noqa: E402
from facegan.provenance.record import Provenance  # noqa: E402

OFF = Provenance.off("test")


@pytest.mark.parametrize("suffix, pil_format", [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"), (".webp", "WEBP"), (".bmp", "BMP")])
@pytest.mark.parametrize("channels", [1, 3])
def test_save_image_writes_the_format_its_suffix_names(tmp_path, suffix, pil_format, channels):
    ramp = np.add.outer(np.arange(16), np.arange(16)) * 8  # smooth, as faces are, so JPEG stays close
    image = np.stack([ramp, 255 - ramp, ramp // 2][:channels], axis=2).astype(np.uint8)
    path = save_image(image, tmp_path / "sub" / f"grid{suffix}", OFF)
    with Image.open(io.BytesIO(path.read_bytes())) as written:
        assert written.format == pil_format and written.size == (16, 16)
        pixels = np.asarray(written).reshape(16, 16, -1)[:, :, :channels]  # WebP stores gray as RGB
    if pil_format != "JPEG":  # the lossless ones keep every pixel
        assert np.array_equal(pixels, image)
    else:
        assert np.abs(pixels.astype(int) - image).max() <= 8


def test_save_image_refuses_unknown_suffix_and_folders(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("grid.gif", "grid", "grid.png.txt"):
        with pytest.raises(FaceganError, match="no image suffix facegan writes"):
            save_image(image, tmp_path / name, OFF)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(FaceganError, match="is a folder"):
        check_image_path(tmp_path / "dir.png", "--grid")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png"]
