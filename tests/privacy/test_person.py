"""One person against a training set (`facegan serve`'s membership tab): planted members are found, others are not copies."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.errors import FaceganError


def test_a_training_face_is_found_as_itself_in_both_spaces(faces16):
    from facegan.data.dataset import FaceDataset
    from facegan.privacy.person import check_person

    train = FaceDataset.load(faces16)
    check = check_person(np.asarray(train.images[7]), train)
    assert check.pixel[0] == (7, 0.0)
    assert check.face_space[0][0] == 7 and check.face_space[0][1] < 1e-4
    assert check.in_training_set and check.reading.startswith("Training face #7 is within dlib's match threshold")
    assert [distance for _, distance in check.pixel] == sorted(distance for _, distance in check.pixel)
    assert check.threshold == pytest.approx(0.6) and check.num_samples == 0 and check.generated == []


def test_a_face_left_out_of_the_set_is_no_pixel_copy_and_generated_faces_need_a_detected_face(faces16, tiny_config, tmp_path):
    import facegan
    from facegan.data.dataset import FaceDataset
    from facegan.models.export import load_generator
    from facegan.privacy.person import check_person

    everyone = FaceDataset.load(faces16)
    others = FaceDataset(np.asarray(everyone.images[1:]), {"source": "test:others", "source_kind": "builtin"})
    check = check_person(np.asarray(everyone.images[0]), others)
    assert check.pixel[0][1] > 0.5  # no training face equals it
    facegan.train(tiny_config(faces16, tmp_path / "run", kimg=0.016))
    generator = load_generator(tmp_path / "run")
    check = check_person(np.asarray(everyone.images[0]), others, generator, num_samples=12)
    assert check.num_samples == 12 and 0 <= check.num_generated_faces <= 12
    assert len(check.generated) == min(4, check.num_generated_faces)
    assert all(0 <= seed < 12 for seed, _ in check.generated)
    with pytest.raises(FaceganError, match="training images are"):
        check_person(np.zeros((32, 32, 1), np.uint8), others)
