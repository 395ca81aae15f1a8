"""`facegan fingerprint train|apply` and `facegan detect` end to end, and their one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from tests.fingerprint.conftest import TINY_CODEC

TINY_SETTINGS = [argument for name, value in TINY_CODEC.items() if name not in ("bits", "steps")
                 for argument in ("--set", f"{name}={value}")]


@pytest.fixture(scope="module")
def cli_fingerprint(faces16, tmp_path_factory):
    out = tmp_path_factory.mktemp("fingerprint_cli") / "fp"
    assert main(["fingerprint", "train", "--data", str(faces16), "--bits", "16", "--steps", "300", "--seed", "3",
                 "--out", str(out), "--no-progress", *TINY_SETTINGS]) == 0
    return out


def _write_png(image: np.ndarray, path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(path)


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_train_apply_detect_end_to_end(cli_fingerprint, faces16, tmp_path, capsys):
    metadata = json.loads((cli_fingerprint / "fingerprint.json").read_text())
    assert metadata["bits"] == 16 and metadata["seed"] == 3 and metadata["config"]["encoder_width"] == 16
    assert main(["fingerprint", "apply", str(faces16), "--fingerprint", str(cli_fingerprint), "--out", str(tmp_path / "marked")]) == 0
    marked = FaceDataset.load(tmp_path / "marked")
    assert marked.manifest["fingerprint"]["id"] == metadata["id"]
    capsys.readouterr()

    # marked images written as PNG files, read back through facegan.data
    folder = tmp_path / "pngs"
    for index in range(12):
        _write_png(np.asarray(marked.images[index]), folder / f"{index:02d}.png")
    assert main(["detect", str(folder), "--fingerprint", str(cli_fingerprint), "--fpr", "0.05", "--out", str(tmp_path / "res")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("FINGERPRINTED") + printed.count("not detected") == 12  # one line per image (few images)
    report = json.loads((tmp_path / "res" / "detect.json").read_text())
    assert report["format"] == "facegan-detect" and report["fingerprint"] == str(cli_fingerprint)
    summary = report["summary"]
    assert (summary["num_images"], summary["bits"], summary["fpr"], summary["threshold"]) == (12, 16, 0.05, 12)
    # The stated rate is the binomial tail at 12 of 16 bits or the codec's measured null tail, whichever is larger.
    assert 0.0384063720703125 - 1e-12 <= summary["exact_fpr"] <= 0.05
    assert summary["fingerprint_id"] == metadata["id"]
    assert summary["mean_bit_accuracy"] > 0.75 and summary["detection_rate"] > 0.5
    rows = report["images"]
    assert [row["name"] for row in rows] == [str(folder / f"{index:02d}.png") for index in range(12)]
    assert set(rows[0]) == {"name", "bit_accuracy", "matches", "p_value", "detected"}

    # the never-encoded dataset: near chance, rarely (here: at most 12 %) called fingerprinted; many images -> summary only
    assert main(["detect", str(faces16), "--fingerprint", str(cli_fingerprint), "--fpr", "0.05", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["summary"]["num_images"] == 100 and abs(plain["summary"]["mean_bit_accuracy"] - 0.5) < 0.1
    assert plain["summary"]["detection_rate"] <= 0.12
    assert main(["detect", str(faces16), "--fingerprint", str(cli_fingerprint)]) == 0
    printed = capsys.readouterr().out
    assert "FINGERPRINTED" not in printed and "not detected" not in printed and "of 100 images fingerprinted" in printed
    # detect.json is replaced by a later detect (facegan wrote it), atomically
    assert main(["detect", str(faces16), "--fingerprint", str(cli_fingerprint), "--out", str(tmp_path / "res")]) == 0
    assert json.loads((tmp_path / "res" / "detect.json").read_text())["summary"]["num_images"] == 100


def test_detect_errors_are_one_line(cli_fingerprint, faces16, tmp_path, capsys):
    small = tmp_path / "small"
    _write_png(np.zeros((8, 8, 1), np.uint8), small / "tiny.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "detect.json").write_text('{"mine": 1}')
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "fingerprint.json").write_text("{oops")
    not_image = tmp_path / "notimage"
    not_image.mkdir()
    (not_image / "x.png").write_text("not a png")
    fp = ["--fingerprint", str(cli_fingerprint)]
    cases = [
        (["detect", str(tmp_path / "missing"), *fp], "no such image"),
        (["detect", str(empty), *fp], "holds no images"),
        (["detect", str(small), *fp], "smaller than the fingerprint's 16x16"),
        (["detect", str(not_image), *fp], "cannot read"),
        (["detect", str(faces16), *fp, "--fpr", "nan"], "--fpr"),
        (["detect", str(faces16), *fp, "--fpr", "-0.1"], "--fpr"),
        (["detect", str(faces16), *fp, "--fpr", "1"], "--fpr"),
        (["detect", str(faces16), *fp, "--fpr", "1e-9"], "below 2^-16"),
        (["detect", str(faces16), *fp, "--out", str(a_file)], "is a file"),
        (["detect", str(faces16), *fp, "--out", str(foreign)], "not written by `facegan detect`"),
        (["detect", str(faces16), "--fingerprint", str(broken)], "damaged"),
        (["detect", str(faces16), "--fingerprint", str(tmp_path / "nofp")], "fingerprint not found"),
        (["detect", str(faces16), "--fingerprint", str(faces16)], "not a fingerprint"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        assert expected in _error_line(capsys), argv
    assert json.loads((foreign / "detect.json").read_text()) == {"mine": 1}


def test_train_errors_are_one_line(cli_fingerprint, faces16, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    base = ["fingerprint", "train", "--data", str(faces16), "--no-progress"]
    cases = [
        ([*base, "--out", str(tmp_path / "n"), "--bits", "0"], "--bits must be between 1 and 256"),
        ([*base, "--out", str(tmp_path / "n"), "--bits", "-4"], "--bits must be between 1 and 256"),
        ([*base, "--out", str(tmp_path / "n"), "--bits", "100000"], "--bits must be between 1 and 256"),
        ([*base, "--out", str(tmp_path / "n"), "--bits", "many"], "--bits must be a whole number"),
        ([*base, "--out", str(tmp_path / "n"), "--bits", "16", "--key", "12345"], "--key has 5 hex digits"),
        ([*base, "--out", str(tmp_path / "n"), "--steps", "0"], "--steps"),
        ([*base, "--out", str(tmp_path / "n"), "--set", "resolution=64"], "takes it from the dataset"),
        ([*base, "--out", str(tmp_path / "n"), "--set", "target_psnr=nan"], "target_psnr"),
        ([*base, "--out", str(a_file)], "is a file"),
        ([*base, "--out", str(cli_fingerprint)], "already holds a fingerprint"),
        (["fingerprint", "train", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "n")], "dataset not found"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        assert expected in _error_line(capsys), argv
    assert not (tmp_path / "n").exists()


def test_help_shows_examples(capsys):
    for argv in (["fingerprint", "train", "--help"], ["detect", "--help"], ["fingerprint", "apply", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out
