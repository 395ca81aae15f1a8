"""Ctrl-C saves and exits cleanly; SIGKILL at any moment leaves a resumable run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from facegan.training.loop import train


# Run by the child before `facegan train`: the second time state.pt is about to be replaced, the complete
# temporary file is on disk but not yet renamed; announce it and hang there, so a kill lands mid-write.
_PAUSE_BEFORE_SECOND_RENAME = """
import os, pathlib, sys, time
real_replace = os.replace
def replace(source, target, *args, **kwargs):
    target = pathlib.Path(target)
    if target.name == "state.pt" and target.exists():
        (target.parent.parent / "mid-write").touch()
        time.sleep(600)
    return real_replace(source, target, *args, **kwargs)
os.replace = replace
from facegan.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _start(data, out, kimg, extra=(), pause_mid_write=False):
    entry = ["-c", _PAUSE_BEFORE_SECOND_RENAME] if pause_mid_write else ["-m", "facegan"]
    command = [sys.executable, *entry, "train", "--data", str(data), "--out", str(out), "--kimg", str(kimg), "--no-progress",
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


def _resume_past(run, faces16, tiny_config):
    """Resume the killed run 0.032 kimg beyond its checkpoint; returns (images in the checkpoint, result)."""
    import torch

    seen = torch.load(run / "checkpoints" / "state.pt", weights_only=True)["num_images_seen"]
    config = tiny_config(faces16, run, kimg=seen / 1000 + 0.032,
                         schedule={"log_kimg": 0.016, "snapshot_kimg": 0.032, "checkpoint_kimg": 0.016, "num_snapshot_images": 64})
    return seen, train(config, resume=True, progress=False)


@pytest.mark.slow
def test_sigkill_at_any_moment_resumes_from_the_last_checkpoint(faces16, tiny_config, tmp_path):
    run = tmp_path / "run"
    process = _start(faces16, run, kimg=50)
    _wait_for(run / "checkpoints" / "state.pt")
    time.sleep(0.5)  # land somewhere inside later steps, possibly mid-write
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name != "state.pt"]
    assert all(name.startswith(".state.pt.tmp") for name in leftovers)  # only an abandoned temp file, never a torn state.pt
    seen, result = _resume_past(run, faces16, tiny_config)
    assert seen > 0 and result.kimg == pytest.approx(seen / 1000 + 0.032)


@pytest.mark.slow
def test_sigkill_between_checkpoint_write_and_rename_keeps_the_previous_checkpoint(faces16, tiny_config, tmp_path):
    import facegan

    run = tmp_path / "run"
    process = _start(faces16, run, kimg=50, pause_mid_write=True)
    _wait_for(run / "mid-write")  # the second checkpoint (32 images) is written to its temp file, not renamed
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name != "state.pt"]
    assert leftovers == [f".state.pt.tmp-{process.pid}"]  # the kill did land mid-write
    seen, result = _resume_past(run, faces16, tiny_config)
    assert seen == 16  # the first checkpoint, whole
    assert result.kimg == pytest.approx(0.048) and facegan.load_generator(run).sample([0]).shape == (1, 16, 16, 1)


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
