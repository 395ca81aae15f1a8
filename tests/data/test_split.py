"""Train/holdout splits: disjoint, complete, by identity when asked, refused when impossible."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError


def _dataset(num_images=20, num_people=5):
    images = np.arange(num_images, dtype=np.uint8).reshape(num_images, 1, 1, 1).repeat(4, 1).repeat(4, 2)  # image i is all i
    identity = np.arange(num_images) % num_people
    return FaceDataset(images, {"paths": [f"f{i}.png" for i in range(num_images)], "identity_names": [f"p{i}" for i in range(num_people)]}, identity=identity)


@settings(max_examples=30, deadline=None)
@given(num_images=st.integers(2, 60), holdout=st.floats(0.05, 0.95), seed=st.integers(0, 100))
def test_split_is_disjoint_and_complete(num_images, holdout, seed):
    dataset = _dataset(num_images, num_people=1)
    train, held = dataset.split(holdout, seed=seed)
    train_ids, held_ids = set(train.images[:, 0, 0, 0]), set(held.images[:, 0, 0, 0])
    assert not train_ids & held_ids and train_ids | held_ids == set(range(num_images))
    assert len(held) >= 1 and len(train) >= 1
    assert set(train.source_paths) | set(held.source_paths) == {f"f{i}.png" for i in range(num_images)}


def test_split_by_identity_keeps_people_apart():
    train, held = _dataset(40, num_people=8).split(0.25, by_identity=True, seed=3)
    assert not set(train.identity) & set(held.identity)
    assert len(set(held.identity)) == 2 and len(train) + len(held) == 40
    assert train.manifest["split"]["part"] == "train" and held.manifest["split"]["by_identity"]


def test_impossible_splits_are_refused():
    with pytest.raises(FaceganError, match="between 0 and 1"):
        _dataset().split(1.5)
    unlabelled = FaceDataset(np.zeros((4, 2, 2, 1), np.uint8))
    with pytest.raises(FaceganError, match="needs identity labels"):
        unlabelled.split(0.5, by_identity=True)


def test_cli_split_writes_two_datasets(tmp_path, capsys):
    _dataset().save(tmp_path / "faces")
    assert main(["data", "split", str(tmp_path / "faces"), "--holdout", "0.2", "--by", "identity"]) == 0
    train, held = FaceDataset.load(tmp_path / "faces-train"), FaceDataset.load(tmp_path / "faces-holdout")
    assert len(train) + len(held) == 20 and not set(train.identity) & set(held.identity)
    assert train.manifest["parent_hash"] == FaceDataset.load(tmp_path / "faces").content_hash
    assert "holdout" in capsys.readouterr().out
