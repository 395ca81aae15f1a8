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


def test_truncation_moves_stable_faces_toward_the_mean_face_step_by_step(tmp_path):
    # The stable generator normalises z first, so scaling z did nothing: every psi in (0, 1] gave the
    # psi = 1 faces. Truncation now pulls its first activation toward its mean, the dense layer's bias
    # (zero at initialisation, so it is set here as training would).
    torch.manual_seed(0)
    config = ModelConfig(resolution=16, channels=3, g_channels=16, min_channels=8)
    module = build_generator(config)
    with torch.no_grad():
        module.dense.bias.normal_()
    generator = load_generator(save_export(tmp_path / "export", module, config, {}))
    mean_face = generator.sample([5], truncation=0.0).astype(np.float64)
    distances = [np.abs(generator.sample([5], truncation=psi).astype(np.float64) - mean_face).mean() for psi in (1.0, 0.7, 0.4, 0.1)]
    assert distances[0] > distances[1] > distances[2] > distances[3]
    assert not np.array_equal(generator.sample([5], truncation=0.7), generator.sample([5]))


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


# ---- hostile exports and API arguments (issue 7 §1, §4) -------------------------------------------

import os  # noqa: E402
import stat  # noqa: E402

from safetensors.torch import load_file, save_file  # noqa: E402


def _rewrite_config(export_dir, **changes):
    config = json.loads((export_dir / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (export_dir / "config.json").write_text(json.dumps(config))


def test_newer_format_version_refused_in_one_line(export_dir):
    _rewrite_config(export_dir, format_version=2)
    with pytest.raises(FaceganError, match=r"made by a newer facegan \(generator format 2.*\); upgrade facegan"):
        load_generator(export_dir)
    _rewrite_config(export_dir, format_version="one")
    with pytest.raises(FaceganError, match="no valid format_version"):
        load_generator(export_dir)


@pytest.mark.parametrize("key", ["format", "format_version", "facegan_version", "model"])
def test_metadata_cannot_overwrite_reserved_keys(tmp_path, key):
    config = ModelConfig(resolution=8, channels=1, g_channels=8, min_channels=8)
    with pytest.raises(FaceganError, match=f"reserved key '{key}'"):
        save_export(tmp_path / "e", build_generator(config), config, {key: "x"})


def test_dataset_recorded_by_hash_and_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = ModelConfig(resolution=8, channels=1, g_channels=8, min_channels=8)
    save_export(tmp_path / "e", build_generator(config), config, {"dataset_hash": "abc", "dataset": "data/faces"})
    saved = json.loads((tmp_path / "e" / "config.json").read_text())
    assert saved["dataset"] == str(tmp_path / "data" / "faces") and saved["dataset_hash"] == "abc"


def test_export_files_follow_the_umask(tmp_path):
    config = ModelConfig(resolution=8, channels=1, g_channels=8, min_channels=8)
    old = os.umask(0o022)
    try:
        save_export(tmp_path / "e", build_generator(config), config, {})
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json"):
        assert stat.S_IMODE((tmp_path / "e" / name).stat().st_mode) == 0o644, name
    assert not [p for p in (tmp_path / "e").iterdir() if p.name.startswith(".")]


def test_weights_bytes_unchanged_by_the_atomic_write(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(resolution=8, channels=1, g_channels=8, min_channels=8)
    generator = build_generator(config)
    save_export(tmp_path / "e", generator, config, {})
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(tmp_path / "ref.safetensors"), metadata={"format": "facegan-generator"})
    assert (tmp_path / "e" / "model.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_refused_on_load(export_dir, bad):
    state = load_file(str(export_dir / "model.safetensors"))
    name = next(key for key, value in state.items() if value.is_floating_point())
    state[name].view(-1)[0] = bad
    save_file(state, str(export_dir / "model.safetensors"))
    with pytest.raises(FaceganError, match=r"the export's weights contain (NaN|infinite values) .*the run diverged — retrain or use an earlier checkpoint"):
        load_generator(export_dir)


@pytest.mark.parametrize("model, message", [
    (None, "no model description"),
    ("dcgan", "no model description"),
    ({"resolution": 0, "channels": 3, "g_channels": 16, "min_channels": 8}, "leaves model.resolution or model.channels unset"),
    ({"resolution": 16, "channels": 5, "g_channels": 16, "min_channels": 8}, "model.channels must be 1 or 3"),
    ({"resolution": 16, "channels": 3, "g_channels": 1e6, "min_channels": 8}, r"model.g_channels=1000000 would need"),
    ({"resolution": 16, "channels": 3, "colour": 1}, "unknown config key 'model.colour'"),
])
def test_impossible_export_config_refused_in_one_line(export_dir, model, message):
    _rewrite_config(export_dir, model=model)
    with pytest.raises(FaceganError, match=message) as error:
        load_generator(export_dir)
    assert "\n" not in str(error.value)


def test_resolve_export_path_is_run_locate(tmp_path, export_dir):
    from facegan.models.export import resolve_export_path
    from facegan.run import Run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(FaceganError, match="holds a run but no generator export yet"):
        resolve_export_path(run)
    os.rename(export_dir, run / "export")
    assert resolve_export_path(run) == Run.locate(run).export_dir == run / "export"
    assert resolve_export_path(run / "export" / "model.safetensors") == run / "export"


@pytest.mark.parametrize("call, message", [
    (lambda g: load_generator(123), "expected a path"),
    (lambda g: g.sample(seeds="x"), "seeds must be integers"),
    (lambda g: g.sample([1.5]), "seeds must be integers"),
    (lambda g: g.sample([-1]), r"seeds must be in \[0, 2\*\*63\)"),
    (lambda g: g.sample([1], truncation=float("nan")), "--truncation must be between 0 and 1"),
    (lambda g: g.sample([1], truncation="0.5"), "--truncation must be between 0 and 1"),
    (lambda g: g.sample([1], batch_size=0), "batch_size must be an integer"),
    (lambda g: g.interpolate(1, 2, num_steps=1), "--steps must be an integer of at least 2"),
    (lambda g: g.interpolate(1, 2, num_steps=2.5), "--steps must be an integer of at least 2"),
    (lambda g: g.interpolate(1, 2, num_steps=10**8), r"100000000 steps would need ~[\d.,]+ GiB"),
    (lambda g: g.sample(range(10**8)), r"100000000 seeds would need ~[\d.,]+ GiB .*iter_samples"),
    (lambda g: g.synthesize(torch.zeros(2, 3)), r"z must be a tensor of shape \(N, 128\)"),
    (lambda g: load_generator(g.export_dir, device="tpu9"), "unknown device"),
])
def test_wrong_api_arguments_are_facegan_errors(export_dir, call, message):
    generator = load_generator(export_dir)
    generator.export_dir = export_dir
    with pytest.raises(FaceganError, match=message):
        call(generator)


def test_single_int_seed_and_streaming_match_sample(export_dir):
    generator = load_generator(export_dir)
    assert np.array_equal(generator.sample(7), generator.sample([7]))
    chunks = list(generator.iter_samples(range(10), batch_size=4))
    assert [seeds for seeds, _ in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert np.array_equal(np.concatenate([images for _, images in chunks]), generator.sample(range(10)))
