"""Repair training: the run contract (files, export, resume = uninterrupted), damage batches, config checks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from facegan.config import from_dict, to_dict
from facegan.errors import FaceganError
from facegan.repair.config import DEGRADATIONS, MASK_KINDS, RepairConfig
from facegan.repair.export import load_repairer
from facegan.repair.training import damage_batch, train_repair
from facegan.run import Run

TINY = {"batch_size": 4, "model": {"width": 4, "discriminator_width": 4}, "loss": {"identity": 0.0},
        "schedule": {"log_steps": 2, "checkpoint_steps": 2}, "runtime": {"tensorboard": False, "num_threads": 1, "device": "cpu"}}


def tiny_config(data, out, steps=4, **updates) -> RepairConfig:
    values = {**TINY, "data": str(data), "out": str(out), "steps": steps}
    for key, value in updates.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(RepairConfig, values)


def test_config_names_match_the_masks_and_degradations():
    from facegan.repair import degrade, masks

    assert MASK_KINDS == masks.MASK_KINDS and DEGRADATIONS == degrade.DEGRADATIONS


@pytest.mark.parametrize("updates,message", [
    ({"steps": 0}, "no training length"),
    ({"damage": {"mask_kinds": ["hat"]}}, "'hat' is not one of box"),
    ({"damage": {"min_hole_ratio": 0.5, "max_hole_ratio": 0.2}}, "swap them"),
    ({"damage": {"degradation_probability": 1.5}}, "damage.degradation_probability must be at most 1"),
    ({"loss": {"l1": 0.0, "damaged_l1": 0.0}}, "no reconstruction signal"),
    ({"optimizer": {"lr": 0.0}}, "optimizer.lr must be positive"),
    ({"model": {"width": 2}}, "model.width must be at least 4"),
])
def test_config_validation_names_the_field(tmp_path, updates, message):
    with pytest.raises(FaceganError, match=message):
        tiny_config(tmp_path / "d", tmp_path / "r", **updates).validate()


def test_damage_batch_holes_or_degradations_deterministic():
    config = from_dict(RepairConfig, {"damage": {"degradation_probability": 0.5}})
    clean = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 1), dtype=np.uint8)
    damaged, masks = damage_batch(clean, config, np.random.default_rng(7))
    again, masks_again = damage_batch(clean, config, np.random.default_rng(7))
    assert np.array_equal(damaged, again) and np.array_equal(masks, masks_again)
    holed = masks.reshape(32, -1).any(1)
    assert 0 < holed.sum() < 32  # both kinds of damage in one batch
    ratios = masks[holed].reshape(holed.sum(), -1).mean(1)
    assert (ratios >= 0.05 - 0.02).all() and (ratios <= 0.6 + 0.02).all()
    # A holed image is untouched outside its hole; a degraded one (no hole) differs from the clean image.
    assert np.array_equal(damaged[holed][~masks[holed]], clean[holed][~masks[holed]])
    assert all(not np.array_equal(damaged[row], clean[row]) for row in np.flatnonzero(~holed))


def test_train_writes_run_and_export_and_repairs(faces16, tmp_path):
    result = train_repair(tiny_config(faces16, tmp_path / "run"))
    run = Run(result.run_dir)
    assert result.num_steps == 4 and not result.interrupted
    assert run.has_config() and run.has_checkpoint() and run.has_export() and run.loss_curves_path.is_file()
    assert json.loads(run.config_path.read_text())["kind"] == "repair"
    stats = run.read_stats()
    assert [line["step"] for line in stats] == [2, 4]
    assert {"loss_d", "l1", "damaged_l1", "adversarial_g", "loss_g"} <= set(stats[-1])
    repairer = load_repairer(run.path)
    assert (repairer.resolution, repairer.channels) == (16, 1)
    from facegan.data.dataset import FaceDataset

    images = np.asarray(FaceDataset.load(faces16).images[:6])
    masks = np.zeros((6, 16, 16), bool)
    masks[:, 4:12, 3:9] = True
    out = repairer.repair(images, masks)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(out[~masks], images[~masks])
    assert not np.array_equal(out[masks], images[masks])
    restored = repairer.repair(images)  # no masks: every pixel is the network's
    assert restored.shape == images.shape and not np.array_equal(restored, images)


def test_resume_replays_the_uninterrupted_run(faces16, tmp_path):
    straight = train_repair(tiny_config(faces16, tmp_path / "straight", steps=4))
    train_repair(tiny_config(faces16, tmp_path / "resumed", steps=2))
    resumed = train_repair(tiny_config(faces16, tmp_path / "resumed", steps=4), resume=True)
    assert resumed.num_steps == 4
    first = load_file(str(Run(straight.run_dir).export_dir / "model.safetensors"))
    second = load_file(str(Run(resumed.run_dir).export_dir / "model.safetensors"))
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert [line["step"] for line in Run(resumed.run_dir).read_stats()] == [2, 4]


def test_identity_loss_runs_and_is_logged(faces16, tmp_path):
    result = train_repair(tiny_config(faces16, tmp_path / "run", steps=2, loss={"identity": 0.1, "identity_every": 2}))
    stats = Run(result.run_dir).read_stats()
    assert 0 < stats[-1]["identity_distance"] < 2  # dlib distances between faces lie well below 2


def test_resume_with_another_locked_field_is_refused(faces16, tmp_path):
    train_repair(tiny_config(faces16, tmp_path / "run", steps=2))
    with pytest.raises(FaceganError, match="'model.width' differs"):
        train_repair(tiny_config(faces16, tmp_path / "run", steps=4, model={"width": 8}), resume=True)


def test_second_start_into_a_run_is_refused(faces16, tmp_path):
    train_repair(tiny_config(faces16, tmp_path / "run", steps=2))
    with pytest.raises(FaceganError, match="already holds a run; pass --resume"):
        train_repair(tiny_config(faces16, tmp_path / "run", steps=2))


def test_should_stop_checkpoints_and_returns_interrupted(faces16, tmp_path):
    calls = []
    result = train_repair(tiny_config(faces16, tmp_path / "run", steps=50), should_stop=lambda: calls.append(1) or len(calls) >= 3)
    assert result.interrupted and result.num_steps == 3
    assert Run(result.run_dir).has_checkpoint()
    assert to_dict(tiny_config(faces16, tmp_path / "run"))["kind"] == "repair"


def test_repairer_refuses_bad_masks_and_images_in_one_line(faces16, tmp_path):
    repairer = load_repairer(train_repair(tiny_config(faces16, tmp_path / "run", steps=1)).run_dir)
    images = np.zeros((3, 16, 16, 1), np.uint8)
    full = np.zeros((3, 16, 16), bool)
    full[1] = True
    with pytest.raises(FaceganError, match="mask 1 hides every pixel"):
        repairer.repair(images, full)
    with pytest.raises(FaceganError, match="2 masks for 3 images"):
        repairer.repair(images, np.zeros((2, 16, 16), bool))
    with pytest.raises(FaceganError, match="give one 16x16 mask per image"):
        repairer.repair(images, np.zeros((3, 8, 8), bool))
    with pytest.raises(FaceganError, match="are 32x32 but the repair model works on 16x16"):
        repairer.repair(np.zeros((1, 32, 32, 1), np.uint8))
    with pytest.raises(FaceganError, match="have 3 channel"):
        repairer.repair(np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(FaceganError, match="must be uint8"):
        repairer.repair(images.astype(np.float32))
    # One (H, W) mask serves every image; a mask without holes returns the image as it is.
    one = np.zeros((16, 16), bool)
    one[4:8, 4:8] = True
    out = repairer.repair(images + 7, one)
    assert np.array_equal(out[:, ~one], (images + 7)[:, ~one])
    assert np.array_equal(repairer.repair(images + 7, np.zeros((3, 16, 16), bool)), images + 7)


def test_repair_does_not_depend_on_batch_size(faces16, tmp_path):
    from facegan.data.dataset import FaceDataset

    repairer = load_repairer(train_repair(tiny_config(faces16, tmp_path / "run", steps=1)).run_dir)
    images = np.asarray(FaceDataset.load(faces16).images[:7])
    masks = np.zeros((7, 16, 16), bool)
    masks[:, 2:9, 3:12] = True
    assert np.array_equal(repairer.repair(images, masks, batch_size=2), repairer.repair(images, masks, batch_size=64))
    assert np.array_equal(repairer.repair(images, batch_size=3), repairer.repair(images, batch_size=64))


@pytest.mark.parametrize("method", ["net", "telea", "ns"])
def test_repair_images_hides_holes_and_keeps_known_pixels(faces16, tmp_path, method):
    from facegan.data.dataset import FaceDataset
    from facegan.repair import repair_images

    run = train_repair(tiny_config(faces16, tmp_path / "run", steps=1)).run_dir if method == "net" else None
    images = np.asarray(FaceDataset.load(faces16).images[:4])
    masks = np.zeros((4, 16, 16), bool)
    masks[:, 3:10, 2:12] = True
    out = repair_images(method, images, masks, model=run)
    assert np.array_equal(out[~masks], images[~masks])
    # What lay under the holes cannot matter: the method never sees it.
    scrambled = np.where(masks[..., None], np.uint8(200), images)
    assert np.array_equal(repair_images(method, scrambled, masks, model=run), out)


def test_repair_images_refuses_a_method_that_does_not_fit():
    from facegan.repair import repair_images

    images = np.zeros((1, 16, 16, 1), np.uint8)
    with pytest.raises(FaceganError, match="telea fills holes"):
        repair_images("telea", images)
    with pytest.raises(FaceganError, match="unknown repair method 'magic'"):
        repair_images("magic", images)
