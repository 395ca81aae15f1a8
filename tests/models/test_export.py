"""Export format: safetensors + JSON, seed-determinism, clear errors for wrong files."""
import json

import numpy as np
import pytest
import torch

from facegan.errors import FaceganError
from facegan.models import ModelConfig, build_generator
from facegan.models.export import load_generator, save_export, slerp


@pytest.fixture
def export_dir(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(resolution=16, channels=3, g_channels=16, min_channels=8)
    save_export(tmp_path / "export", build_generator(config), config, {"dataset_hash": "abc"})
    return tmp_path / "export"


def test_round_trip_and_metadata(export_dir):
    generator = load_generator(export_dir)
    assert generator.resolution == 16 and generator.channels == 3
    config = json.loads((export_dir / "config.json").read_text())
    assert config["format"] == "facegan-generator" and config["dataset_hash"] == "abc"
    assert config["model"]["resolution"] == 16
    assert "facegan_version" in config


def test_same_seed_same_image_any_batch(export_dir):
    generator = load_generator(export_dir)
    alone = generator.sample([7])
    in_batch = generator.sample(range(20))
    again = load_generator(export_dir / "model.safetensors").sample([7])
    assert alone.dtype == np.uint8 and alone.shape == (1, 16, 16, 3)
    assert np.array_equal(alone[0], in_batch[7]) and np.array_equal(alone, again)
    assert not np.array_equal(in_batch[0], in_batch[1])


def test_truncation_zero_gives_the_mean_face(export_dir):
    generator = load_generator(export_dir)
    images = generator.sample([1, 2, 3], truncation=0.0)
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[1], images[2])
    with pytest.raises(FaceganError, match="truncation"):
        generator.sample([1], truncation=1.5)


def test_interpolation_ends_at_its_seeds(export_dir):
    generator = load_generator(export_dir)
    strip = generator.interpolate(3, 7, num_steps=5)
    assert strip.shape == (5, 16, 16, 3)
    assert np.array_equal(strip[0], generator.sample([3])[0])
    assert np.abs(strip[-1].astype(int) - generator.sample([7])[0]).max() <= 1


def test_slerp_keeps_norm_between_equal_norm_vectors():
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([0.0, 1.0])
    path = slerp(a, b, torch.linspace(0, 1, 9))
    assert torch.allclose(path.norm(dim=1), torch.ones(9), atol=1e-6)


def test_clear_errors_for_wrong_inputs(tmp_path, export_dir):
    with pytest.raises(FaceganError, match="no such run"):
        load_generator(tmp_path / "missing")
    (tmp_path / "state.pt").write_bytes(b"x")
    with pytest.raises(FaceganError, match="training checkpoint"):
        load_generator(tmp_path / "state.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceganError, match="holds no generator export"):
        load_generator(tmp_path / "empty")
    (export_dir / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(FaceganError, match="corrupt"):
        load_generator(export_dir)
    (export_dir / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(FaceganError, match="not a facegan generator"):
        load_generator(export_dir)
