"""End to end through the CLI: prepare -> train -> export -> sample -> interpolate -> resume -> identical continuation."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from facegan.cli.main import main

TINY = ["--batch-size", "8", "--no-progress", "--set", "model.g_channels=16", "--set", "model.d_channels=16", "--set", "model.min_channels=8",
        "--set", "schedule.log_kimg=0.016", "--set", "schedule.checkpoint_kimg=0.032", "--set", "schedule.snapshot_kimg=0.032",
        "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1"]


def _weights(run):
    return load_file(str(run / "export" / "model.safetensors"))


def test_prepare_train_sample_resume(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "prepare", "builtin:lfw-subset", str(data), "--size", "16", "--no-progress"]) == 0
    assert main(["data", "info", str(data)]) == 0
    assert "100 x 16x16x1" in capsys.readouterr().out

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "--data", str(data), "--out", str(straight), "--kimg", "0.064", *TINY]) == 0
    assert main(["train", "--data", str(data), "--out", str(split), "--kimg", "0.032", *TINY]) == 0
    # Resume needs only the run folder; the saved config supplies the rest.
    assert main(["train", "--out", str(split), "--resume", "--kimg", "0.064", "--no-progress"]) == 0
    a, b = _weights(straight), _weights(split)
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)

    assert main(["sample", str(split), "--seeds", "0-7", "--grid", str(tmp_path / "grid.png"), "--out-dir", str(tmp_path / "png")]) == 0
    assert main(["sample", str(split / "export"), "--seeds", "5", "--out-dir", str(tmp_path / "again")]) == 0
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[0] > 16 and grid.shape[1] > 16
    one = np.asarray(Image.open(tmp_path / "png" / "seed00005.png"))
    assert np.array_equal(one, np.asarray(Image.open(tmp_path / "again" / "seed00005.png")))  # same seed, same face
    assert one.shape == (16, 16)

    assert main(["interpolate", str(split), "--seeds", "3,7", "--steps", "5", "--out", str(tmp_path / "strip.png")]) == 0
    strip = np.asarray(Image.open(tmp_path / "strip.png"))
    assert strip.shape[1] == 5 * (16 + 2) + 2

    assert main(["report", str(split)]) == 0
    assert (split / "report.html").is_file()

    config = json.loads((split / "export" / "config.json").read_text())
    assert config["dataset_hash"] == json.loads((data / "manifest.json").read_text())["content_hash"]


@pytest.mark.parametrize("argv, message", [
    (["data", "prepare", "/no/such/folder", "OUT"], "error: "),
    (["train", "--data", "/no/such/data", "--out", "x"], "dataset not found"),
    (["sample", "/no/such/run", "--grid", "g.png"], "no such run or export"),
    (["train", "--data", "d", "--out", "x", "--set", "model.colour=1"], "unknown config key"),
    (["train", "--data", "d", "--out", "x", "--kimg", "-5"], "kimg must be positive"),
])
def test_user_errors_are_one_line_with_status_2(argv, message, tmp_path):
    process = subprocess.run([sys.executable, "-m", "facegan", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], process.stderr
    assert "Traceback" not in process.stderr


def test_dry_run_prints_the_resolved_config(tmp_path, capsys):
    assert main(["train", "--data", "d", "--out", str(tmp_path / "x"), "--preset", "seed-dcgan", "--dry-run", "--set", "kimg=7"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["model"]["architecture"] == "dcgan" and config["kimg"] == 7 and config["optimizer"]["lr_g"] == 1e-4
    assert not (tmp_path / "x").exists()  # nothing written
