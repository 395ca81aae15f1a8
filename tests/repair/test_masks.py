"""Hole masks: ratio met (to one pixel, or inside the band), deterministic by seed, occluders where faces have eyes/mouths; mask files."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.errors import FaceganError
from facegan.images import read_masks, write_masks
from facegan.repair.masks import (
    ALIGNED_ANCHORS,
    BANDS,
    MASK_KINDS,
    RENDERED_ANCHORS,
    hole_ratio,
    make_masks,
    training_masks,
)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(MASK_KINDS), band=st.sampled_from(BANDS), size=st.sampled_from([8, 16, 32, 64]), seed=st.integers(0, 2**31))
def test_band_ratio_is_inside_the_band(kind, band, size, seed):
    masks = make_masks(3, size, kind, band, seed)
    ratios = hole_ratio(masks)
    assert masks.dtype == np.bool_ and masks.shape == (3, size, size)
    assert np.all(ratios >= band[0] - 1e-12) and np.all(ratios <= band[1] + 1e-12), ratios


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(MASK_KINDS), ratio=st.floats(0.02, 0.95), size=st.sampled_from([16, 32, 48]), seed=st.integers(0, 1000))
def test_float_ratio_is_met_to_one_pixel(kind, ratio, size, seed):
    ratios = hole_ratio(make_masks(2, size, kind, ratio, seed))
    assert np.all(np.abs(ratios - ratio) <= 0.5 / size**2 + 1e-12)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_are_deterministic_by_seed_and_batch_independent(kind):
    first = make_masks(6, 32, kind, (0.2, 0.4), seed=7)
    assert np.array_equal(first, make_masks(6, 32, kind, (0.2, 0.4), seed=7))
    assert np.array_equal(first[:3], make_masks(3, 32, kind, (0.2, 0.4), seed=7))
    assert not np.array_equal(first, make_masks(6, 32, kind, (0.2, 0.4), seed=8))
    assert len({mask.tobytes() for mask in first}) == 6  # images get different masks


def _row_centre(masks):
    rows = masks.mean(axis=(0, 2))
    return float((rows * (np.arange(masks.shape[1]) + 0.5)).sum() / rows.sum() / masks.shape[1])


def test_eyes_band_covers_the_eye_line_and_mouth_mask_the_lower_face():
    eyes = make_masks(20, 32, "eyes", 0.1, seed=0)
    mouth = make_masks(20, 32, "mouth", 0.1, seed=0)
    # lfw-subset / dlib-aligned chips: eyes at 0.34-0.40 of the height, nose tip 0.61, mouth ~0.78.
    assert 0.33 <= _row_centre(eyes) <= 0.41
    assert 0.66 <= _row_centre(mouth) <= 0.78
    # The band is wide (both eyes: x 0.2-0.7 of the width) and short; the lower-face mask is below the eyes.
    columns = eyes.any(axis=1).mean(axis=0)
    assert columns[int(0.25 * 32)] == 1.0 and columns[int(0.7 * 32)] == 1.0
    assert eyes.any(axis=2).sum(axis=1).max() <= 8
    assert not mouth[:, : int(0.45 * 32)].any()
    rendered = make_masks(20, 32, "eyes", 0.1, seed=0, anchors=RENDERED_ANCHORS)
    assert 0.45 <= _row_centre(rendered) <= 0.53
    assert ALIGNED_ANCHORS.eye_y < RENDERED_ANCHORS.eye_y


def test_training_masks_mix_kinds_and_ratios():
    masks = training_masks(200, 32, np.random.default_rng(0))
    ratios = hole_ratio(masks)
    assert ratios.min() >= 0.05 - 1e-12 and ratios.max() <= 0.6 + 1e-12
    assert ratios.std() > 0.1  # spread over the range, not one ratio
    eye_rows = masks[:, int(0.37 * 32)].mean(axis=1) > 0.5  # eye bands cover most of the eye line
    assert 20 < eye_rows.sum() < 150
    assert np.array_equal(masks, training_masks(200, 32, np.random.default_rng(0)))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), (0.3, 0.2), (0.1,), "0.3", True])
def test_bad_ratios_are_one_line(bad):
    with pytest.raises(FaceganError, match="ratio"):
        make_masks(2, 16, "box", bad, seed=0)


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(FaceganError, match="box, strokes, eyes, mouth"):
        make_masks(2, 16, "circle", 0.3, seed=0)


def test_mask_files_round_trip(tmp_path):
    masks = make_masks(4, 16, "strokes", 0.3, seed=1)
    paths = write_masks(tmp_path / "masks", masks)
    assert [path.name for path in paths] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    assert np.array_equal(read_masks(tmp_path / "masks", 4, 16), masks)
    np.save(tmp_path / "masks.npy", masks)
    assert np.array_equal(read_masks(tmp_path / "masks.npy", 4, 16), masks)
    np.save(tmp_path / "masks01.npy", masks.astype(np.uint8))
    assert np.array_equal(read_masks(tmp_path / "masks01.npy", 4, 16), masks)
    # One mask (a PNG, a folder of one, an (H, W) .npy) applies to every image.
    one = read_masks(paths[2], 4, 16)
    assert one.shape == (4, 16, 16) and all(np.array_equal(mask, masks[2]) for mask in one)
    np.save(tmp_path / "one.npy", masks[1])
    assert np.array_equal(read_masks(tmp_path / "one.npy", 3, 16), np.repeat(masks[1:2], 3, axis=0))


@pytest.mark.slow
def test_anchors_measured_on_real_faces_match_the_aligned_preset(faces32):
    from facegan.data.dataset import FaceDataset
    from facegan.repair.masks import estimate_anchors

    faces = np.asarray(FaceDataset.load(faces32).images[:24])
    measured = estimate_anchors(faces, max_images=24)
    assert measured != ALIGNED_ANCHORS  # it was measured, not the fallback
    assert abs(measured.eye_y - ALIGNED_ANCHORS.eye_y) < 0.04
    assert abs(measured.lower_face_y - ALIGNED_ANCHORS.lower_face_y) < 0.05
    # The eye band drawn at the measured line covers the landmarks' eye line on these faces.
    band = make_masks(24, 32, "eyes", 0.1, seed=0, anchors=measured)
    assert band[:, int(measured.eye_y * 32)].mean() > 0.5
