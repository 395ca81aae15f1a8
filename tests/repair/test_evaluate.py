"""Repair evaluation: every method gets the very same masks and inputs, known pixels are enforced, numbers are the metrics'."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.faces.match import MatchRule
from facegan.metrics.quality import psnr
from facegan.repair.baselines import INPAINTERS, RESTORERS
from facegan.repair.evaluate import (
    MASKED,
    band_masks,
    distance_ratio,
    evaluate_inpainting,
    evaluate_restoration,
    format_inpainting_table,
    format_restoration_table,
    hide,
    inpainting_rows,
    restoration_rows,
    repair_strip,
)
from facegan.repair.masks import hole_ratio


class MeanColourRecogniser:
    """A fast stand-in: the descriptor is a 4x4 grid of mean grey levels (identity = coarse layout)."""

    name, version, dim = "dlib-resnet", "test", 16
    match = MatchRule("euclidean", 0.6)
    threshold = 0.6

    def embed(self, images, batch_size=64):
        grey = np.asarray(images, dtype=np.float32).mean(axis=3)
        count, size = grey.shape[:2]
        return grey.reshape(count, 4, size // 4, 4, size // 4).mean(axis=(2, 4)).reshape(count, 16) / 64.0

    def distance(self, first, second):
        return self.match.distance(first, second)


def _faces(count=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.zeros((count, size, size, 3), np.uint8)
    for index in range(count):
        a, b = rng.uniform(1, 4, 2)
        images[index] = np.clip(128 + 90 * np.sin(a * xx + index) * np.cos(b * yy), 0, 255).astype(np.uint8)[:, :, None]
    return images


def test_every_method_sees_the_same_masks_and_hidden_holes():
    faces = _faces()
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def spy(name):
        def method(damaged, masks):
            seen.setdefault(name, []).append((damaged.copy(), masks.copy()))
            return INPAINTERS["telea"](damaged, masks)
        return method

    result = evaluate_inpainting({"a": spy("a"), "b": spy("b")}, faces, bands=[(0.1, 0.2), (0.3, 0.4)], recogniser=MeanColourRecogniser(), fd=True)
    assert len(seen["a"]) == len(seen["b"]) == 2
    for (damaged_a, masks_a), (damaged_b, masks_b), band in zip(seen["a"], seen["b"], result["bands"]):
        assert np.array_equal(masks_a, masks_b) and np.array_equal(damaged_a, damaged_b)
        assert np.all(damaged_a[masks_a] == 0)  # the hole's content is hidden from every method
        ratios = hole_ratio(masks_a)
        assert np.all((ratios >= band["band"][0]) & (ratios <= band["band"][1]))
        assert {entry["masks_sha256"] for entry in band["methods"].values()} == {band["masks_sha256"]}
    # Identical methods, identical numbers; the masked reference is far worse than repair.
    for band in result["bands"]:
        assert band["methods"]["a"] == band["methods"]["b"]
        assert band["methods"]["a"]["psnr"] > band["methods"][MASKED]["psnr"] + 5
        assert band["methods"]["a"]["face_distance"] < band["methods"][MASKED]["face_distance"]
        assert band["methods"]["a"]["fd"] < band["methods"][MASKED]["fd"]
    assert result["methods"] == [MASKED, "a", "b"]


def test_reported_numbers_are_the_metrics_of_the_repaired_faces():
    faces = _faces()
    recogniser = MeanColourRecogniser()
    result = evaluate_inpainting({"telea": INPAINTERS["telea"]}, faces, bands=[(0.2, 0.3)], recogniser=recogniser, fd=False, seed=3)
    masks = band_masks(len(faces), 16, (0.2, 0.3), 0, seed=3)
    repaired = INPAINTERS["telea"](hide(faces, masks), masks)
    entry = result["bands"][0]["methods"]["telea"]
    assert entry["psnr"] == pytest.approx(psnr(faces, repaired).mean())
    expected = recogniser.distance(recogniser.embed(faces), recogniser.embed(repaired)).mean()
    assert entry["face_distance"] == pytest.approx(expected)
    assert "fd" not in entry
    assert "telea" in format_inpainting_table(result)
    rows = inpainting_rows(result)
    assert [(row["band"], row["method"]) for row in rows] == [("20-30%", MASKED), ("20-30%", "telea")]
    assert rows[1]["psnr"] == entry["psnr"]


def test_a_method_that_changes_known_pixels_or_masks_is_refused():
    faces = _faces()

    def brighten(damaged, masks):
        return np.clip(damaged.astype(int) + 1, 0, 255).astype(np.uint8)

    with pytest.raises(FaceganError, match="changed .* known pixels; composite"):
        evaluate_inpainting({"bad": brighten}, faces, bands=[(0.1, 0.2)], recogniser=MeanColourRecogniser(), fd=False)

    def wrong_size(damaged, masks):
        return damaged[:, :8]

    with pytest.raises(FaceganError, match="must return uint8"):
        evaluate_inpainting({"bad": wrong_size}, faces, bands=[(0.1, 0.2)], recogniser=MeanColourRecogniser(), fd=False)

    def write_masks(damaged, masks):
        masks[:] = False  # read-only: numpy refuses
        return damaged

    with pytest.raises(ValueError, match="read-only"):
        evaluate_inpainting({"bad": write_masks}, faces, bands=[(0.1, 0.2)], recogniser=MeanColourRecogniser(), fd=False)


def test_distance_ratio_is_method_over_best_baseline():
    result = {"bands": [{"methods": {"net": {"face_distance": 0.2}, "telea": {"face_distance": 0.4}, "ns": {"face_distance": 0.5}}}]}
    assert distance_ratio(result, "net") == [0.5]


def test_restoration_accuracy_on_the_same_pairs_and_recovered_share():
    # 6 identities x 4 images: each identity a distinct smooth pattern plus per-image noise.
    rng = np.random.default_rng(0)
    base = _faces(6, 16, seed=1)
    images = np.clip(np.repeat(base, 4, axis=0).astype(int) + rng.integers(-6, 7, (24, 16, 16, 3)), 0, 255).astype(np.uint8)
    identity = np.repeat(np.arange(6), 4)
    left, right, same, fold = [], [], [], []
    for a in range(24):
        for b in range(a + 1, 24):
            left.append(a); right.append(b); same.append(identity[a] == identity[b]); fold.append((a + b) % 4)
    pairs = tuple(np.array(part) for part in (left, right, same, fold))
    calls = []

    def identity_restorer(damaged):
        calls.append(damaged.shape)
        return np.array(damaged)

    result = evaluate_restoration({"none": identity_restorer, "nlm": RESTORERS["opencv-nlm"]}, images, pairs, degradations=("noise",),
                                  recogniser=MeanColourRecogniser(), severities={"noise": 60.0},
                                  inpainters={"telea": INPAINTERS["telea"]}, occlusions=("eyes",))
    assert calls == [(24, 16, 16, 3)]  # every image of the pairs once
    noise, eyes = result["conditions"]
    assert noise["severity"] == 60.0 and noise["methods"]["none"] == noise["degraded"]
    assert eyes["damage"] == "eyes occlusion" and "telea" in eyes["methods"]
    if noise["recovered"]["none"] is not None:
        assert noise["recovered"]["none"] == 0.0
    assert "noise" in format_restoration_table(result)
    rows = restoration_rows(result)
    assert rows[0]["method"] == "clean" and rows[0]["accuracy"] == result["clean"]["accuracy_mean"]
    assert [row["method"] for row in rows if row["degradation"] == "noise"] == ["degraded", "none", "nlm"]


def test_repair_strip_is_a_png_with_a_row_per_method():
    from io import BytesIO

    from PIL import Image

    faces = _faces(3)
    png = repair_strip({"original": faces, "masked": faces, "telea": faces}, cell=32)
    image = Image.open(BytesIO(png))
    assert image.format == "PNG" and image.size[1] == 3 * 34 + 2
    with pytest.raises(FaceganError, match="same number"):
        repair_strip({"a": faces, "b": faces[:2]})
