"""Hostile and careless input to identity-labelled data: `data pairs`, `--layout identity-folders`,
builtin:rendered-faces options. Each is correct work or one `error:` line with exit status 2."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from tests.hostile.helpers import refused


def _dataset(path: Path, num_identities: int, per_identity: int) -> Path:
    identity = np.repeat(np.arange(num_identities), per_identity)
    FaceDataset(
        images=np.zeros((len(identity), 4, 4, 1), np.uint8),
        manifest={"identity_names": [f"p{index}" for index in range(num_identities)]},
        identity=identity,
    ).save(path)
    return path


def test_pairs_refuses_dataset_without_identities(tmp_path, capsys):
    FaceDataset(images=np.zeros((6, 4, 4, 1), np.uint8)).save(tmp_path / "plain")
    line = refused(["data", "pairs", str(tmp_path / "plain"), "--out", str(tmp_path / "pairs.txt")], capsys)
    assert "no identity labels" in line
    assert not (tmp_path / "pairs.txt").exists()


def test_pairs_refuses_a_single_identity(tmp_path, capsys):
    data = _dataset(tmp_path / "one", 1, 10)
    line = refused(["data", "pairs", str(data), "--out", str(tmp_path / "pairs.txt")], capsys)
    assert "has 1 identity" in line and "at least 2" in line


def test_pairs_refuses_too_few_same_pairs_saying_how_many(tmp_path, capsys):
    data = _dataset(tmp_path / "few", 20, 2)  # 20 possible same pairs
    line = refused(["data", "pairs", str(data), "--folds", "10", "--pairs-per-fold", "3", "--out", str(tmp_path / "p.txt")], capsys)
    assert "allow only 20" in line and "--pairs-per-fold to 2" in line


def test_pairs_refuses_zero_folds(tmp_path, capsys):
    data = _dataset(tmp_path / "d", 20, 4)
    assert "at least 1" in refused(["data", "pairs", str(data), "--folds", "0", "--out", str(tmp_path / "p.txt")], capsys)


def test_pairs_refuses_out_inside_the_dataset(tmp_path, capsys):
    data = _dataset(tmp_path / "d", 20, 4)
    assert "inside the dataset" in refused(["data", "pairs", str(data), "--pairs-per-fold", "2", "--out", str(data / "pairs.txt")], capsys)
    assert FaceDataset.load(data) is not None


def test_pairs_does_not_replace_a_file_that_is_not_a_pairs_file(tmp_path, capsys):
    data = _dataset(tmp_path / "d", 20, 4)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert "is not a pairs.txt" in refused(["data", "pairs", str(data), "--pairs-per-fold", "2", "--out", str(notes)], capsys)
    assert notes.read_text() == "my notes\n"


def test_pairs_writes_and_replaces_its_own_file(tmp_path, capsys):
    data = _dataset(tmp_path / "d", 20, 4)
    out = tmp_path / "pairs.txt"
    assert main(["data", "pairs", str(data), "--pairs-per-fold", "2", "--out", str(out)]) == 0
    first = out.read_text()
    assert first.splitlines()[0] == "10\t2" and len(first.splitlines()) == 41
    assert main(["data", "pairs", str(data), "--pairs-per-fold", "2", "--seed", "1", "--out", str(out)]) == 0
    assert out.read_text() != first
    assert "identities disjoint across folds" in capsys.readouterr().out


def test_pairs_never_replaces_a_pairs_file_it_did_not_write_or_one_changed_since(tmp_path, capsys):
    """LFW's own pairs.txt parses as a pairs file too: only the file this command wrote, unchanged, is replaced."""
    data = _dataset(tmp_path / "d", 20, 4)
    theirs = tmp_path / "lfw-pairs.txt"
    theirs.write_text("1\t1\nAbel_Pacheco\t1\t4\nAbdullah\t1\tAbdullah_Gul\t2\n")
    line = refused(["data", "pairs", str(data), "--pairs-per-fold", "2", "--out", str(theirs)], capsys)
    assert "did not write" in line and theirs.read_text().startswith("1\t1\nAbel_Pacheco")
    ours = tmp_path / "pairs.txt"
    assert main(["data", "pairs", str(data), "--pairs-per-fold", "2", "--out", str(ours)]) == 0
    lines = ours.read_text().splitlines(keepends=True)
    ours.write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))  # the user edited it by hand (still a pairs file)
    edited = ours.read_text()
    assert "did not write" in refused(["data", "pairs", str(data), "--pairs-per-fold", "2", "--out", str(ours)], capsys)
    assert ours.read_text() == edited


def _png(path: Path, seed: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(path)


def test_identity_folders_refuses_images_only_directly_in_source(tmp_path, capsys):
    for index in range(3):
        _png(tmp_path / "flat" / f"{index}.png", index)
    line = refused(["data", "prepare", str(tmp_path / "flat"), str(tmp_path / "out"), "--layout", "identity-folders", "--no-progress"], capsys)
    assert "the 3 images directly in it belong to no identity" in line and "SOURCE/<identity>/<image>" in line
    assert not (tmp_path / "out").exists()


def test_identity_folders_refuses_builtin_source(tmp_path, capsys):
    line = refused(["data", "prepare", "builtin:lfw-subset", str(tmp_path / "out"), "--layout", "identity-folders"], capsys)
    assert "--layout identity-folders is for image folders" in line


def test_identity_folders_then_pairs_end_to_end(tmp_path, capsys):
    for person in range(4):
        for shot in range(3):
            _png(tmp_path / "people" / f"person-{person}" / f"{shot}.png", person * 10 + shot)
    _png(tmp_path / "people" / "stray.png")
    assert main(["data", "prepare", str(tmp_path / "people"), str(tmp_path / "data"), "--size", "8",
                 "--layout", "identity-folders", "--no-progress"]) == 0
    assert "no_identity 1" in capsys.readouterr().out
    assert main(["data", "pairs", str(tmp_path / "data"), "--folds", "2", "--pairs-per-fold", "2", "--out", str(tmp_path / "p.txt")]) == 0
    lines = (tmp_path / "p.txt").read_text().splitlines()
    assert lines[0] == "2\t2" and all(line.startswith("person-") for line in lines[1:])


def test_rendered_options_refused_for_other_sources(tmp_path, capsys):
    line = refused(["data", "prepare", "builtin:lfw-subset", str(tmp_path / "out"), "--identities", "5"], capsys)
    assert "--identities applies only to builtin:rendered-faces" in line
    _png(tmp_path / "photos" / "a.png")
    line = refused(["data", "prepare", str(tmp_path / "photos"), str(tmp_path / "out"), "--per-identity", "3", "--seed", "1"], capsys)
    assert "--per-identity, --seed apply only to builtin:rendered-faces" in line


def test_rendered_refuses_zero_identities_and_tiny_size(tmp_path, capsys):
    base = ["data", "prepare", "builtin:rendered-faces", str(tmp_path / "out")]
    assert "at least 1" in refused(base + ["--identities", "0"], capsys)
    assert "16-256 px" in refused(base + ["--size", "8", "--identities", "2", "--per-identity", "2"], capsys)
    assert not (tmp_path / "out").exists()


def test_rendered_prepare_then_pairs(tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["data", "prepare", "builtin:rendered-faces", str(out), "--size", "16", "--identities", "20",
                 "--per-identity", "4", "--seed", "1", "--no-progress"]) == 0
    assert "identities   20 labelled" in capsys.readouterr().out
    assert main(["data", "pairs", str(out), "--pairs-per-fold", "5", "--out", str(tmp_path / "pairs.txt")]) == 0
    assert (tmp_path / "pairs.txt").read_text().splitlines()[1].startswith("r000")
