"""Fingerprinted training data end to end: `train --fingerprint`, `data prepare --fingerprint`, the export's record,
and the key in what the generator makes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan import files
from facegan.fingerprint.apply import ensure_fingerprinted, fingerprinted_path
from tests.hostile.test_killed_writers import killed_staging, live_writer  # noqa: F401 (a fixture)

TINY = ["--batch-size", "8", "--no-progress", "--set", "model.g_channels=16", "--set", "model.d_channels=16", "--set", "model.min_channels=8",
        "--set", "schedule.log_kimg=0.016", "--set", "schedule.checkpoint_kimg=0.032", "--set", "schedule.snapshot_kimg=0.032",
        "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1"]


@pytest.fixture
def data16(faces16, tmp_path):
    """A private copy of faces16: the fingerprinted copy is written beside the dataset it comes from."""
    return FaceDataset.load(FaceDataset.load(faces16).save(tmp_path / "faces16"))


def test_train_with_a_fingerprint_records_it_and_marks_its_images(data16, tiny_fingerprint_path, tiny_fingerprint, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data16.path), "--out", str(run), "--kimg", "0.032", "--fingerprint", str(tiny_fingerprint_path), *TINY,
                 "--set", "fingerprint.tune_steps=20", "--set", "fingerprint.mark_data=true"]) == 0
    marked = FaceDataset.load(fingerprinted_path(data16.path, tiny_fingerprint.id))
    assert marked.manifest["fingerprint"]["id"] == tiny_fingerprint.id and marked.manifest["parent_hash"] == data16.content_hash
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == str(marked.path)
    export = json.loads((run / "export" / "config.json").read_text())
    assert export["fingerprint"]["id"] == tiny_fingerprint.id and export["dataset_hash"] == marked.content_hash
    # The encoded training images carry the key; the unmarked originals do not.
    assert tiny_fingerprint.bit_accuracy(np.asarray(marked.images)).mean() > 0.8  # the tiny codec reads ~0.87
    assert tiny_fingerprint.bit_accuracy(np.asarray(data16.images)).mean() < 0.7
    # Images the generator writes name the fingerprint in their provenance.
    assert main(["sample", str(run), "--seeds", "0", "--out-dir", str(tmp_path / "fakes")]) == 0
    from facegan.provenance.inspect import read_provenance

    assert read_provenance(tmp_path / "fakes" / "seed00000.png")["xmp"]["fingerprint"] == tiny_fingerprint.id
    # A second run on the same data and fingerprint reuses the copy (same bytes, not rewritten).
    before = (marked.path / "manifest.json").stat().st_mtime_ns
    assert ensure_fingerprinted(data16, tiny_fingerprint).content_hash == marked.content_hash
    assert (marked.path / "manifest.json").stat().st_mtime_ns == before


def test_a_dataset_carrying_another_fingerprint_is_refused(data16, tiny_fingerprint, tmp_path):
    marked = ensure_fingerprinted(data16, tiny_fingerprint)
    assert ensure_fingerprinted(marked, tiny_fingerprint).path == marked.path  # the same key: used as is
    manifest = dict(marked.manifest, fingerprint={"id": "f" * 64, "bits": 16, "path": None})
    other = FaceDataset.load(FaceDataset(np.asarray(marked.images), {k: v for k, v in manifest.items() if k != "content_hash"}).save(tmp_path / "other"))
    with pytest.raises(FaceganError, match="already carries fingerprint"):
        ensure_fingerprinted(other, tiny_fingerprint)


def test_prepare_with_a_fingerprint_writes_only_the_marked_dataset(tiny_fingerprint_path, tiny_fingerprint, tmp_path):
    out = tmp_path / "data" / "lfw16fp"
    assert main(["data", "prepare", "builtin:lfw-subset", str(out), "--size", "16", "--fingerprint", str(tiny_fingerprint_path), "--no-progress"]) == 0
    dataset = FaceDataset.load(out)
    assert dataset.manifest["fingerprint"]["id"] == tiny_fingerprint.id and len(dataset) == 100 and dataset.channels == 1
    assert tiny_fingerprint.bit_accuracy(np.asarray(dataset.images)).mean() > 0.8
    assert sorted(path.name for path in out.parent.iterdir()) == ["lfw16fp"]  # the unmarked staging copy is gone


@pytest.mark.parametrize("argv, message", [
    (["data", "prepare", "builtin:lfw-subset", "OUT", "--size", "8", "--fingerprint", "FP"], "below the fingerprint's 16x16"),
    (["data", "prepare", "builtin:lfw-subset", "OUT", "--size", "16", "--channels", "3", "--fingerprint", "FP"], "drop --channels"),
    (["data", "prepare", "builtin:lfw-subset", "OUT", "--size", "16", "--fingerprint", "/no/such/fp"], "fingerprint not found"),
    (["train", "--out", "RUN", "--resume", "--fingerprint", "FP"], "resumed run keeps the data"),
    (["train", "--data", "DATA", "--out", "RUN", "--fingerprint", "FP", "--nproc-per-node", "2"], "then `facegan fingerprint embed"),
    (["train", "--data", "DATA", "--out", "RUN", "--fingerprint", "FP", "--nproc-per-node", "2", "--set", "fingerprint.mark_data=true"],
     "fingerprint the data first"),
    (["train", "--data", "DATA", "--out", "RUN", "--fingerprint", "FP", "--set", "fingerprint.weight=0"], "would teach the generator nothing"),
    (["train", "--out", "RUN", "--fingerprint", "FP", "--set", "fingerprint.mark_data=true"], "needs --data DATASET"),
])
def test_bad_fingerprint_options_are_one_line(argv, message, tiny_fingerprint_path, faces16, tmp_path):
    argv = [str(tiny_fingerprint_path) if item == "FP" else str(tmp_path / "out") if item == "OUT" else str(faces16) if item == "DATA"
            else str(tmp_path / "run") if item == "RUN" else item for item in argv]
    process = subprocess.run([sys.executable, "-m", "facegan", *argv], capture_output=True, text=True, timeout=120)
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1 and message in lines[0], process.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out-unmarked-*"))


def test_prepare_with_a_fingerprint_after_a_killed_one_removes_its_unmarked_copy(tiny_fingerprint_path, tmp_path, live_writer):
    out = tmp_path / "data" / "lfw16fp"
    out.parent.mkdir()
    left = killed_staging(out, "unmarked")
    running = out.with_name(f".lfw16fp.unmarked-{files._host_tag()}-{live_writer}-0123abcd")  # a second prepare still at work
    os.mkdir(running)
    assert main(["data", "prepare", "builtin:lfw-subset", str(out), "--size", "16", "--fingerprint", str(tiny_fingerprint_path),
                 "--no-progress"]) == 0
    assert sorted(os.listdir(out.parent)) == sorted(["lfw16fp", running.name])
    assert not os.path.exists(left)
