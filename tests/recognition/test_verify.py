"""verify(): the files it writes, each distinct image embedded once, scores anyone can recompute."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.faces.match import MatchRule
from facegan.faces.recognisers import get_recogniser
from facegan.recognition import evaluate_protocol, resolve_recogniser, verify
from facegan.recognition.verification import load_verification
from tests.recognition.helpers import save_identity_dataset, write_pairs


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("data") / "ids")


class CountingPixels:
    """The pixel recogniser, counting how many images it embeds."""

    name, version, dim = "counting", "1", 1024
    match = MatchRule("cosine", 0.5)
    threshold = 0.5

    def __init__(self):
        self.inner = get_recogniser("pixel")
        self.embedded = 0

    def embed(self, images, batch_size=64):
        self.embedded += len(images)
        return self.inner.embed(images, batch_size)

    def distance(self, first, second):
        return self.match.distance(first, second)

    def same_person(self, first, second):
        return self.match.same_person(first, second)


def test_verify_writes_the_record_pairs_csv_roc_and_examples(identities, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.txt")
    out = tmp_path / "results"
    record = verify("pixel", identities, pairs, out_dir=out)
    assert load_verification(out) == json.loads((out / "verification.json").read_text()) == record
    assert (record["recogniser"], record["num_pairs"], len(record["folds"])) == ("pixel", 24, 3)
    assert set(record["tar_at_far"]) == {"0.1", "0.01", "0.001"}
    assert record["dataset_hash"] == FaceDataset.load(identities).content_hash and len(record["pairs_hash"]) == 64
    assert record["accuracy_mean"] >= 0.75 and record["auc"] >= 0.85  # jittered copies of one face are easy for pixels
    for name in ("roc.png", "verification_examples.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    with open(out / "pairs.csv") as handle:
        rows = list(csv.DictReader(handle))
    lines = (tmp_path / "pairs.txt").read_text().splitlines()[1:]
    assert len(rows) == 24 and list(rows[0]) == ["fold", "left", "right", "same", "score"]
    first = lines[0].split("\t")  # pairs.txt order: the first line is fold 0's first same pair
    assert (rows[0]["fold"], rows[0]["left"], rows[0]["right"], rows[0]["same"]) == ("0", f"{first[0]}/{first[1]}", f"{first[0]}/{first[2]}", "1")
    # The CSV alone gives the same protocol numbers.
    again = evaluate_protocol(np.array([float(r["score"]) for r in rows]), np.array([r["same"] == "1" for r in rows]),
                              np.array([int(r["fold"]) for r in rows]))
    assert again.to_dict()["folds"] == record["folds"] and again.auc == record["auc"]


def test_each_distinct_image_is_embedded_once_and_scores_are_minus_distances(identities, tmp_path):
    dataset = FaceDataset.load(identities)
    left = np.array([0, 0, 6, 6, 1, 7, 0, 12], dtype=np.int64)
    right = np.array([1, 2, 7, 12, 13, 0, 13, 6], dtype=np.int64)
    same = np.array([True, True, True, False, False, False, False, False])
    fold = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    recogniser = CountingPixels()
    verify(recogniser, dataset, (left, right, same, fold), out_dir=tmp_path / "out")
    assert recogniser.embedded == len(np.unique(np.concatenate([left, right]))) == 7  # not 16
    with open(tmp_path / "out" / "pairs.csv") as handle:
        scores = np.array([float(row["score"]) for row in csv.DictReader(handle)])
    pixel = get_recogniser("pixel")
    expected = 1.0 - np.sum(pixel.embed(dataset.images[left]) * pixel.embed(dataset.images[right]), axis=1)
    np.testing.assert_allclose(scores, -expected, atol=1e-6)


def test_lfw_file_numbers_name_the_images(tmp_path):
    dataset = save_identity_dataset(tmp_path / "lfwlike", with_paths=True)
    record = verify("lbph", dataset, write_pairs(tmp_path / "pairs.txt"), out_dir=tmp_path / "out")
    with open(tmp_path / "out" / "pairs.csv") as handle:
        row = next(csv.DictReader(handle))
    name, first, second = (tmp_path / "pairs.txt").read_text().splitlines()[1].split("\t")
    assert (row["left"], row["right"]) == (f"{name}/{name}_{int(first):04d}.png", f"{name}/{name}_{int(second):04d}.png")
    assert record["recogniser"] == "lbph" and record["recogniser_dim"] == 16384 and record["auc"] > 0.7


def test_without_out_nothing_is_written(identities, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = verify("pixel", identities, write_pairs(tmp_path / "pairs.txt"))
    assert record["files"] == {} and sorted(p.name for p in tmp_path.iterdir()) == ["pairs.txt"]


def test_resolve_recogniser_names_aliases_and_exports(tmp_path, monkeypatch):
    assert resolve_recogniser("pixel").name == "pixel" and resolve_recogniser("lbph").name == "lbph"
    with pytest.raises(FaceganError, match="unknown recogniser 'nobody'.*dlib, dlib-resnet, lbph, pixel"):
        resolve_recogniser("nobody")
    # A path goes to the recogniser export loader (facegan.recognition.export, lazily imported).
    import sys
    import types

    fake = types.ModuleType("facegan.recognition.export")
    fake.load_recogniser_export = lambda path, device="cpu": ("loaded", str(path), device)
    monkeypatch.setitem(sys.modules, "facegan.recognition.export", fake)
    (tmp_path / "run").mkdir()
    assert resolve_recogniser(tmp_path / "run") == ("loaded", str(tmp_path / "run"), "cpu")


def test_existing_results_are_replaced_but_foreign_files_are_not(identities, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.txt")
    out = tmp_path / "results"
    verify("pixel", identities, pairs, out_dir=out)
    verify("lbph", identities, pairs, out_dir=out)  # facegan's own results: replaced
    assert load_verification(out)["recogniser"] == "lbph"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "pairs.csv").write_text("my own table\n")
    with pytest.raises(FaceganError, match="holds a pairs.csv that `facegan recog eval` did not write"):
        verify("pixel", identities, pairs, out_dir=foreign)
    assert (foreign / "pairs.csv").read_text() == "my own table\n"


# ---- the CLI end to end ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pixel", "lbph"])
def test_cli_recog_eval_end_to_end(identities, tmp_path, capsys, name):
    from facegan.cli.main import main

    pairs = write_pairs(tmp_path / "pairs.txt")
    out = tmp_path / name
    assert main(["recog", "eval", name, "--data", str(identities), "--pairs", str(pairs), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    record = load_verification(out)
    assert f"{record['accuracy_mean']:.2%} ± {record['accuracy_std']:.2%}" in printed and "TAR @ FAR 0.01" in printed
    assert record["recogniser"] == name and record["pairs_file"] == str(pairs)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["pairs.csv", "roc.png", "verification.json", "verification_examples.png"]
    # The library gives the same numbers as the command.
    assert verify(name, identities, pairs)["folds"] == record["folds"]


def test_cli_recog_eval_without_out_writes_nothing(identities, tmp_path, capsys, monkeypatch):
    from facegan.cli.main import main

    monkeypatch.chdir(tmp_path)
    pairs = write_pairs(tmp_path / "pairs.txt")
    assert main(["recog", "eval", "pixel", "--data", str(identities), "--pairs", str(pairs), "--no-progress"]) == 0
    assert "nothing written" in capsys.readouterr().out and sorted(p.name for p in tmp_path.iterdir()) == ["pairs.txt"]


def test_cli_recog_embed_dataset_and_images(identities, tmp_path, capsys):
    from PIL import Image

    from facegan.cli.main import main

    dataset = FaceDataset.load(identities)
    assert main(["recog", "embed", "lbph", str(identities), "--out", str(tmp_path / "emb.npy")]) == 0
    embeddings = np.load(tmp_path / "emb.npy")
    np.testing.assert_array_equal(embeddings, get_recogniser("lbph").embed(np.asarray(dataset.images)))
    folder = tmp_path / "faces"
    folder.mkdir()
    for index in (3, 1, 2):  # written out of order: rows follow the sorted names
        Image.fromarray(np.asarray(dataset.images[index])[..., 0]).save(folder / f"face{index}.png")
    Image.fromarray(np.asarray(dataset.images[0])[..., 0]).resize((48, 48)).save(folder / "face0.png")  # another size
    assert main(["recog", "embed", "pixel", str(folder), "--out", str(tmp_path / "emb.npy")]) == 0  # replaces its own array
    assert "sorted file order" in capsys.readouterr().out
    rows = np.load(tmp_path / "emb.npy")
    pixel = get_recogniser("pixel")
    rgb = np.repeat(np.asarray(dataset.images[1:4]), 3, axis=-1)  # PNG grey decoded as RGB
    assert rows.shape == (4, 1024)
    np.testing.assert_allclose(rows[1:], pixel.embed(rgb), atol=1e-6)
    assert float(rows[0] @ pixel.embed(np.asarray(dataset.images[:1]))[0]) > 0.95  # the resized copy still looks alike


def test_package_exports_are_lazy_and_load_no_torch():
    import subprocess
    import sys

    code = ("import facegan.report.recognition_sections, facegan.recognition as r, sys; "
            "assert callable(r.verify) and r.verify.__module__ == 'facegan.recognition.verification'; "
            "assert r.resolve_recogniser.__name__ == 'resolve_recogniser'; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"  # and no torch loaded on the way
