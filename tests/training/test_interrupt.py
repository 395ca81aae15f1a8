"""Ctrl-C saves and exits cleanly; SIGKILL at any moment leaves a resumable run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from facegan.training.loop import train


def _start(data, out, kimg, extra=()):
    command = [sys.executable, "-m", "facegan", "train", "--data", str(data), "--out", str(out), "--kimg", str(kimg), "--no-progress",
               "--batch-size", "8", "--set", "model.g_channels=16", "--set", "model.d_channels=16", "--set", "model.min_channels=8",
               "--set", "schedule.checkpoint_kimg=0.016", "--set", "schedule.log_kimg=0.016", "--set", "runtime.tensorboard=false",
               "--set", "runtime.num_threads=1", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(faces16, tmp_path):
    run = tmp_path / "run"
    process = _start(faces16, run, kimg=50)
    _wait_for(run / "checkpoints" / "state.pt")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr  # the shell's convention for Ctrl-C, after the clean stop
    assert "interrupted at" in stdout and "--resume" in stdout
    assert "Traceback" not in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and 0 < summary["kimg"] < 50


@pytest.mark.slow
def test_sigkill_at_any_moment_resumes_from_the_last_checkpoint(faces16, tiny_config, tmp_path):
    run = tmp_path / "run"
    process = _start(faces16, run, kimg=50)
    _wait_for(run / "checkpoints" / "state.pt")
    time.sleep(0.5)  # land somewhere inside later steps, possibly mid-write
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name != "state.pt"]
    config = tiny_config(faces16, run, kimg=0.064, schedule={"log_kimg": 0.016, "snapshot_kimg": 0.032, "checkpoint_kimg": 0.016, "num_snapshot_images": 64})
    # The killed run may have passed 0.064 kimg already; resume with a target beyond its checkpoint.
    import torch

    seen = torch.load(run / "checkpoints" / "state.pt", weights_only=True)["num_images_seen"]
    config.kimg = seen / 1000 + 0.032
    result = train(config, resume=True, progress=False)
    assert result.kimg == pytest.approx(seen / 1000 + 0.032)
    assert all(name.startswith(".state.pt.tmp") for name in leftovers)  # only an abandoned temp file, never a torn state.pt


@pytest.mark.slow
def test_sigterm_also_stops_cleanly(faces16, tmp_path):
    run = tmp_path / "run"
    process = _start(faces16, run, kimg=50)
    _wait_for(run / "checkpoints" / "state.pt")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "resume with" in stdout
    assert json.loads((run / "summary.json").read_text())["interrupted"]


@pytest.mark.slow
def test_sigkill_before_the_first_checkpoint_leaves_a_run_that_resumes(faces16, tmp_path):
    run = tmp_path / "run"
    process = _start(faces16, run, kimg=50, extra=("--set", "schedule.checkpoint_kimg=40", "--set", "schedule.checkpoint_minutes=0"))
    _wait_for(run / "stats.jsonl")  # training has started, no checkpoint yet
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not (run / "checkpoints" / "state.pt").exists()
    again = subprocess.run([sys.executable, "-m", "facegan", "train", "--out", str(run), "--resume", "--kimg", "0.016", "--no-progress"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "no checkpoint yet" in again.stdout and "from the beginning" in again.stdout
    assert (run / "checkpoints" / "state.pt").is_file()
    lines = [json.loads(line)["kimg"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert lines == [0.016]  # the killed attempt's lines were dropped
