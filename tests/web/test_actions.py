"""The tabs' actions without a browser: the same bytes as the API, provenance on every file, one-line refusals."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facegan.errors import FaceganError


@pytest.fixture(scope="module")
def session(faces16, tmp_path_factory):
    import facegan
    from facegan.data.dataset import FaceDataset
    from facegan.training.config import resolve_config
    from facegan.web.actions import Session
    from facegan.web.paths import Roots
    from tests.web.conftest import TINY_OVERRIDES

    base = tmp_path_factory.mktemp("web-actions")
    (base / "runs").mkdir()
    FaceDataset.load(faces16).save(base / "data" / "faces16")
    facegan.train(resolve_config("default", {"data": str(base / "data" / "faces16"), "out": str(base / "runs" / "tiny"), "kimg": 0.016},
                                 TINY_OVERRIDES))
    return Session(Roots.create(base / "runs", base / "data"), work_dir=base / "work")


def test_membership_prepares_the_photo_as_the_training_set_was_prepared(session, tmp_path):
    """A centre-cropped training set gets a centre-cropped photo (no face detector involved); built-in crops fall back
    to dlib alignment, which finds no face in a photo without one: one line."""
    from facegan.data.dataset import FaceDataset
    from facegan.data.pipeline import prepare_image
    from facegan.web.actions import Session, membership
    from facegan.web.paths import Roots

    faces = FaceDataset.load(session.roots.resolve("data", "faces16"))
    centred = FaceDataset(np.asarray(faces.images), {**{k: v for k, v in faces.manifest.items() if k != "content_hash"},
                                                     "alignment": "center-crop"})
    centred.save(tmp_path / "data" / "faces16-center")  # a data root of its own: the shared session's listings stay as they are
    own = Session(Roots.create(session.roots.runs, tmp_path / "data"), work_dir=tmp_path / "work")
    photo = tmp_path / "no-face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(photo)
    result = membership(own, "tiny", "faces16-center", str(photo), 4)
    expected = prepare_image(photo, 16, align="center", channels=1)
    np.testing.assert_array_equal(np.asarray(Image.open(result.face)).reshape(expected.shape), expected)
    assert "aligned with dlib" not in result.reading
    with pytest.raises(FaceganError, match="finds no face"):
        membership(session, "tiny", "faces16", str(photo), 4)


def test_generate_writes_the_sampled_bytes_with_the_seed_in_each_file(session):
    from facegan.models.export import load_generator
    from facegan.provenance.inspect import read_provenance
    from facegan.web.actions import generate, list_datasets, list_generators

    assert list_generators(session.roots) == ["tiny"] and list_datasets(session.roots) == ["faces16"]
    result = generate(session, "tiny", "range", 3, 4, 0.7, 2)
    generator = load_generator(session.roots.runs / "tiny")
    expected = generator.sample([3, 4, 5, 6], truncation=0.7)
    assert [path.name for path in result.faces] == [f"seed{seed:05d}.png" for seed in (3, 4, 5, 6)]
    for seed, path, image in zip((3, 4, 5, 6), result.faces, expected):
        np.testing.assert_array_equal(np.asarray(Image.open(path)).reshape(image.shape), image)
        record = read_provenance(path)["xmp"]
        assert record["seed"] == str(seed) and record["model"] == generator.export_hash
    assert read_provenance(result.grid)["xmp"]["seeds"] == "3-6"
    assert np.asarray(Image.open(result.grid)).shape[:2] == (2 * 18 + 2, 2 * 18 + 2)


def test_the_animation_loops_there_and_back_and_carries_provenance(session):
    from facegan.provenance.inspect import read_provenance
    from facegan.web.actions import interpolate

    result = interpolate(session, "tiny", 1, 2, 4, 1.0)
    with Image.open(result.animation) as image:
        assert image.format == "WEBP" and image.n_frames == 6 and image.info.get("loop") == 0
    assert read_provenance(result.animation)["xmp"]["seeds"] == "1,2"


@pytest.mark.parametrize("call, message", [
    (lambda s, g: g(s, "../tiny", "single", 0, 1, 1.0), "'..' is not accepted"),
    (lambda s, g: g(s, "tiny", "single", -1, 1, 1.0), "seed must be a whole number"),
    (lambda s, g: g(s, "tiny", "range", 0, 257, 1.0), "number of faces must be a whole number from 1 to 256"),
    (lambda s, g: g(s, "tiny", "single", 0, 1, 1.5), "--truncation must be between 0 and 1"),
    (lambda s, g: g(s, "tiny", "sideways", 0, 1, 1.0), "unknown seed mode"),
])
def test_generate_refuses_bad_values_in_one_line(session, call, message):
    from facegan.web.actions import generate

    with pytest.raises(FaceganError, match=message):
        call(session, generate)


def test_a_training_run_name_cannot_leave_the_runs_root_or_overwrite_a_run(session):
    from facegan.web.actions import Trainer

    trainer = Trainer(session)
    with pytest.raises(FaceganError, match="'..' is not accepted"):
        trainer.start("faces16", "../elsewhere", "default", 1)
    with pytest.raises(FaceganError, match="exists already"):
        trainer.start("faces16", "tiny", "default", 1)
    with pytest.raises(FaceganError, match="at most 100"):
        trainer.start("faces16", "new", "default", 500)
    for line in ("out=/tmp/elsewhere", "data = /etc", "init_from=../tiny"):
        with pytest.raises(FaceganError, match="cannot be overridden here"):
            trainer.start("faces16", "new", "default", 1, f"batch_size=8\n{line}")
    assert trainer.job is None


def test_verify_takes_the_threshold_of_the_chosen_evaluation(session, tmp_path):
    from skimage import data as samples

    from facegan.data import prepare
    from facegan.data.pairs import make_pairs
    from facegan.faces.recognisers import get_recogniser
    from facegan.recognition import verify
    from facegan.web.actions import OWN_THRESHOLD, list_evaluations, list_recognisers, verify_pair

    people = prepare("builtin:rendered-faces", tmp_path / "people", size=32, identities=20, per_identity=4)
    record = verify("pixel", people, make_pairs(people, folds=2, pairs_per_fold=20), out_dir=session.roots.runs / "eval-pixel")
    assert "eval-pixel" in list_evaluations(session.roots) and "pixel" in list_recognisers(session.roots)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(samples.astronaut()).save(photo)

    chosen = verify_pair(session, photo, photo, ["pixel"], "eval-pixel")
    thresholds = [fold["threshold"] for fold in record["folds"]]
    assert chosen.table[0][2] == f"{float(np.median(thresholds)):.4f}" and "eval-pixel" in chosen.table[0][3]
    assert chosen.table[0][1] == "-0.0000" or chosen.table[0][1] == "0.0000"  # the same photo twice: distance 0
    assert chosen.reading == "pixel: same person."
    own = verify_pair(session, photo, photo, ["pixel"], OWN_THRESHOLD)
    assert own.table[0][2] == f"{-get_recogniser('pixel').threshold:.4f}"
    with pytest.raises(FaceganError, match="no recogniser chosen"):
        verify_pair(session, photo, photo, [], OWN_THRESHOLD)
    with pytest.raises(FaceganError, match="'..' is not accepted"):
        verify_pair(session, photo, photo, ["pixel"], "../eval-pixel")
