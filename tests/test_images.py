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
