"""What a writer killed with SIGKILL leaves (a hidden staging folder) is removed by the next write of the same target,
and nothing of a live writer, of another machine or of another target is ever touched."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from facegan import files
from facegan.data.dataset import FaceDataset


def killed_staging(target, kind: str):
    """A real writer killed with SIGKILL right after it created its staging folder; returns that folder."""
    code = ("import os, signal, sys; from facegan.files import staging_sibling; "
            "folder = staging_sibling(sys.argv[1], sys.argv[2]); os.mkdir(folder); (folder / 'half').write_bytes(b'x' * 1000); "
            "print(folder, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    result = subprocess.run([sys.executable, "-c", code, str(target), kind], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL
    folder = result.stdout.strip()
    assert os.path.isdir(folder)
    return folder


@pytest.fixture
def live_writer():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process.pid
    process.kill()
    process.wait()


def test_only_dead_writers_of_this_host_target_and_kind_are_stale(tmp_path, live_writer):
    target = tmp_path / "faces"
    dead = killed_staging(target, "tmp")
    live = target.with_name(f".faces.tmp-{files._host_tag()}-{live_writer}-0123abcd")
    mine = files.staging_sibling(target, "tmp")
    other_host = target.with_name(f".faces.tmp-{'0' * 12 if files._host_tag() != '0' * 12 else '1' * 12}-999999-0123abcd")
    other_kind = killed_staging(target, "old")
    other_target = killed_staging(tmp_path / "faces2", "tmp")
    for folder in (live, mine, other_host):
        os.mkdir(folder)
    as_file = target.with_name(f".faces.tmp-{files._host_tag()}-999998-0123abcd")
    as_file.write_bytes(b"a user's file")
    as_link = target.with_name(f".faces.tmp-{files._host_tag()}-999997-0123abcd")
    as_link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    assert [str(path) for path in files.stale_siblings(target, "tmp")] == [dead]
    assert files.remove_stale_siblings(target, "tmp") == [target.with_name(os.path.basename(dead))]
    assert not os.path.exists(dead)
    for kept in (live, mine, other_host, other_kind, other_target, as_file, as_link, tmp_path / "elsewhere"):
        assert os.path.lexists(kept), kept


def test_hosts_whose_names_share_a_prefix_or_differ_in_punctuation_get_different_tags(monkeypatch):
    import socket

    tags = set()
    for name in ("gpu-node-cluster-a01", "gpu-node-cluster-a02", "a.b", "ab"):
        monkeypatch.setattr(socket, "gethostname", lambda name=name: name)
        tags.add(files._host_tag())
    assert len(tags) == 4


def test_a_dataset_save_removes_what_a_killed_save_of_the_same_folder_left(tmp_path):
    target = tmp_path / "data" / "faces"
    target.parent.mkdir()
    half_written, set_aside = killed_staging(target, "tmp"), killed_staging(target, "old")
    FaceDataset(np.zeros((3, 8, 8, 1), np.uint8), {"source": "test"}).save(target)
    assert sorted(os.listdir(target.parent)) == ["faces"]
    assert not os.path.exists(half_written) and not os.path.exists(set_aside)


def test_a_new_server_work_folder_removes_those_of_killed_servers(tmp_path, monkeypatch):
    from facegan.web.actions import new_work_dir

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    killed = killed_staging(tmp_path / "facegan-serve", "work")
    folder = new_work_dir()
    assert folder.parent == tmp_path and folder.name.startswith(".facegan-serve.work-") and oct(folder.stat().st_mode & 0o777) == "0o700"
    assert not os.path.exists(killed)


def test_training_removes_the_half_written_checkpoint_of_a_killed_run_and_nothing_else(tmp_path, live_writer):
    """kill -9 during a checkpoint write leaves `.state.pt.tmp-PID`; the next run on that folder (holding its lock) removes it."""
    from facegan.recognition.training import train_recogniser
    from facegan.run import Run
    from tests.recognition.identities import save_identity_dataset
    from tests.recognition.tiny import config_for

    data = save_identity_dataset(tmp_path / "shapes", num_identities=4, per_identity=4)
    train_recogniser(config_for(data, tmp_path / "run", steps=2))
    checkpoints = Run(tmp_path / "run").state_path.parent
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = checkpoints / f".state.pt.tmp-{dead}"
    stale_export = Run(tmp_path / "run").export_dir / f".model.safetensors.tmp-{dead}-0123abcd"
    live = checkpoints / f".state.pt.tmp-{live_writer}"
    link = checkpoints / f".notes.tmp-{dead}"
    for path in (stale, stale_export, live):
        path.write_bytes(b"half a checkpoint")
    link.symlink_to(tmp_path / "shapes")
    user_file = checkpoints / "my.tmp-notes.txt"
    user_file.write_text("mine")
    train_recogniser(config_for(data, tmp_path / "run", steps=3), resume=True)
    assert not stale.exists() and not stale_export.exists()
    assert live.exists() and link.is_symlink() and user_file.read_text() == "mine"
