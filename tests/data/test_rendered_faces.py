"""builtin:rendered-faces: determinism by seed, labels, and the hardness property (raw pixels do not
identify people, while identity stays learnable)."""
from __future__ import annotations

import numpy as np
import pytest

import facegan.data.rendered as rendered
from facegan.data import prepare_dataset
from facegan.data.pairs import make_pairs, resolve_pairs
from facegan.data.rendered import ATTRIBUTE_NAMES, render_faces
from facegan.errors import FaceganError


def test_same_seed_same_bytes_different_seed_different_faces():
    first = render_faces(3, 4, 32, seed=5)
    again = render_faces(3, 4, 32, seed=5)
    other = render_faces(3, 4, 32, seed=6)
    assert first[0].tobytes() == again[0].tobytes()
    assert np.array_equal(first[2], again[2])
    assert first[0].tobytes() != other[0].tobytes()
    assert np.abs(first[0].astype(int) - other[0].astype(int)).mean() > 20


def test_shapes_labels_and_grouping():
    images, identity, attributes, names = render_faces(4, 5, 40, seed=0)
    assert images.shape == (20, 40, 40, 3) and images.dtype == np.uint8
    assert identity.dtype == np.int64 and identity.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    assert attributes.shape == (20, len(ATTRIBUTE_NAMES)) and attributes.dtype == np.int8
    assert set(np.unique(attributes).tolist()) <= {-1, 1}
    assert names == ATTRIBUTE_NAMES and "Eyeglasses" in names and "Smiling" in names
    assert images.std() > 30  # colour images with content, not a flat fill


def test_identity_attributes_are_constant_and_image_attributes_vary():
    _, identity, attributes, names = render_faces(30, 8, 16, seed=1)
    per_identity = attributes.reshape(30, 8, -1)
    constant = (per_identity == per_identity[:, :1]).all(axis=1)  # (identities, attributes)
    for name in ("Male", "Black_Hair", "Blond_Hair", "Bald", "Mustache", "Pale_Skin"):
        assert constant[:, names.index(name)].all(), name
    for name in ("Eyeglasses", "Smiling", "Mouth_Slightly_Open"):
        column = names.index(name)
        assert not constant[:, column].all(), name
        assert 0.1 < (attributes[:, column] == 1).mean() < 0.6, name


def test_identity_k_does_not_depend_on_how_many_are_drawn():
    few = render_faces(2, 3, 16, seed=4)[0]
    many = render_faces(5, 3, 16, seed=4)[0]
    assert np.array_equal(few, many[:6])


def test_workers_do_not_change_the_bytes(monkeypatch):
    monkeypatch.setattr(rendered, "PARALLEL_MIN_IMAGES", 1)
    assert np.array_equal(render_faces(4, 2, 16, seed=2, workers=2)[0], render_faces(4, 2, 16, seed=2, workers=1)[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"identities": 0, "per_identity": 2}, "at least 1"),
    ({"identities": 2, "per_identity": 2, "size": 8}, "16-256 px"),
    ({"identities": 2, "per_identity": 2, "seed": -1}, "0 or more"),
    ({"identities": 2.5, "per_identity": 2}, "whole number"),
])
def test_bad_arguments_are_one_line(kwargs, message):
    with pytest.raises(FaceganError, match=message):
        render_faces(**kwargs)


def _verification_accuracy(features: np.ndarray, left: np.ndarray, right: np.ndarray, same: np.ndarray) -> float:
    scores = (features[left] * features[right]).sum(axis=1)
    return max(float(((scores >= threshold) == same).mean()) for threshold in np.unique(scores))


def test_raw_pixels_identify_poorly_but_identity_is_learnable(tmp_path):
    """Pixel cosine NN on held-out identities is near chance, while a linear model (PCA + LDA) fitted on
    other identities does clearly better: identity is there, hidden under nuisance."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    dataset = prepare_dataset("builtin:rendered-faces", tmp_path / "faces", size=16, identities=100, per_identity=8,
                              seed=3, progress=False)
    images = np.asarray(dataset.images, dtype=np.float32)
    held_out = dataset.identity >= 50
    test_set = dataset.subset(np.flatnonzero(held_out))
    left, right, same, _ = resolve_pairs(test_set, make_pairs(test_set, folds=10, pairs_per_fold=20, seed=0))
    held = images[held_out]

    grey = (held @ np.array([0.299, 0.587, 0.114], np.float32)).reshape(len(held), -1)
    grey -= grey.mean(axis=1, keepdims=True)
    grey /= np.linalg.norm(grey, axis=1, keepdims=True)
    pixel = _verification_accuracy(grey, left, right, same)

    flat = images.reshape(len(images), -1) / 255.0
    pca = PCA(60, random_state=0).fit(flat[~held_out])
    lda = LinearDiscriminantAnalysis().fit(pca.transform(flat[~held_out]), dataset.identity[~held_out])
    embedded = lda.transform(pca.transform(flat[held_out]))
    embedded /= np.linalg.norm(embedded, axis=1, keepdims=True)
    learned = _verification_accuracy(embedded, left, right, same)
    assert 0.5 <= pixel <= 0.72, pixel
    assert learned >= pixel + 0.06, (learned, pixel)


def test_prepare_writes_identity_names_attributes_and_limit(tmp_path):
    dataset = prepare_dataset("builtin:rendered-faces", tmp_path / "r", size=16, identities=3, per_identity=4, seed=0,
                              limit=10, progress=False)
    assert len(dataset) == 10 and dataset.identity.tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert dataset.identity_names == ["r00000", "r00001", "r00002"]
    assert dataset.attribute_names == ATTRIBUTE_NAMES and dataset.attributes.shape == (10, len(ATTRIBUTE_NAMES))
    assert dataset.manifest["seed"] == 0 and dataset.manifest["renderer_version"] == 1
    assert "not photographs" in dataset.manifest["description"]
    assert dataset.source_paths[5] == "builtin:rendered-faces/r00001/0002"
    grey = prepare_dataset("builtin:rendered-faces", tmp_path / "g", size=16, identities=1, per_identity=2, channels=1, progress=False)
    assert grey.channels == 1


def test_default_workers_stay_in_process_where_fork_is_unsafe(monkeypatch):
    # A pool started by forkserver/spawn would re-run an unguarded script: by default, draw here instead.
    monkeypatch.setattr(rendered, "PARALLEL_MIN_IMAGES", 1)
    monkeypatch.setattr(rendered, "_fork_is_safe", lambda: False)

    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(rendered, "ProcessPoolExecutor", no_pool)
    assert render_faces(3, 2, 16, seed=0)[0].shape == (6, 16, 16, 3)
