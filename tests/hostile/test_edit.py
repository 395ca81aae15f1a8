"""Hostile inputs to `facegan edit` (issue 9): each refused in one line, exit 2, before any strip is written."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.editing.helpers import edit_setup, planted_dataset, tiny_export
from tests.hostile.helpers import refused


@pytest.fixture
def export(tmp_path, monkeypatch):
    return edit_setup(tmp_path, monkeypatch)[0]


def _edit(capsys, export, out, *extra):
    argv = ["edit", str(export), "--out", str(out), "--samples", "200", "--recogniser", "none", "--no-progress", *extra]
    return refused(argv, capsys)


def test_edit_refuses_an_attribute_the_dataset_does_not_have(export, tmp_path, capsys):
    line = _edit(capsys, export, tmp_path / "s.png", "--seeds", "0", "--attribute", "Smiling")
    assert line.endswith("has Top_Bright, Left_Red, Noise") and "unknown attribute 'Smiling'" in line
    assert not (tmp_path / "s.png").exists()


def test_edit_refuses_a_dataset_without_attribute_labels(tmp_path, monkeypatch, capsys):
    export = edit_setup(tmp_path, monkeypatch)[0]
    unlabelled = planted_dataset(count=40)
    unlabelled.attributes, unlabelled.manifest = None, {}
    unlabelled.save(tmp_path / "plain")
    line = _edit(capsys, export, tmp_path / "s.png", "--seeds", "0", "--attribute", "Smiling", "--data", str(tmp_path / "plain"))
    assert "has no attribute labels" in line


def test_edit_refuses_a_model_without_recorded_labelled_data(tmp_path, capsys):
    export = tiny_export(tmp_path / "bare")
    line = _edit(capsys, export, tmp_path / "s.png", "--seeds", "0", "--attribute", "Smiling")
    assert "no labelled dataset for the attribute classifier" in line and "--data" in line


def test_edit_refuses_latents_of_another_model(export, tmp_path, capsys):
    np.save(tmp_path / "latents.npy", np.zeros((3, 128), np.float32))
    line = _edit(capsys, export, tmp_path / "s.png", "--latents", str(tmp_path / "latents.npy"), "--attribute", "Top_Bright")
    assert "shape (N, 16)" in line and "float32 (3, 128)" in line


def test_edit_refuses_both_seeds_and_latents(export, tmp_path, capsys):
    np.save(tmp_path / "latents.npy", np.zeros((3, 16), np.float32))
    line = _edit(capsys, export, tmp_path / "s.png", "--seeds", "0", "--latents", str(tmp_path / "latents.npy"), "--attribute", "Top_Bright")
    assert "exactly one of --seeds" in line


@pytest.mark.parametrize("strength, message", [
    ("3..-3", "runs backwards"), ("0", "edits nothing"), ("nan", "--strength must be a number"), ("1e9", "between -100 and 100"),
])
def test_edit_refuses_impossible_strengths(export, tmp_path, capsys, strength, message):
    assert message in _edit(capsys, export, tmp_path / "s.png", "--seeds", "0", "--attribute", "Top_Bright", "--strength", strength)


def test_edit_refuses_conditioning_on_the_edited_attribute(export, tmp_path, capsys):
    line = _edit(capsys, export, tmp_path / "s.png", "--seeds", "0", "--attribute", "Top_Bright", "--condition-on", "Top_Bright")
    assert "condition on the others only" in line


def test_edit_refuses_an_unknown_conditioned_attribute(export, tmp_path, capsys):
    line = _edit(capsys, export, tmp_path / "s.png", "--seeds", "0", "--attribute", "Top_Bright", "--condition-on", "Male")
    assert "--condition-on names unknown attribute 'Male'" in line


def test_edit_never_overwrites_a_json_it_did_not_write(export, tmp_path, capsys):
    (tmp_path / "s.json").write_text(json.dumps({"mine": 1}))
    line = _edit(capsys, export, tmp_path / "s.png", "--seeds", "0", "--attribute", "Top_Bright")
    assert "was not written by `facegan edit`" in line
    assert json.loads((tmp_path / "s.json").read_text()) == {"mine": 1}


def test_edit_refuses_an_output_that_is_not_an_image(export, tmp_path, capsys):
    assert "has no image suffix" in _edit(capsys, export, tmp_path / "s.txt", "--seeds", "0", "--attribute", "Top_Bright")


def test_edit_refuses_a_fifo_as_latents_without_hanging(export, tmp_path, capsys):
    import os

    os.mkfifo(tmp_path / "latents.npy")
    line = _edit(capsys, export, tmp_path / "s.png", "--latents", str(tmp_path / "latents.npy"), "--attribute", "Top_Bright")
    assert "is not a file" in line


def test_edit_refuses_pickled_latents(export, tmp_path, capsys):
    np.save(tmp_path / "latents.npy", np.array([{"z": 1}], dtype=object), allow_pickle=True)
    line = _edit(capsys, export, tmp_path / "s.png", "--latents", str(tmp_path / "latents.npy"), "--attribute", "Top_Bright")
    assert "not a readable .npy" in line


def test_edit_refuses_to_replace_a_file_it_did_not_write(export, tmp_path, capsys):
    (tmp_path / "keep.png").write_text("keep")
    line = _edit(capsys, export, tmp_path / "keep.png", "--seeds", "0", "--attribute", "Top_Bright")
    assert "exists and was not written by `facegan edit`" in line
    assert (tmp_path / "keep.png").read_text() == "keep"


def test_edit_refuses_to_write_inside_the_labelled_dataset(tmp_path, monkeypatch, capsys):
    export, data = edit_setup(tmp_path, monkeypatch)
    line = _edit(capsys, export, data / "x.png", "--seeds", "0", "--attribute", "Top_Bright")
    assert "lies inside" in line and "an input of this command" in line
    assert not (data / "x.png").exists() and not (data / "x.json").exists()
