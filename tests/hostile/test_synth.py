"""Hostile inputs to `facegan synth` (issue 8): each refused in one line, exit 2, before anything is written."""
from __future__ import annotations

import os

import pytest

from facegan.faces.recognisers import register_recogniser, unregister_recogniser
from tests.hostile.helpers import refused
from tests.recognition.synth_fakes import PIXEL_RECOGNISER, PixelRecogniser, make_run, training_faces


@pytest.fixture
def pixel():
    register_recogniser(PIXEL_RECOGNISER, lambda **options: PixelRecogniser())
    yield PIXEL_RECOGNISER
    unregister_recogniser(PIXEL_RECOGNISER)


@pytest.fixture
def setup(tmp_path, monkeypatch, pixel):
    """(run folder, training dataset folder) with the fake identity-aware generator behind load_generator."""
    import facegan.models.export as export_module

    train = training_faces()
    train_path = train.save(tmp_path / "train")
    run, loader = make_run(tmp_path / "run", str(train_path), train.content_hash)
    monkeypatch.setattr(export_module, "load_generator", loader)
    return run, train_path


def _synth(capsys, run, out, *extra):
    argv = ["synth", str(run), "--identities", "2", "--per-identity", "2", "--out", str(out), "--recogniser", PIXEL_RECOGNISER,
            "--no-progress", *extra]
    return refused(argv, capsys)


@pytest.mark.parametrize("value, message", [
    ("0", "--identities must be at least 2 (different-identity pairs need two people), got 0"),
    ("-5", "--identities must be at least 2 (different-identity pairs need two people), got -5"),
    ("10000000000", "--identities must be at most 1,000,000, got 10,000,000,000; make several datasets whose --seed ranges do not overlap"),
    ("1e3", "--identities must be a whole number, got '1e3'"),
])
def test_synth_refuses_zero_negative_huge_or_fractional_identities(capsys, tmp_path, setup, value, message):
    run, _ = setup
    line = refused(["synth", str(run), "--identities", value, "--per-identity", "2", "--out", str(tmp_path / "s")], capsys)
    assert line == f"error: {message}"
    assert not (tmp_path / "s").exists()


def test_synth_refuses_one_image_per_identity_saying_same_identity_pairs_need_two(capsys, tmp_path, setup):
    run, _ = setup
    line = refused(["synth", str(run), "--identities", "5", "--per-identity", "1", "--out", str(tmp_path / "s")], capsys)
    assert line.startswith("error: --per-identity must be at least 2 (same-identity pairs need two images of each person")


def test_synth_refuses_a_dataset_too_large_for_memory_with_an_estimate(capsys, tmp_path, setup):
    run, _ = setup
    line = refused(["synth", str(run), "--identities", "1000000", "--per-identity", "1000", "--out", str(tmp_path / "s")], capsys)
    assert "1000000 identities x 1000 images at 32x32x3 would need ~2,861.0 GiB in memory" in line


def test_synth_refuses_out_that_is_the_run(capsys, setup):
    run, _ = setup
    assert f"--out {run} is the run {run} or inside/around it" in _synth(capsys, run, run)
    assert (run / "config.json").is_file() and (run / "export" / "model.safetensors").is_file()


def test_synth_refuses_out_inside_the_run_or_its_export(capsys, setup):
    run, _ = setup
    assert "is the run" in _synth(capsys, run, run / "synth")
    assert "is the run" in _synth(capsys, run / "export", run / "export" / "synth")
    assert not (run / "synth").exists() and not (run / "export" / "synth").exists()


def test_synth_refuses_out_that_is_a_file(capsys, tmp_path, setup):
    run, _ = setup
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert "is a file, not a folder" in _synth(capsys, run, target)
    assert target.read_text() == "keep me"


def test_synth_refuses_out_that_is_a_fifo_without_hanging(capsys, tmp_path, setup):
    run, _ = setup
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "is a FIFO, socket or device, not a folder" in _synth(capsys, run, fifo)


def test_synth_refuses_out_inside_the_default_reference_dataset(capsys, setup):
    run, train_path = setup
    assert f"is the reference dataset {train_path} or inside/around it" in _synth(capsys, run, train_path / "synth")
    assert not (train_path / "synth").exists()


def test_synth_refuses_out_that_is_the_given_reference(capsys, tmp_path, setup):
    run, _ = setup
    other = training_faces().save(tmp_path / "other")
    assert "is the reference dataset" in _synth(capsys, run, other, "--reference", str(other))


def test_synth_refuses_out_that_is_a_folder_of_user_files(capsys, tmp_path, setup):
    run, _ = setup
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "me.jpg").write_bytes(b"jpeg")
    assert "exists and is not a prepared dataset" in _synth(capsys, run, photos)
    assert (photos / "me.jpg").read_bytes() == b"jpeg"


def test_synth_refuses_a_run_that_is_not_identity_aware(capsys, tmp_path, monkeypatch, pixel):
    import facegan.models.export as export_module
    from facegan.models.export import load_generator

    run, _ = make_run(tmp_path / "plain", None)
    monkeypatch.setattr(export_module, "load_generator", load_generator)  # the real loader: a plain generator
    line = _synth(capsys, run, tmp_path / "s")
    assert line == f"error: {run} is not identity-aware; train it with --condition identity"
    assert not (tmp_path / "s").exists()


def test_synth_with_every_candidate_too_close_is_one_line_and_writes_nothing(capsys, tmp_path, setup):
    run, _ = setup
    line = _synth(capsys, run, tmp_path / "s", "--min-distance", "5", "--max-attempts", "2")
    assert line.startswith("error: identity s00000: all 2 candidates (identity seeds 0-1) came closer than 5 to a training face")
    assert "use --min-distance reference" in line  # the training faces lie closer than 5 to each other too
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("extra, message", [
    (["--min-distance", "nan"], "--min-distance must be a number between 0 and 1e+06, got nan"),
    (["--min-distance", "-1"], "--min-distance must be a number between 0 and 1e+06, got -1"),
    (["--seed", "-1"], "--seed must be a whole number from 0 to 2**63 - 1, got -1"),
    (["--max-attempts", "0"], "--max-attempts must be between 1 and 10000, got 0"),
    (["--truncation", "2"], "--truncation must be a number between 0 and 1, got 2"),
])
def test_synth_refuses_bad_numbers(capsys, tmp_path, setup, extra, message):
    run, _ = setup
    assert message in _synth(capsys, run, tmp_path / "s", *extra)


def test_synth_refuses_an_unknown_recogniser(capsys, tmp_path, setup):
    run, _ = setup
    line = refused(["synth", str(run), "--identities", "2", "--per-identity", "2", "--out", str(tmp_path / "s"),
                    "--recogniser", "no-such-recogniser", "--no-progress"], capsys)
    assert "unknown recogniser 'no-such-recogniser'" in line


def test_synth_refuses_a_path_that_is_no_model(capsys, tmp_path):
    line = refused(["synth", str(tmp_path), "--identities", "2", "--per-identity", "2", "--out", str(tmp_path / "s")], capsys)
    assert "holds no generator export" in line


def test_synth_refuses_a_broken_reference_naming_the_option(capsys, tmp_path, setup):
    run, _ = setup
    assert "error: --reference: dataset not found" in _synth(capsys, run, tmp_path / "s", "--reference", str(tmp_path / "missing"))


def test_synth_min_distance_words_other_than_reference_are_refused(capsys, tmp_path, setup):
    run, _ = setup
    line = _synth(capsys, run, tmp_path / "s", "--min-distance", "auto")
    assert line.startswith("error: --min-distance") and not (tmp_path / "s").exists()
