"""Post-hoc fingerprinting (Stable Signature's fine-tune): `fingerprint.mode=tune` at the end of `train`, and
`facegan fingerprint embed` on any export."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from facegan.models.export import load_generator
from facegan.training.fingerprint_tune import TuneSettings, tune_generator
from tests.fingerprint.test_integration import TINY

# A tiny generator learns the tiny codec's key in ~150 steps at this learning rate.
FAST_TUNE = ["--set", "fingerprint.tune_steps=150", "--set", "fingerprint.tune_lr=0.003", "--set", "fingerprint.tune_consistency=1"]


@pytest.fixture
def plain16(faces16, tmp_path):
    return FaceDataset.load(FaceDataset.load(faces16).save(tmp_path / "faces16"))


def _train(data, out, *extra, kimg="0.064"):
    argv = ["train", "--data", str(data), "--out", str(out), "--kimg", kimg, *TINY, "--set", "ema.enabled=false", *extra]
    assert main(argv) == 0


def _weights_hash(run):
    return hashlib.sha256((run / "export" / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("mark_data", [False, True])
def test_tune_mode_fine_tunes_the_finished_export_and_the_checkpoint_keeps_the_trained_weights(
        mark_data, plain16, tiny_fingerprint, tiny_fingerprint_path, tmp_path):
    """`train --fingerprint FP`: on the plain faces by default, on their marked copy with fingerprint.mark_data=true."""
    run = tmp_path / "run"
    _train(plain16.path, run, "--fingerprint", str(tiny_fingerprint_path), "--set", f"fingerprint.mark_data={str(mark_data).lower()}",
           *FAST_TUNE)
    config = json.loads((run / "config.json").read_text())
    assert FaceDataset.load(config["data"]).manifest.get("fingerprint", {}).get("id") == (tiny_fingerprint.id if mark_data else None)
    assert config["fingerprint"]["mark_data"] is mark_data
    export = json.loads((run / "export" / "config.json").read_text())
    record = export["fingerprint_loss"]
    assert record["mode"] == "tune" and record["tuned"] is True and record["fingerprint"] == tiny_fingerprint.id
    assert record["mark_data"] is mark_data and export["fingerprint"]["id"] == tiny_fingerprint.id  # images name it
    assert record["steps"] == 150 and record["consistency"] == 1.0 and record["batch_size"] == 8 and record["schedule"] == "cosine"
    tuned = load_generator(run)
    bits = tiny_fingerprint.bit_accuracy(tuned.sample(range(64))).mean()
    assert bits > 0.9, bits
    assert record["measured"]["bit_accuracy"] > 0.9 and record["measured"]["untuned_bit_accuracy"] < 0.75, record["measured"]
    # The checkpoint holds the trained generator, not the tuned one: the export's weights differ from it.
    state = torch.load(run / "checkpoints" / "state.pt", map_location="cpu", weights_only=False)
    trained = {name: value for name, value in state["G"].items()}
    differs = [name for name, value in tuned.module.state_dict().items() if not torch.equal(value, trained[name])]
    assert differs
    # No training was asked for: the tuned export stays as it is (not tuned a second time).
    before = _weights_hash(run)
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert _weights_hash(run) == before
    # Trained further: tuned again from the newly trained weights, recorded at the new kimg.
    assert main(["train", "--out", str(run), "--resume", "--kimg", "0.096", "--no-progress"]) == 0
    export = json.loads((run / "export" / "config.json").read_text())
    assert export["fingerprint_loss"]["tuned"] is True and export["kimg"] >= 0.096 and _weights_hash(run) != before


def test_a_stop_during_the_tune_leaves_the_untuned_export_and_resume_tunes_it(plain16, tiny_fingerprint, tiny_fingerprint_path, tmp_path):
    from facegan import train
    from facegan.training.config import resolve_config

    run = tmp_path / "run"
    calls = []

    def stop_after_training():  # the loop asks once per step (4 steps of 8 at 0.032 kimg); the tune asks after
        calls.append(1)
        return len(calls) > 4 + 20

    config = resolve_config("default", {"data": str(plain16.path), "out": str(run), "kimg": 0.032, "batch_size": 8,
                                        "model": {"g_channels": 16, "d_channels": 16, "min_channels": 8},
                                        "ema": {"enabled": False}, "runtime": {"tensorboard": False, "num_threads": 1},
                                        "fingerprint": {"path": str(tiny_fingerprint_path), "tune_steps": 150, "tune_lr": 0.003}})
    result = train(config, progress=False, should_stop=stop_after_training)
    assert result.interrupted and result.kimg >= 0.032
    untuned = json.loads((run / "export" / "config.json").read_text())
    # Trained on plain faces and not tuned: the export does not claim the fingerprint its faces do not carry.
    assert untuned["fingerprint_loss"]["tuned"] is False and "fingerprint" not in untuned
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    tuned = json.loads((run / "export" / "config.json").read_text())
    assert tuned["fingerprint_loss"]["tuned"] is True and tuned["fingerprint"]["id"] == tiny_fingerprint.id


def test_tune_leaves_the_original_alone_and_consistency_trades_bits_for_closeness(tmp_path, tiny_fingerprint, faces16):
    _train(faces16, tmp_path / "plain", kimg="0.032")
    generator = load_generator(tmp_path / "plain")
    original = {name: value.clone() for name, value in generator.module.state_dict().items()}
    results = {}
    for consistency in (1.0, 100.0):
        settings = TuneSettings(steps=120, consistency=consistency, lr=0.003, batch_size=8)
        tuned, record = tune_generator(generator.module, tiny_fingerprint, generator.z_dim, settings)
        results[consistency] = record["measured"]
    assert all(torch.equal(value, original[name]) for name, value in generator.module.state_dict().items())
    loose, tight = results[1.0], results[100.0]
    assert loose["bit_accuracy"] > 0.9 and loose["untuned_bit_accuracy"] < 0.75, loose
    assert tight["psnr_vs_untuned"] > loose["psnr_vs_untuned"] + 3 and tight["bit_accuracy"] < loose["bit_accuracy"], results
    # Deterministic: the same settings give the same weights; the schedule changes them.
    settings = TuneSettings(steps=20, consistency=10.0, lr=0.003, batch_size=8, seed=3)
    a, _ = tune_generator(generator.module, tiny_fingerprint, generator.z_dim, settings)
    b, _ = tune_generator(generator.module, tiny_fingerprint, generator.z_dim, settings)
    assert all(torch.equal(value, b.state_dict()[name]) for name, value in a.state_dict().items())
    constant, _ = tune_generator(generator.module, tiny_fingerprint, generator.z_dim, TuneSettings(**{**settings.__dict__, "schedule": "constant"}))
    assert any(not torch.equal(value, constant.state_dict()[name]) for name, value in a.state_dict().items())


def test_tune_mode_composes_with_dp_training_and_costs_no_epsilon(plain16, tiny_fingerprint, tiny_fingerprint_path, tiny_config, tmp_path):
    """The tune reads no image at all: a DP run's epsilon and accountant steps are those of the run without it."""
    from facegan import train
    from tests.privacy.helpers import private_config

    exports = {}
    for name, weight in (("with", 1.0), ("without", 0.0)):
        run = tmp_path / name
        config = private_config(tiny_config, plain16.path, run, kimg=0.064, noise_multiplier=1.0,
                                fingerprint={"path": str(tiny_fingerprint_path), "weight": weight, "tune_steps": 100, "tune_lr": 0.003,
                                             "tune_consistency": 1.0})
        result = train(config, progress=False)
        exports[name] = json.loads((run / "export" / "config.json").read_text())
        assert result.num_steps == exports[name]["dp"]["steps"] == 8
    assert exports["with"]["dp"] == exports["without"]["dp"] and exports["with"]["dp"]["epsilon"] > 0
    assert exports["with"]["fingerprint_loss"]["tuned"] is True and "fingerprint_loss" not in exports["without"]
    bits = tiny_fingerprint.bit_accuracy(load_generator(tmp_path / "with").sample(range(64))).mean()
    assert bits > 0.85, bits


def test_embed_marks_any_generator_and_records_it(faces16, tiny_fingerprint, tiny_fingerprint_path, tmp_path, capsys):
    plain = tmp_path / "plain"
    _train(faces16, plain, kimg="0.032")
    before = _weights_hash(plain)
    out = tmp_path / "marked"
    assert main(["fingerprint", "embed", str(plain), "--fingerprint", str(tiny_fingerprint_path), "--out", str(out),
                 "--steps", "150", "--lr", "0.003", "--consistency", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "written:" in printed and "PSNR" in printed
    assert _weights_hash(plain) == before  # the original is left as it is
    marked = load_generator(out)
    assert marked.fingerprint_id == tiny_fingerprint.id
    record = marked.metadata["fingerprint_embed"]
    assert record["source_export"] == "sha256:" + before and record["source_fingerprint"] is None and record["steps"] == 150
    assert tiny_fingerprint.bit_accuracy(marked.sample(range(64))).mean() > 0.9
    assert tiny_fingerprint.bit_accuracy(load_generator(plain).sample(range(64))).mean() < 0.75
    # What it writes names the fingerprint in its provenance.
    assert main(["sample", str(out), "--seeds", "0", "--out-dir", str(tmp_path / "fakes")]) == 0
    from facegan.provenance.inspect import read_provenance

    assert read_provenance(tmp_path / "fakes" / "seed00000.png")["xmp"]["fingerprint"] == tiny_fingerprint.id


def test_embed_bad_input_is_one_line(faces16, tiny_fingerprint_path, tmp_path):
    plain = tmp_path / "plain"
    _train(faces16, plain, kimg="0.016")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    from facegan.fingerprint import FingerprintConfig, train_fingerprint
    from tests.fingerprint.conftest import TINY_CODEC

    rgb = np.random.default_rng(0).integers(0, 255, size=(24, 16, 16, 3), dtype=np.uint8)
    rgb_data = FaceDataset(rgb, {"source": "noise", "resolution": 16, "channels": 3}).save(tmp_path / "rgb")
    rgb_fp = tmp_path / "fp-rgb"
    train_fingerprint(rgb_data, rgb_fp, FingerprintConfig(**{**TINY_CODEC, "steps": 2}), seed=0)
    base = ["fingerprint", "embed", str(plain), "--fingerprint", str(tiny_fingerprint_path), "--no-progress"]
    cases = [
        ([*base, "--out", str(full)], "is not empty"),
        ([*base, "--out", str(a_file)], "is a file"),
        ([*base, "--out", str(link)], "symbolic link"),
        ([*base, "--out", str(plain / "export")], "is not empty"),
        ([*base, "--out", str(tmp_path / "n"), "--steps", "0"], "--steps"),
        ([*base, "--out", str(tmp_path / "n"), "--steps", "many"], "--steps"),
        ([*base, "--out", str(tmp_path / "n"), "--consistency", "nan"], "--consistency"),
        ([*base, "--out", str(tmp_path / "n"), "--consistency", "-1"], "--consistency"),
        ([*base, "--out", str(tmp_path / "n"), "--lr", "0"], "--lr must be above 0"),
        ([*base, "--out", str(tmp_path / "n"), "--lr", "inf"], "--lr"),
        ([*base, "--out", str(tmp_path / "n"), "--batch-size", "0"], "--batch-size"),
        ([*base, "--out", str(tmp_path / "n"), "--schedule", "linear"], "--schedule"),
        ([*base, "--out", str(tmp_path / "n"), "--device", "tpu9"], "device"),
        (["fingerprint", "embed", str(tmp_path / "nothing"), "--fingerprint", str(tiny_fingerprint_path), "--out", str(tmp_path / "n")],
         "nothing"),
        (["fingerprint", "embed", str(plain), "--fingerprint", str(rgb_fp), "--out", str(tmp_path / "n")], "3-channel"),
        (["fingerprint", "embed", str(plain), "--fingerprint", str(faces16), "--out", str(tmp_path / "n")], "not a fingerprint"),
    ]
    for argv, expected in cases:
        process = subprocess.run([sys.executable, "-m", "facegan", *argv], capture_output=True, text=True, timeout=120)
        lines = process.stderr.strip().splitlines()
        assert process.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], (argv, process.stderr)
    assert (full / "keep.txt").read_text() == "mine" and not (tmp_path / "n").exists()


def test_embed_writes_a_whole_export_or_nothing(faces16, tmp_path):
    """The export is written beside --out and renamed into place; a folder filled meanwhile is left as it is."""
    from facegan.cli.fingerprint import _write_embedded
    from facegan.errors import FaceganError

    _train(faces16, tmp_path / "plain", kimg="0.016")
    generator = load_generator(tmp_path / "plain")
    metadata = {"preset": "default"}
    empty = tmp_path / "empty"
    empty.mkdir()
    _write_embedded(empty, generator.module, generator.config, metadata)
    assert load_generator(empty).metadata["preset"] == "default"
    filled = tmp_path / "filled"
    filled.mkdir()
    (filled / "theirs.txt").write_text("theirs")
    with pytest.raises(FaceganError, match="filled by something else"):
        _write_embedded(filled, generator.module, generator.config, metadata)
    assert sorted(p.name for p in filled.iterdir()) == ["theirs.txt"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
