"""Hostile inputs to config loading, exports and sampling (issue 7): each refused in one line, exit 2, before any work."""
import json
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from facegan.cli.main import main
from tests.hostile.helpers import refused as _refused


@pytest.fixture
def export(tmp_path):
    from facegan.models import ModelConfig, build_generator, save_export

    torch.manual_seed(0)
    config = ModelConfig(resolution=16, channels=3, g_channels=16, min_channels=8)
    return save_export(tmp_path / "export", build_generator(config), config, {"dataset_hash": "abc"})


def _train(capsys, tmp_path, *argv):
    return _refused(["train", "--data", "d", "--out", str(tmp_path / "run"), "--dry-run", *argv], capsys)


def test_train_refuses_nan_half_life(capsys, tmp_path):
    assert "ema.half_life_kimg" in _train(capsys, tmp_path, "--set", "ema.half_life_kimg=NaN")


def test_train_refuses_infinite_float_given_as_text(capsys, tmp_path):
    assert "loss.r1_gamma" in _train(capsys, tmp_path, "--set", "loss.r1_gamma=inf")


def test_train_refuses_nan_kimg_flag(capsys, tmp_path):
    assert "kimg" in _train(capsys, tmp_path, "--kimg", "nan")


def test_train_refuses_zero_generator_width_instead_of_widening_it(capsys, tmp_path):
    assert "model.g_channels must be at least 1, got 0" in _train(capsys, tmp_path, "--set", "model.g_channels=0")


@pytest.mark.parametrize("override", ["optimizer.lr_g=NaN", "model.d_dropout=1.5", "optimizer.beta1=5", "augment.translation_ratio=5"])
def test_train_refuses_values_torch_would_reject_or_misuse(capsys, tmp_path, override):
    assert override.split("=")[0] in _train(capsys, tmp_path, "--set", override)


@pytest.mark.parametrize("override, estimate", [("batch_size=1e8", "GiB"), ("model.z_dim=1e8", "GiB of weights"), ("model.g_channels=1e6", "GiB of weights")])
def test_train_refuses_sizes_that_cannot_fit_with_an_estimate(capsys, tmp_path, override, estimate):
    assert estimate in _train(capsys, tmp_path, "--set", override)


def test_sample_refuses_export_whose_weights_are_nan(capsys, tmp_path, export):
    state = load_file(str(export / "model.safetensors"))
    for tensor in state.values():
        tensor.fill_(float("nan"))
    save_file(state, str(export / "model.safetensors"))
    line = _refused(["sample", str(export), "--seeds", "0-3", "--grid", str(tmp_path / "g.png")], capsys)
    assert "weights contain NaN" in line and "the run diverged" in line
    assert not (tmp_path / "g.png").exists()


def test_sample_refuses_export_from_a_newer_format(capsys, tmp_path, export):
    config = json.loads((export / "config.json").read_text())
    (export / "config.json").write_text(json.dumps({**config, "format_version": 2}))
    assert "made by a newer facegan (generator format 2" in _refused(["sample", str(export), "--grid", str(tmp_path / "g.png")], capsys)


@pytest.mark.parametrize("model", [None, {"resolution": 0, "channels": 3}, {"resolution": 16, "channels": 5}, {"resolution": 16, "channels": 3, "g_channels": 1e6}])
def test_sample_refuses_impossible_export_model(capsys, tmp_path, export, model):
    config = json.loads((export / "config.json").read_text())
    config["model"] = model
    (export / "config.json").write_text(json.dumps(config))
    assert "export the model again" in _refused(["sample", str(export), "--grid", str(tmp_path / "g.png")], capsys)


def test_sample_refuses_a_hundred_million_seed_grid_at_once(capsys, tmp_path, export):
    started = time.perf_counter()
    line = _refused(["sample", str(export), "--seeds", "0-100000000", "--grid", str(tmp_path / "g.png")], capsys)
    assert "100000001 images (~" in line and "GiB as a grid" in line and "at most 4096 for --grid" in line
    assert time.perf_counter() - started < 5  # counted from the range, no 100M-element list


def test_sample_refuses_a_hundred_million_seeds_to_out_dir_at_once(capsys, tmp_path, export):
    started = time.perf_counter()
    assert "100000001 seeds; at most 10000000" in _refused(["sample", str(export), "--seeds", "0-100000000", "--out-dir", str(tmp_path / "d")], capsys)
    assert time.perf_counter() - started < 5 and not (tmp_path / "d").exists()


def test_interpolate_refuses_two_million_steps(capsys, tmp_path, export):
    line = _refused(["interpolate", str(export), "--seeds", "3,7", "--steps", "2000000", "--out", str(tmp_path / "s.png")], capsys)
    assert "2000000 images (~" in line and "at most 4096" in line


@pytest.mark.parametrize("argv, message", [
    (["--truncation", "nan"], "--truncation must be between 0 and 1"),
    (["--columns", "0"], "--columns must be at least 1"),
    (["--columns", "-1"], "--columns must be at least 1"),
])
def test_sample_refuses_bad_grid_options(capsys, tmp_path, export, argv, message):
    assert message in _refused(["sample", str(export), "--seeds", "0-3", "--grid", str(tmp_path / "g.png"), *argv], capsys)


@pytest.mark.parametrize("steps", ["1", "-5"])
def test_interpolate_refuses_fewer_than_two_steps(capsys, tmp_path, export, steps):
    assert "--steps must be at least 2" in _refused(["interpolate", str(export), "--seeds", "3,7", "--steps", steps, "--out", str(tmp_path / "s.png")], capsys)


def test_grid_named_jpg_is_written_as_jpeg(capsys, tmp_path, export):
    assert main(["sample", str(export), "--seeds", "0-3", "--grid", str(tmp_path / "g.jpg")]) == 0
    with Image.open(tmp_path / "g.jpg") as grid:
        assert grid.format == "JPEG"


def test_grid_with_unknown_suffix_refused_before_work(capsys, tmp_path, export):
    assert "end it in .png" in _refused(["sample", str(export), "--seeds", "0-3", "--grid", str(tmp_path / "g.gif")], capsys)


def test_sample_refuses_out_dir_that_is_a_file(capsys, tmp_path, export):
    (tmp_path / "taken").write_text("mine")
    assert "is a file, not a folder" in _refused(["sample", str(export), "--seeds", "0-3", "--out-dir", str(tmp_path / "taken")], capsys)
    assert (tmp_path / "taken").read_text() == "mine"


def test_sample_refuses_grid_that_is_a_folder(capsys, tmp_path, export):
    (tmp_path / "grid.png").mkdir()
    assert "is a folder" in _refused(["sample", str(export), "--seeds", "0-3", "--grid", str(tmp_path / "grid.png")], capsys)


def test_sample_streams_many_seeds_to_out_dir_in_batches(capsys, tmp_path, export, monkeypatch):
    from facegan.models.export import Generator

    batches = []
    original = Generator.sample
    monkeypatch.setattr(Generator, "sample", lambda self, seeds, *a, **k: batches.append(len(list(seeds))) or original(self, seeds, *a, **k))
    assert main(["sample", str(export), "--seeds", "0-149", "--out-dir", str(tmp_path / "d"), "--no-progress"]) == 0
    assert batches == [64, 64, 22] and len(list((tmp_path / "d").glob("seed*.png"))) == 150


def test_python_api_wrong_argument_types_are_facegan_errors(export):
    from facegan import FaceganError, load_generator

    with pytest.raises(FaceganError):
        load_generator(123)
    generator = load_generator(export)
    for call in (lambda: generator.sample(seeds="x"), lambda: generator.sample([0], truncation=float("nan"))):
        with pytest.raises(FaceganError):
            call()
