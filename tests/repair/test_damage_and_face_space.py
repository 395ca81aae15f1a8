"""Repair training's damage options (anchors, severity ranges) and its identity loss in a facegan recogniser's space."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facegan.config import from_dict
from facegan.errors import FaceganError
from facegan.repair import config as repair_config
from facegan.repair import degrade
from facegan.repair.config import RepairConfig
from facegan.repair.masks import ALIGNED_ANCHORS, RENDERED_ANCHORS
from facegan.repair.training import damage_batch, train_repair
from facegan.run import Run
from tests.recognition.helpers import save_identity_dataset
from tests.repair.test_training import tiny_config

TINY_RECOGNISER = {"backbone": {"width": 8, "embedding_size": 16, "blocks": [1, 1, 1, 1]}, "batch_size": 16,
                   "optimizer": {"warmup_steps": 2}, "runtime": {"tensorboard": False, "device": "cpu", "num_threads": 1},
                   "schedule": {"log_steps": 10}, "calibration_images": 4, "steps": 4}


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    """12 identities x 6 jittered 32 px grey faces, and a tiny recogniser trained 4 steps on them (seconds)."""
    from facegan.recognition.config import RecogConfig
    from facegan.recognition.training import train_recogniser

    folder = tmp_path_factory.mktemp("repair-face-space")
    data = save_identity_dataset(folder / "identities")
    config = from_dict(RecogConfig, {**TINY_RECOGNISER, "data": [str(data)], "out": str(folder / "recogniser")})
    return data, train_recogniser(config).run_dir


def test_config_severity_ranges_match_the_degradations():
    assert repair_config.TRAINING_NOISE_SIGMA == degrade.TRAINING_NOISE_SIGMA
    assert repair_config.TRAINING_BLUR_FACTOR == degrade.TRAINING_BLUR_FACTOR
    assert repair_config.TRAINING_JPEG_QUALITY == degrade.TRAINING_JPEG_QUALITY


@pytest.mark.parametrize("damage,message", [
    ({"noise_sigma": [60, 40]}, "damage.noise_sigma is \\[low, high\\] but 60 > 40; swap them"),
    ({"noise_sigma": [0, 40]}, "damage.noise_sigma must be positive"),
    ({"jpeg_quality": [3, 8.5]}, "damage.jpeg_quality': expected an integer"),
    ({"jpeg_quality": [3]}, "damage.jpeg_quality is a range"),
    ({"blur_factor": [1.0, 100.0]}, "damage.blur_factor must be at most 64"),
    ({"anchors": "tilted"}, "'tilted' is not one of 'aligned', 'rendered'"),
])
def test_damage_config_refuses_bad_ranges_and_anchors(tmp_path, damage, message):
    with pytest.raises(FaceganError, match=message):
        config = tiny_config(tmp_path / "d", tmp_path / "r", damage=damage)
        config.validate()


def test_damage_config_built_in_python_is_checked_too(tmp_path):
    config = tiny_config(tmp_path / "d", tmp_path / "r")
    config.damage.anchors = "tilted"  # from_dict checks the Literal; a dataclass changed in Python meets validate()
    with pytest.raises(FaceganError, match="damage.anchors: 'tilted' is not one of aligned, rendered"):
        config.validate()
    config.damage.anchors, config.damage.jpeg_quality = "rendered", [3, 8.5]
    with pytest.raises(FaceganError, match="damage.jpeg_quality takes whole numbers"):
        config.validate()


def test_default_damage_is_what_it_was():
    # The new options at their defaults draw exactly what damage_batch drew before they existed: masks at the
    # aligned anchors, severities from degrade's training ranges (the same RNG calls, in the same order).
    from facegan.repair.masks import training_masks

    config = from_dict(RepairConfig, {"damage": {"degradation_probability": 0.5}})
    clean = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    damaged, masks = damage_batch(clean, config, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    degraded = rng.random(24) < 0.5
    expected_masks = np.zeros_like(masks)
    expected_masks[~degraded] = training_masks(int((~degraded).sum()), 32, rng, config.damage.mask_kinds, (0.05, 0.6), ALIGNED_ANCHORS)
    expected = clean.copy()
    expected[degraded] = degrade.random_degradation(clean[degraded], rng, tuple(config.damage.degradations))
    expected[expected_masks] = 0
    assert np.array_equal(masks, expected_masks) and np.array_equal(damaged, expected)


def _band_centre_row(masks: np.ndarray) -> float:
    rows = np.flatnonzero(masks.any(axis=1))
    return (rows.min() + rows.max() + 1) / 2 / masks.shape[0]


def test_rendered_anchors_put_the_eye_band_on_rendered_eyes():
    clean = np.zeros((8, 64, 64, 3), np.uint8)
    centres = {}
    for anchors in ("aligned", "rendered"):
        config = from_dict(RepairConfig, {"damage": {"mask_kinds": ["eyes"], "degradation_probability": 0.0,
                                                     "min_hole_ratio": 0.1, "max_hole_ratio": 0.15, "anchors": anchors}})
        _, masks = damage_batch(clean, config, np.random.default_rng(0))
        centres[anchors] = np.mean([_band_centre_row(mask) for mask in masks])
    assert abs(centres["aligned"] - ALIGNED_ANCHORS.eye_y) < 0.03
    assert abs(centres["rendered"] - RENDERED_ANCHORS.eye_y) < 0.03


@pytest.mark.parametrize("kind,low,high", [("noise", 40.0, 60.0), ("blur", 2.0, 3.0), ("jpeg", 3, 6)])
def test_severity_ranges_bound_what_training_draws(kind, low, high):
    rng = np.random.default_rng(0)
    drawn = [degrade.random_severity(kind, 32, rng, {kind: (low, high)}) for _ in range(400)]
    scale = degrade.default_severity("blur", 32) if kind == "blur" else 1.0
    assert min(drawn) >= low * scale and max(drawn) <= high * scale
    # The draws fill the range (not stuck at one end): both outer tenths are reached.
    span = (high - low) * scale
    assert min(drawn) < low * scale + 0.1 * span + 1e-9 and max(drawn) > high * scale - 0.1 * span - 1e-9
    if kind == "jpeg":
        assert set(drawn) == {3.0, 4.0, 5.0, 6.0}  # whole qualities, both ends included


def test_recogniser_embed_tensor_matches_embed_and_has_gradients(identities):
    from facegan.data.dataset import FaceDataset
    from facegan.images import to_model
    from facegan.recognition.export import load_recogniser_export

    data, run = identities
    recogniser = load_recogniser_export(run)
    images = np.asarray(FaceDataset.load(data).images[:6])  # (6, 32, 32, 1)
    x = to_model(images, torch.device("cpu")).requires_grad_(True)  # (6, 1, 32, 32) in [-1, 1]
    embedded = recogniser.embed_tensor(x)
    assert embedded.shape == (6, 16)
    np.testing.assert_allclose(embedded.detach().numpy(), recogniser.embed(images), atol=1e-5)
    # RGB input is converted to the model's grey as `embed` converts it.
    rgb = np.repeat(images, 3, axis=-1)
    np.testing.assert_allclose(recogniser.embed_tensor(to_model(rgb, torch.device("cpu"))).detach().numpy(), recogniser.embed(rgb), atol=1e-5)
    embedded.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(FaceganError, match="square"):
        recogniser.embed_tensor(torch.zeros(1, 1, 32, 16))


def test_identity_loss_in_a_facegan_recognisers_space(identities, tmp_path):
    data, recogniser_run = identities
    config = tiny_config(data, tmp_path / "run", steps=2, loss={"identity": 1.0, "identity_every": 1, "identity_recogniser": str(recogniser_run)})
    result = train_repair(config)
    run = Run(result.run_dir)
    stats = run.read_stats()
    assert 0 < stats[-1]["identity_distance"] <= 2  # unit descriptors: distances lie in [0, 2]
    info = json.loads(run.path.joinpath("run.json").read_text())
    assert info["identity_recogniser"]["name"].startswith("facegan:")
    # Saved resolved, so a resume from elsewhere names the same recogniser; the resume replays exactly.
    saved = json.loads(run.config_path.read_text())["loss"]["identity_recogniser"]
    assert saved == str(recogniser_run.resolve())
    resumed = train_repair(tiny_config(data, tmp_path / "run", steps=4, loss=config.loss.__dict__), resume=True)
    assert resumed.num_steps == 4


def test_resume_refuses_an_identity_recogniser_replaced_since(identities, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    data, recogniser_run = identities
    copy = tmp_path / "recogniser"
    shutil.copytree(recogniser_run, copy)
    config = tiny_config(data, tmp_path / "run", steps=2, loss={"identity": 1.0, "identity_every": 1, "identity_recogniser": str(copy)})
    train_repair(config)
    weights = copy / "export" / "model.safetensors"
    tensors = load_file(weights)
    name = next(key for key, value in tensors.items() if value.is_floating_point())
    tensors[name] = tensors[name] + 0.01  # someone retrained or replaced it
    save_file(tensors, weights)
    before = json.loads((tmp_path / "run" / "run.json").read_text())["identity_recogniser"]["version"]
    with pytest.raises(FaceganError, match="not the one this run trained with"):
        train_repair(tiny_config(data, tmp_path / "run", steps=4, loss=config.loss.__dict__), resume=True)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["identity_recogniser"]["version"] == before


def test_identity_loss_without_the_recogniser_is_one_line(faces16, tmp_path):
    config = tiny_config(faces16, tmp_path / "run", steps=2, loss={"identity": 1.0, "identity_recogniser": str(tmp_path / "nothing")})
    with pytest.raises(FaceganError, match="neither dlib nor an existing `facegan recog train` run"):
        train_repair(config)
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_degradation_weights_set_how_often_each_kind_is_drawn():
    # On flat grey images blur changes nothing and noise changes every image: the share changed is noise's share.
    flat = np.full((400, 16, 16, 1), 128, np.uint8)
    damaged = degrade.random_degradation(flat, np.random.default_rng(0), ("noise", "blur"), weights=[3.0, 1.0])
    changed = (damaged != flat).reshape(400, -1).any(1).mean()
    assert abs(changed - 0.75) < 0.06
    only_blur = degrade.random_degradation(flat, np.random.default_rng(0), ("noise", "blur"), weights=[0.0, 1.0])
    assert np.array_equal(only_blur, flat)
    with pytest.raises(FaceganError, match="one non-negative number per kind"):
        degrade.random_degradation(flat[:2], np.random.default_rng(0), ("noise", "blur"), weights=[1.0])


@pytest.mark.parametrize("weights,message", [
    ([1.0, 2.0], "has 2 numbers for 3 damage.degradations"),
    ([0.0, 0.0, 0.0], "all 0"),
    ([1.0, -1.0, 1.0], "damage.degradation_weights must be at least 0"),
])
def test_degradation_weights_are_checked(tmp_path, weights, message):
    with pytest.raises(FaceganError, match=message):
        tiny_config(tmp_path / "d", tmp_path / "r", damage={"degradation_weights": weights}).validate()


def test_weighted_damage_batch_uses_the_weights():
    flat = np.full((200, 16, 16, 1), 128, np.uint8)
    config = from_dict(RepairConfig, {"damage": {"degradation_probability": 1.0, "degradation_weights": [0.0, 1.0, 0.0]}})
    damaged, masks = damage_batch(flat, config, np.random.default_rng(1))
    assert not masks.any() and np.array_equal(damaged, flat)  # blur only: flat images stay flat
