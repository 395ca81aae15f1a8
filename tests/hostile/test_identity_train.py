"""Hostile `facegan train --condition identity` inputs and identity exports: one `error:` line, exit 2."""
import json

import numpy as np
import pytest

from tests.hostile.helpers import refused
from tests.models.test_conditional import shapes_dataset

TINY = ["--batch-size", "8", "--kimg", "0.016", "--no-progress", "--set", "model.g_channels=16", "--set", "model.d_channels=16",
        "--set", "model.min_channels=8", "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return shapes_dataset(tmp_path_factory.mktemp("data") / "shapes16", per_identity=6)


def test_condition_identity_with_labels_refuses_dp(shapes, tmp_path, capsys):
    line = refused(["train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--condition", "identity", "--dp-epsilon", "10", *TINY], capsys)
    assert "--dp-*" in line and "split-latent" in line
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_condition_identity_embedding_refuses_dp_at_dry_run(shapes, tmp_path, capsys):
    line = refused(["train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--condition", "identity", "--set", "identity.mode=embedding",
                    "--dp-epsilon", "10", "--dry-run", *TINY], capsys)
    assert "cannot be trained with --dp-*" in line


def test_embedding_mode_refuses_unlabelled_data(faces16, tmp_path, capsys):
    line = refused(["train", "--data", str(faces16), "--out", str(tmp_path / "run"), "--condition", "identity",
                    "--set", "identity.mode=embedding", *TINY], capsys)
    assert "needs identity labels" in line and "split-latent" in line


def test_embedding_mode_refuses_partly_unlabelled_data(tmp_path, capsys):
    from facegan.data.dataset import FaceDataset

    labels = np.array([0, 1, -1, 1, 0, 0], dtype=np.int64)
    FaceDataset(np.zeros((6, 16, 16, 3), np.uint8), {"source": "test", "source_kind": "builtin", "identity_names": ["a", "b"]},
                identity=labels).save(tmp_path / "data")
    line = refused(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--condition", "identity", *TINY], capsys)
    assert "1 of 6 images" in line and "no identity label" in line


def test_identity_dim_must_leave_a_nuisance_part(faces16, tmp_path, capsys):
    line = refused(["train", "--data", str(faces16), "--out", str(tmp_path / "run"), "--condition", "identity",
                    "--set", "identity.identity_dim=128", "--dry-run", *TINY], capsys)
    assert "identity.identity_dim=128 must be below model.z_dim=128" in line


def test_identity_loss_needs_two_images_per_identity(faces16, tmp_path, capsys):
    line = refused(["train", "--data", str(faces16), "--out", str(tmp_path / "run"), "--condition", "identity",
                    "--set", "identity.per_identity=1", "--dry-run", *TINY], capsys)
    assert "identity.per_identity" in line


def test_identity_update_size_is_bounded(faces16, tmp_path, capsys):
    line = refused(["train", "--data", str(faces16), "--out", str(tmp_path / "run"), "--condition", "identity",
                    "--set", "identity.identities=4096", "--set", "identity.per_identity=4096", "--dry-run", *TINY], capsys)
    assert "16777216 images per identity update, at most 1024" in line


def test_unknown_condition_is_refused(faces16, tmp_path, capsys):
    line = refused(["train", "--data", str(faces16), "--out", str(tmp_path / "run"), "--condition", "person", "--dry-run"], capsys)
    assert "invalid choice: 'person'" in line


def test_export_with_a_broken_identity_section_is_refused(shapes, tmp_path, capsys):
    import facegan
    from facegan.errors import FaceganError
    from facegan.training.config import resolve_config

    run = tmp_path / "run"
    facegan.train(resolve_config("default", {"data": str(shapes), "out": str(run), "kimg": 0.016, "batch_size": 8,
                                             "model": {"g_channels": 16, "d_channels": 16, "min_channels": 8},
                                             "runtime": {"tensorboard": False, "num_threads": 1}, "identity": {"condition": "identity"}}))
    config_path = run / "export" / "config.json"
    config = json.loads(config_path.read_text())
    for broken in ({"mode": "embedding", "num_identities": "4", "identity_dim": 32}, {"mode": "embedding", "num_identities": 10**9, "identity_dim": 32}):
        config_path.write_text(json.dumps({**config, "identity": broken}))
        with pytest.raises(FaceganError) as error:
            facegan.load_generator(run)
        assert "export the model again" in str(error.value) and "\n" not in str(error.value)
    config_path.write_text(json.dumps({**config, "identity": {"mode": "embedding", "num_identities": 5, "identity_dim": 32}}))
    with pytest.raises(FaceganError, match="does not match the architecture"):
        facegan.load_generator(run)


def test_sample_identity_refuses_bad_seeds(faces16, tmp_path):
    import facegan
    from facegan.errors import FaceganError
    from facegan.training.config import resolve_config

    run = tmp_path / "run"
    facegan.train(resolve_config("default", {"data": str(faces16), "out": str(run), "kimg": 0.008, "batch_size": 8,
                                             "model": {"g_channels": 16, "d_channels": 16, "min_channels": 8},
                                             "runtime": {"tensorboard": False, "num_threads": 1},
                                             "identity": {"condition": "identity", "identities": 2, "per_identity": 2}}))
    generator = facegan.load_generator(run)
    for identity_seed, nuisance in ((-1, [1]), ("3", [1]), (1.5, [1]), (1, []), (1, ["a"]), (1, [2**63])):
        with pytest.raises(FaceganError):
            generator.sample_identity(identity_seed, nuisance)
