"""`--layout identity-folders`: SOURCE/<identity>/<image>, identity = first-level folder name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegan.data import prepare_dataset
from facegan.data.sources import list_source
from facegan.errors import FaceganError


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def people(tmp_path: Path) -> Path:
    root = tmp_path / "people"
    _image(root / "Ann Lee" / "a.png", 0)
    _image(root / "Ann Lee" / "b.jpg", 1)
    _image(root / "Ann Lee" / "holiday" / "c.png", 2)  # deeper still belongs to Ann Lee
    _image(root / "10" / "x.png", 3)
    _image(root / "9" / "x.png", 4)
    _image(root / ".git" / "z.png", 5)  # hidden folder: passed over
    _image(root / "9" / "._x.png", 6)  # macOS AppleDouble twin: passed over
    _image(root / "loose.png", 7)  # directly in SOURCE: no identity
    (root / "empty_person").mkdir()
    return root


def test_identity_is_the_first_level_folder(people: Path):
    listing = list_source(people, "identity-folders")
    assert listing.kind == "identity-folders"
    assert listing.relative_paths == ["10/x.png", "9/x.png", "Ann Lee/a.png", "Ann Lee/b.jpg", "Ann Lee/holiday/c.png"]
    assert listing.identity_names == ["10", "9", "Ann Lee", "Ann Lee", "Ann Lee"]
    assert listing.ignored_files == [("loose.png", "no_identity")]
    assert listing.extra_manifest["num_hidden_files_ignored"] == 2
    assert listing.extra_manifest["empty_identity_folders"] == ["empty_person"]


def test_auto_layout_is_unchanged(people: Path):
    assert list_source(people).kind == "folder" and list_source(people).identity_names is None


def test_prepare_keeps_identities_and_counts_loose_images(people: Path, tmp_path: Path):
    dataset = prepare_dataset(people, tmp_path / "out", size=8, layout="identity-folders", progress=False)
    assert len(dataset) == 5
    assert dataset.identity_names == ["9", "10", "Ann Lee"]  # numeric ids sort as numbers, as for CelebA
    assert dataset.identity.tolist() == [1, 0, 2, 2, 2]
    assert dataset.manifest["skipped"] == {"no_identity": 1}
    assert dataset.manifest["skipped_files"][0]["path"] == "loose.png"
    assert dataset.manifest["source_kind"] == "identity-folders"
    assert "skipped      1: no_identity 1" in dataset.describe()


def test_only_loose_images_is_one_error(tmp_path: Path):
    _image(tmp_path / "flat" / "a.png", 0)
    with pytest.raises(FaceganError, match="the 1 images directly in it belong to no identity"):
        list_source(tmp_path / "flat", "identity-folders")


def test_unknown_layout_is_refused(people: Path, tmp_path: Path):
    with pytest.raises(FaceganError, match="--layout must be one of auto, identity-folders"):
        prepare_dataset(people, tmp_path / "out", layout="celeb")
