"""Hostile targets for facegan.files: links, devices, FIFOs, folders, full disks, read-only folders."""
from __future__ import annotations

import errno
import os
import stat
import time

import pytest

from facegan import files
from facegan.errors import FaceganError
from facegan.files import ReadRefused, check_writable_target, read_regular_file, write_bytes_atomic


def _leftovers(folder):
    return sorted(name for name in os.listdir(folder) if ".tmp-" in name)


def test_atomic_write_refuses_a_symlink_target(tmp_path):
    real = tmp_path / "real.png"
    real.write_bytes(b"original")
    link = tmp_path / "grid.png"
    link.symlink_to(real)
    with pytest.raises(FaceganError, match="symbolic link"):
        write_bytes_atomic(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"original"


def test_atomic_write_refuses_a_fifo_target(tmp_path):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    with pytest.raises(FaceganError, match="FIFO"):
        write_bytes_atomic(fifo, b"{}")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and _leftovers(tmp_path) == []


def test_atomic_write_refuses_a_device_target(tmp_path):
    node = tmp_path / "full"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # the same device as /dev/full
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    with pytest.raises(FaceganError, match="device"):
        write_bytes_atomic(node, b"x")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_atomic_write_refuses_a_folder_target(tmp_path):
    (tmp_path / "grid.png").mkdir()
    with pytest.raises(FaceganError, match="is a folder"):
        write_bytes_atomic(tmp_path / "grid.png", b"x")


def test_atomic_write_on_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", no_space)
    target = tmp_path / "stats.json"
    with pytest.raises(FaceganError) as error:
        write_bytes_atomic(target, b"{}")
    assert str(error.value) == f"cannot write {target}: No space left on device"
    assert os.listdir(tmp_path) == []


def test_atomic_write_respects_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "a.json", b"{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o640


def test_check_writable_target_refuses_a_path_under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FaceganError, match="is a file"):
        check_writable_target(tmp_path / "notes.txt" / "out.png", "grid")


def test_check_writable_target_refuses_a_read_only_folder(tmp_path, monkeypatch):
    # os.access is what decides (root may write anywhere), so mock it to be a read-only folder.
    monkeypatch.setattr(files.os, "access", lambda path, mode: False)
    with pytest.raises(FaceganError, match="not writable"):
        check_writable_target(tmp_path / "out.png", "grid")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_target_refuses_a_real_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(FaceganError, match="not writable"):
        check_writable_target(folder / "out.png")


def test_read_regular_file_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ReadRefused) as error:
        read_regular_file(fifo, 1 << 20)
    assert error.value.reason == "not_a_regular_file" and time.monotonic() - started < 5


def test_read_regular_file_refuses_a_link_to_a_device(tmp_path):
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    with pytest.raises(ReadRefused) as error:
        read_regular_file(tmp_path / "zero.jpg", 1 << 20)
    assert error.value.reason == "not_a_regular_file"


def test_read_regular_file_checks_the_size_before_reading(tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as handle:
        handle.truncate(8 << 30)  # sparse: no disk used
    with pytest.raises(ReadRefused) as error:
        read_regular_file(big, 256 << 20)
    assert error.value.reason == "too_large"
    (tmp_path / "small.jpg").write_bytes(b"abc")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "small.jpg")  # a link to a regular file is fine
    assert read_regular_file(tmp_path / "link.jpg", 3) == b"abc"


def test_output_folder_entries_names_what_an_output_folder_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert files.output_folder_entries("new", "the export") == (tmp_path / "new", [])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert files.output_folder_entries("full/../full", "the export") == (tmp_path / "full", ["keep.txt"])
    assert files.output_folder_entries(".", "the export")[0] == tmp_path
    (tmp_path / "link").symlink_to(tmp_path / "full")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("x")
    for given, message in (("link", "symbolic link"), ("dangling", "symbolic link"), ("a-file", "is a file, not a folder")):
        with pytest.raises(FaceganError, match=message):
            files.output_folder_entries(given, "the export")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
