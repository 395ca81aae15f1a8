"""Hostile and unlucky `facegan train` runs: one `error:` line and a clear exit code, never a traceback."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

TINY = ["--batch-size", "8", "--no-progress", "--set", "model.g_channels=16", "--set", "model.d_channels=16", "--set", "model.min_channels=8",
        "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1", "--set", "schedule.num_snapshot_images=4",
        "--set", "schedule.log_kimg=0.016", "--set", "schedule.checkpoint_kimg=0.016"]


def _facegan(*args):
    return [sys.executable, "-m", "facegan", *map(str, args)]


def _run(*args, cwd=None, timeout=120):
    return subprocess.run(_facegan(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _one_error_line(process):
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), process.stderr
    return lines[0]


def _wait_for(path, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_second_train_into_a_busy_run_exits_2_naming_the_holder_and_a_killed_holder_is_not_in_the_way(faces16, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(_facegan("train", "--data", faces16, "--out", run, "--kimg", 50, *TINY), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "checkpoints" / "state.pt")
        first.send_signal(signal.SIGSTOP)  # frozen: its files stay still while we look
        before = _snapshot(run)
        second = _run("train", "--data", faces16, "--out", run, "--kimg", 50, *TINY)
        assert second.returncode == 2
        assert f"in use by another facegan process (pid {first.pid})" in _one_error_line(second)
        resumed = _run("train", "--out", run, "--resume", "--kimg", 50, *TINY)
        assert resumed.returncode == 2 and f"pid {first.pid}" in _one_error_line(resumed)
        assert _snapshot(run) == before  # the refused processes touched nothing
    finally:
        first.kill()
        first.wait()
    seen = torch.load(run / "checkpoints" / "state.pt", weights_only=True)["num_images_seen"]
    again = _run("train", "--out", run, "--resume", "--kimg", seen / 1000 + 0.016, *TINY)
    assert again.returncode == 0, again.stderr


def test_out_that_is_a_file_is_one_line(faces16, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    process = _run("train", "--data", faces16, "--out", tmp_path / "notes.txt", *TINY)
    assert process.returncode == 2 and "is a file, not a folder" in _one_error_line(process)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_dot_in_a_folder_with_other_files_is_one_line(faces16, tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    process = _run("train", "--data", faces16, "--out", ".", *TINY, cwd=tmp_path)
    assert process.returncode == 2 and "the current folder already holds files" in _one_error_line(process)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (see test_train_into_an_unwritable_folder_in_process)")
def test_train_into_a_read_only_folder_is_one_line_before_any_work(faces16, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        process = _run("train", "--data", faces16, "--out", folder / "run", *TINY)
    finally:
        folder.chmod(0o755)
    assert process.returncode == 2 and "cannot write to the run folder" in _one_error_line(process)


def test_train_into_an_unwritable_folder_in_process(faces16, tmp_path, monkeypatch, capsys):
    import builtins

    from facegan.cli.main import main

    real_open = builtins.open
    loads = []

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "run")):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    monkeypatch.setattr("facegan.data.dataset.FaceDataset.load", lambda *a, **k: loads.append(a))
    code = main(["train", "--data", str(faces16), "--out", str(tmp_path / "run"), *TINY])
    assert code == 2 and not loads  # refused before the dataset is even read
    assert capsys.readouterr().err.strip() == f"error: cannot write to the run folder {tmp_path / 'run'} (Permission denied); choose another --out"


def test_kimg_nan_is_refused_and_leaves_nothing(faces16, tmp_path):
    process = _run("train", "--data", faces16, "--out", tmp_path / "run", "--kimg", "nan", *TINY)
    assert process.returncode == 2 and "kimg" in _one_error_line(process)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value, message", [
    ("num_images_seen", torch.tensor(5), "'num_images_seen' should be int, found a () tensor"),
    ("rng_noise", None, "'rng_noise' is missing"),
    ("data_order", [1, 2], "'data_order' should be Tensor, found list"),
    ("G", {"conv.weight": 3}, "'G.conv.weight' should be a tensor"),
])
def test_damaged_checkpoint_fields_are_one_line(faces16, tiny_config, tmp_path, field, value, message):
    from facegan.training.loop import train

    run = tmp_path / "run"
    train(tiny_config(faces16, run, kimg=0.016))
    path = run / "checkpoints" / "state.pt"
    state = torch.load(path, weights_only=True)
    if value is None:
        del state[field]
    else:
        state[field] = value
    torch.save(state, path)
    process = _run("train", "--out", run, "--resume", "--kimg", 0.032, *TINY)
    assert process.returncode == 2
    line = _one_error_line(process)
    assert "is damaged" in line and message in line


def test_broken_pipe_exits_quietly(faces16):
    process = subprocess.run(["bash", "-c", f"'{sys.executable}' -m facegan data info '{faces16}' | true; echo ${{PIPESTATUS[0]}}"],
                             capture_output=True, text=True, timeout=60)
    assert process.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert process.stdout.strip() == "141"  # 128 + SIGPIPE, as a Unix tool killed by the closed pipe


def test_a_multi_line_user_error_prints_one_line(monkeypatch, capsys):
    from facegan.cli import main as cli_main
    from facegan.cli import train as cli_train
    from facegan.errors import FaceganError

    def broken(args):
        raise FaceganError("first part\nsecond part")

    monkeypatch.setattr(cli_train, "run", broken)
    assert cli_main.main(["train", "--out", "x"]) == 2
    assert capsys.readouterr().err == "error: first part second part\n"


def test_progress_bar_never_runs_past_its_total():
    import warnings

    from facegan.cli.progress import _ProgressBar

    bar = _ProgressBar(enabled=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm's "clamping frac" is a TqdmWarning
        bar.update(0.0, 1.0)
        for step in range(1, 80):
            bar.update(step * 0.0129, 1.0)  # DP-like steps that overshoot the kimg target at the end
        assert bar.bar.n == bar.bar.total == 1000
        bar.close()  # n == total: the ETA is 0, never negative


def test_resume_without_data_from_another_folder_uses_the_stored_dataset(faces16, tmp_path, monkeypatch, capsys):
    import shutil

    from facegan.cli.main import main

    work = tmp_path / "work"
    shutil.copytree(faces16, work / "faces16")
    monkeypatch.chdir(work)
    assert main(["train", "--data", "faces16/", "--out", "runs/a", "--kimg", "0.016", *TINY]) == 0  # relative, trailing slash
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "work/runs/a", "--resume", "--kimg", "0.032", *TINY]) == 0
    assert "finished 0.0 kimg" in capsys.readouterr().out
    assert json.loads((work / "runs" / "a" / "summary.json").read_text())["kimg"] == 0.032
