"""facegan.run: the lock on a run folder, and which folders a run may be trained into."""
import os
import subprocess
import sys

import pytest

from facegan.errors import FaceganError
from facegan.run import Run, RunLock


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    with Run(tmp_path / "run").lock():
        with pytest.raises(FaceganError, match=rf"in use by another facegan process \(pid {os.getpid()}\)"):
            RunLock(tmp_path / "run" / ".lock").acquire()
    RunLock(tmp_path / "run" / ".lock").acquire().release()  # released: free again


def test_a_lock_left_by_a_killed_process_is_not_in_the_way(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from facegan.run import Run; lock = Run(sys.argv[1]).lock().acquire(); print('held', flush=True); time.sleep(60)"),
        str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FaceganError, match=f"pid {holder.pid}"):
        Run(tmp_path / "run").lock().acquire()
    holder.kill()
    holder.wait()
    lock = Run(tmp_path / "run").lock().acquire()  # the kernel dropped the dead holder's flock
    assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())
    lock.release()


def test_lock_in_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FaceganError, match="cannot write to the run folder .*choose another --out"):
        Run(tmp_path / "file" / "run").lock().acquire()


def test_lock_in_a_read_only_folder_is_one_line(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(FaceganError, match=r"cannot write to the run folder .* \(Permission denied\)"):
        Run(tmp_path / "run").lock().acquire()


def test_train_targets(tmp_path, monkeypatch):
    Run(tmp_path / "new").check_can_train_into()  # missing: fine
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / ".lock").write_text("1")
    (run / "my-samples").mkdir()
    Run(run).check_can_train_into()  # a run, even with the user's extras: fine (refused or resumed later, by its contents)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FaceganError, match="is a file, not a folder"):
        Run(tmp_path / "file").check_can_train_into()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(FaceganError, match="not part of a facegan run"):
        Run(tmp_path / "mine").check_can_train_into()
    monkeypatch.chdir(tmp_path / "mine")
    with pytest.raises(FaceganError, match="the current folder already holds files"):
        Run(".").check_can_train_into()
