"""Extractor registry and the content-keyed real-feature cache."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.metrics import available_extractors, get_extractor
from facegan.metrics.cache import compute_real_features, feature_cache_key, select_real_indices
from facegan.metrics.features import FeatureExtractor
from tests.metrics.helpers import PROJECTION_NAME, ProjectionExtractor


def test_registry_has_builtins_and_takes_test_extractors(projection):
    assert {"face", "inception", PROJECTION_NAME} <= set(available_extractors())
    extractor = get_extractor(PROJECTION_NAME, inception_weights=None)  # options every factory must tolerate
    assert isinstance(extractor, FeatureExtractor) and projection == [extractor]
    with pytest.raises(FaceganError, match="unknown features 'nope'.*face"):
        get_extractor("nope")


def test_inception_without_weights_is_one_clear_line(monkeypatch):
    monkeypatch.delenv("FACEGAN_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(FaceganError, match="--inception-weights") as error:
        get_extractor("inception")
    assert "\n" not in str(error.value)


def test_real_subset_selection():
    assert np.array_equal(select_real_indices(10, 20, seed=3), np.arange(10))
    chosen = select_real_indices(100, 30, seed=3)
    assert len(chosen) == 30 == len(set(chosen)) and np.all(np.diff(chosen) > 0)
    assert np.array_equal(chosen, select_real_indices(100, 30, seed=3))
    assert not np.array_equal(chosen, select_real_indices(100, 30, seed=4))


def test_cache_is_written_once_and_reused(faces16, cache_dir):
    dataset = FaceDataset.load(faces16)
    extractor = ProjectionExtractor()
    first = compute_real_features(dataset, extractor, num=2000, batch_size=32)
    assert not first.from_cache and first.cache_path.parent == cache_dir / "features" and first.cache_path.is_file()
    assert first.features.shape == (100, 8) and first.features.dtype == np.float32
    assert extractor.num_images == 100
    second = compute_real_features(dataset, extractor, num=5000)  # any num >= the dataset size shares the file
    assert second.from_cache and second.cache_path == first.cache_path
    assert extractor.num_images == 100  # not recomputed
    np.testing.assert_array_equal(first.features, second.features)
    assert [path.name for path in (cache_dir / "features").iterdir()] == [first.cache_path.name]  # no temp files left


def test_cache_file_is_keyed_by_content_not_path(faces16, tmp_path, cache_dir):
    copy = tmp_path / "copy"
    shutil.copytree(faces16, copy)
    extractor = ProjectionExtractor()
    original = compute_real_features(FaceDataset.load(faces16), extractor, num=100)
    copied = compute_real_features(FaceDataset.load(copy), extractor, num=100)
    assert copied.from_cache and copied.cache_path == original.cache_path

    images = np.array(FaceDataset.load(faces16).images)
    images[0, 0, 0, 0] ^= 1  # one pixel, one bit
    changed_folder = FaceDataset(images, {"source": "changed"}).save(tmp_path / "changed")
    changed = compute_real_features(FaceDataset.load(changed_folder), extractor, num=100)
    assert not changed.from_cache and changed.cache_path != original.cache_path


def test_cache_key_covers_extractor_identity_resolution_and_selection():
    extractor = ProjectionExtractor()
    base = feature_cache_key("abc", extractor, 16, 100, None)
    assert base == feature_cache_key("abc", ProjectionExtractor(), 16, 100, None)
    newer = ProjectionExtractor()
    newer.version = "2"
    weighted = ProjectionExtractor()
    weighted.weights_sha256 = "f" * 64
    variants = [
        feature_cache_key("abd", extractor, 16, 100, None),
        feature_cache_key("abc", newer, 16, 100, None),
        feature_cache_key("abc", weighted, 16, 100, None),
        feature_cache_key("abc", extractor, 32, 100, None),
        feature_cache_key("abc", extractor, 16, 50, 0),
        feature_cache_key("abc", extractor, 16, 50, 1),
    ]
    assert len({base, *variants}) == 1 + len(variants)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-shape"])
def test_corrupt_cache_file_is_recomputed(faces16, cache_dir, damage):
    dataset = FaceDataset.load(faces16)
    extractor = ProjectionExtractor()
    path = compute_real_features(dataset, extractor, num=100).cache_path
    good = np.array(compute_real_features(dataset, extractor, num=100).features)
    if damage == "garbage":
        path.write_bytes(b"not an npz")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        with np.load(path) as archive:
            contents = dict(archive)
        contents["features"] = contents["features"][:10]
        with open(path, "wb") as handle:
            np.savez(handle, **contents)
    calls = extractor.num_calls
    again = compute_real_features(dataset, extractor, num=100)
    assert not again.from_cache and extractor.num_calls > calls
    np.testing.assert_array_equal(again.features, good)
    assert compute_real_features(dataset, extractor, num=100).from_cache  # repaired on disk


def test_unwritable_cache_only_warns(faces16, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FACEGAN_CACHE_DIR", str(blocker))
    with pytest.warns(UserWarning, match="could not write the feature cache"):
        result = compute_real_features(FaceDataset.load(faces16), ProjectionExtractor(), num=100)
    assert result.features.shape == (100, 8)
    assert not os.path.exists(blocker / "features")


def test_changed_pixels_behind_an_unchanged_manifest_change_the_cache_key(faces16, tmp_path):
    folder = tmp_path / "faces"
    shutil.copytree(faces16, folder)
    extractor = ProjectionExtractor()
    before = FaceDataset.load(folder)
    key_before = feature_cache_key(before.content_hash, extractor, before.resolution, len(before), None)
    manifest_before = (folder / "manifest.json").read_bytes()
    pixels = np.load(folder / "images.npy", mmap_mode="r+")
    pixels[0, 0, 0, 0] ^= 0xFF  # in place: same size, same inode, manifest untouched
    pixels.flush()
    del pixels
    after = FaceDataset.load(folder)
    assert (folder / "manifest.json").read_bytes() == manifest_before
    assert after.content_hash != before.content_hash
    assert feature_cache_key(after.content_hash, extractor, after.resolution, len(after), None) != key_before


def test_an_unchanged_dataset_keeps_its_recorded_hash(faces16, monkeypatch):
    import facegan.data.dataset as dataset_module

    recorded = FaceDataset.load(faces16).content_hash
    monkeypatch.setattr(dataset_module, "compute_content_hash", lambda images: pytest.fail("re-hashed an unchanged dataset"))
    assert FaceDataset.load(faces16).content_hash == recorded


def test_cache_never_writes_through_a_planted_link(faces16, tmp_path):
    dataset, extractor = FaceDataset.load(faces16), ProjectionExtractor()
    first = compute_real_features(dataset, extractor, num=100, cache_dir=tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    first.cache_path.unlink()
    first.cache_path.symlink_to(victim)
    with pytest.warns(UserWarning, match="symbolic link"):
        compute_real_features(dataset, extractor, num=100, cache_dir=tmp_path)
    assert victim.read_text() == "keep me" and first.cache_path.is_symlink()
