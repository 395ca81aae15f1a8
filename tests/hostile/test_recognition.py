"""Hostile inputs to `facegan recog eval` / `recog embed`: each is exit 2 and one `error:` line, nothing lost."""
from __future__ import annotations

import os

import numpy as np
import pytest

from facegan.faces.match import MatchRule
from facegan.faces.recognisers import register_recogniser, unregister_recogniser
from tests.hostile.helpers import refused
from tests.recognition.helpers import save_identity_dataset, write_pairs


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("data") / "ids")


@pytest.fixture
def pairs(tmp_path):
    return write_pairs(tmp_path / "pairs.txt")


def _eval(identities, pairs, *extra):
    return ["recog", "eval", *(extra[:1] or ["pixel"]), "--data", str(identities), "--pairs", str(pairs), "--no-progress", *extra[1:]]


def test_recog_eval_refuses_an_unknown_recogniser(identities, pairs, capsys):
    line = refused(_eval(identities, pairs, "no-such-recogniser"), capsys)
    assert "unknown recogniser 'no-such-recogniser'" in line and "lbph, pixel" in line


def test_recog_eval_refuses_pairs_naming_missing_images(identities, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.txt")
    text = pairs.read_text().replace("p00\t", "nobody\t", 1)  # a person the dataset does not have
    lines = pairs.read_text().splitlines()
    lines[1] = "p00\t1\t99"  # image 99 of a person with 6
    pairs.write_text("\n".join(lines) + "\n")
    assert "the dataset lacks" in refused(_eval(identities, pairs), capsys)
    pairs.write_text(text)
    assert "the dataset lacks" in refused(_eval(identities, pairs), capsys)


def test_recog_eval_refuses_an_out_that_is_a_file(identities, pairs, tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    assert "is a file, not a folder" in refused(_eval(identities, pairs, "pixel", "--out", str(target)), capsys)
    assert target.read_text() == "keep me\n"


def test_recog_eval_refuses_an_out_that_is_a_fifo(identities, pairs, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "is a FIFO" in refused(_eval(identities, pairs, "pixel", "--out", str(fifo)), capsys)


def test_recog_eval_refuses_the_dataset_itself_as_out(identities, pairs, capsys):
    before = sorted(os.listdir(identities))
    assert "is the dataset folder itself" in refused(_eval(identities, pairs, "pixel", "--out", str(identities)), capsys)
    assert "inside the dataset" in refused(_eval(identities, pairs, "pixel", "--out", str(identities / "results")), capsys)
    assert sorted(os.listdir(identities)) == before


def test_recog_eval_refuses_foreign_result_names_in_out(identities, pairs, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "roc.png").write_bytes(b"my picture")
    assert "did not write" in refused(_eval(identities, pairs, "pixel", "--out", str(out)), capsys)
    assert (out / "roc.png").read_bytes() == b"my picture"


class _BrokenRecogniser:
    name, version, dim = "test-nan", "1", 4
    match = MatchRule("cosine", 0.5)
    threshold = 0.5

    def __init__(self, nan_descriptors: bool) -> None:
        self.nan_descriptors = nan_descriptors

    def embed(self, images, batch_size=64):
        descriptors = np.ones((len(images), 4), dtype=np.float32)
        if self.nan_descriptors:
            descriptors[1] = np.nan
        return descriptors

    def distance(self, first, second):
        return np.full(len(first), np.nan)  # e.g. a distance of zero-norm descriptors

    def same_person(self, first, second):
        return np.zeros(len(first), dtype=bool)


@pytest.mark.parametrize("nan_descriptors,message", [(True, "non-finite (NaN/inf) descriptors"), (False, "pair scores are not finite numbers")])
def test_recog_eval_refuses_nan_scores(identities, pairs, tmp_path, capsys, nan_descriptors, message):
    register_recogniser("test-nan", lambda **options: _BrokenRecogniser(nan_descriptors))
    try:
        assert message in refused(_eval(identities, pairs, "test-nan", "--out", str(tmp_path / "out")), capsys)
    finally:
        unregister_recogniser("test-nan")
    assert not (tmp_path / "out" / "verification.json").exists()


def test_recog_eval_refuses_a_missing_or_fifo_pairs_file(identities, tmp_path, capsys):
    assert "pairs file not found" in refused(_eval(identities, tmp_path / "nope.txt"), capsys)
    fifo = tmp_path / "pairs.fifo"
    os.mkfifo(fifo)
    assert "FIFO" in refused(_eval(identities, fifo), capsys)  # refused before opening: no hang


def test_recog_eval_refuses_a_dataset_without_identities(faces16, pairs, capsys):
    assert "identit" in refused(_eval(faces16, pairs), capsys)  # data.pairs and the stand-in word it differently


def test_recog_eval_refuses_pairs_with_one_fold(identities, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.txt", num_folds=1, per_fold=4)
    assert "at least 2 folds" in refused(_eval(identities, pairs), capsys)


def test_recog_embed_refuses_a_non_npy_or_foreign_out(identities, tmp_path, capsys):
    assert "does not end in .npy" in refused(["recog", "embed", "pixel", str(identities), "--out", str(tmp_path / "emb.txt")], capsys)
    foreign = tmp_path / "labels.npy"
    np.save(foreign, np.arange(5))
    assert "is not an embedding array" in refused(["recog", "embed", "pixel", str(identities), "--out", str(foreign)], capsys)
    np.testing.assert_array_equal(np.load(foreign), np.arange(5))


def test_recog_embed_refuses_a_missing_source_and_an_unknown_recogniser(identities, tmp_path, capsys):
    assert "no such dataset, image folder or image" in refused(["recog", "embed", "pixel", str(tmp_path / "none"), "--out", str(tmp_path / "e.npy")], capsys)
    assert "unknown recogniser" in refused(["recog", "embed", "nobody", str(identities), "--out", str(tmp_path / "e.npy")], capsys)


def test_recog_embed_refuses_a_broken_image_in_a_folder(tmp_path, capsys):
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "a.png").write_bytes(b"not a png at all")
    assert "cannot read" in refused(["recog", "embed", "pixel", str(tmp_path / "faces"), "--out", str(tmp_path / "e.npy")], capsys)
    assert not (tmp_path / "e.npy").exists()
