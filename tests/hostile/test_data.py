"""Hostile and careless input to `facegan data prepare|info|split`: each ends in correct work or one
`error:` line with exit status 2, and never loses a user's file, hangs or reads a device."""
from __future__ import annotations

import io
import json
import math
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegan.cli.main import main
from facegan.data import prepare_dataset
from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError

import facegan

SRC = str(Path(facegan.__file__).resolve().parents[1])  # the facegan under test, for child processes


def _jpeg(seed: int = 0, size: int = 48) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _damaged_jpeg() -> bytes:
    """A JPEG with garbage before its end marker: Pillow decodes it silently, libjpeg warns
    "Corrupt JPEG data: 3 extraneous bytes before marker 0xd9"."""
    data = _jpeg(seed=5)
    end = data.rfind(b"\xff\xd9")
    return data[:end] + b"\x00\x01\x02" + data[end:]


def _photos(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"photo{index}.jpg").write_bytes(_jpeg(index))
    return folder


def _small_dataset(path: Path) -> Path:
    FaceDataset(np.zeros((4, 8, 8, 1), np.uint8), {"paths": [f"p{i}" for i in range(4)]}).save(path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _cli_subprocess(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """The CLI in a child process, so a hang fails the test instead of stalling the suite."""
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "facegan", *args], capture_output=True, text=True, timeout=timeout, env=env)


# ---- item 1: data loss ----------------------------------------------------------------------
def test_prepare_refuses_source_inside_output(tmp_path, capsys):
    out = _small_dataset(tmp_path / "faces")
    photos = _photos(out / "my_photos")
    assert main(["data", "prepare", str(photos), str(out), "--no-progress"]) == 2
    assert "my_photos" in _one_error_line(capsys)
    assert sorted(os.listdir(photos)) == ["photo0.jpg", "photo1.jpg", "photo2.jpg"]


def test_prepare_refuses_output_inside_source(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    assert main(["data", "prepare", str(photos), str(photos / "dataset"), "--no-progress"]) == 2
    assert "inside" in _one_error_line(capsys) and not (photos / "dataset").exists()


def test_prepare_never_replaces_a_folder_with_a_foreign_manifest(tmp_path, capsys):
    app = tmp_path / "webapp"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my web app", "icons": []}')
    (app / "index.html").write_text("<html></html>")
    assert main(["data", "prepare", "builtin:lfw-subset", str(app), "--size", "8", "--no-progress"]) == 2
    _one_error_line(capsys)
    assert sorted(os.listdir(app)) == ["index.html", "manifest.json"]


def test_prepare_refuses_a_dataset_folder_that_also_holds_user_files(tmp_path, capsys):
    out = _small_dataset(tmp_path / "faces")
    (out / "notes.txt").write_text("mine")
    assert main(["data", "prepare", "builtin:lfw-subset", str(out), "--size", "8", "--no-progress"]) == 2
    assert "notes.txt" in _one_error_line(capsys)
    assert (out / "notes.txt").read_text() == "mine" and len(FaceDataset.load(out)) == 4


def test_prepare_still_replaces_its_own_dataset(tmp_path):
    out = _small_dataset(tmp_path / "faces")
    assert main(["data", "prepare", "builtin:lfw-subset", str(out), "--size", "8", "--no-progress"]) == 0
    assert len(FaceDataset.load(out)) == 100


def test_split_refuses_the_same_train_and_holdout_folder(tmp_path, capsys):
    dataset = _small_dataset(tmp_path / "faces")
    same = str(tmp_path / "x")
    assert main(["data", "split", str(dataset), "--train-out", same, "--holdout-out", same]) == 2
    _one_error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_split_refuses_outputs_inside_the_input(tmp_path, capsys):
    dataset = _small_dataset(tmp_path / "faces")
    assert main(["data", "split", str(dataset), "--train-out", str(dataset / "train")]) == 2
    _one_error_line(capsys)
    assert sorted(os.listdir(dataset)) == ["images.npy", "manifest.json"]


# ---- item 3: FIFOs, devices, huge files ------------------------------------------------------
def _prepare_in_child(source: Path, out: Path) -> dict:
    result = _cli_subprocess("data", "prepare", str(source), str(out), "--size", "8", "--workers", "1", "--no-progress", timeout=90)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "manifest.json").read_text())


def test_prepare_skips_a_fifo_instead_of_hanging(tmp_path):
    source = _photos(tmp_path / "photos", 2)
    os.mkfifo(source / "pipe.jpg")
    manifest = _prepare_in_child(source, tmp_path / "out")
    assert manifest["num_images"] == 2 and manifest["skipped"] == {"not_a_regular_file": 1}


def test_prepare_skips_a_link_to_dev_zero_unread(tmp_path):
    source = _photos(tmp_path / "photos", 2)
    (source / "zero.jpg").symlink_to("/dev/zero")
    manifest = _prepare_in_child(source, tmp_path / "out")
    assert manifest["num_images"] == 2 and manifest["skipped"] == {"not_a_regular_file": 1}


def test_prepare_skips_an_8_gib_file_without_reading_it(tmp_path):
    source = _photos(tmp_path / "photos", 2)
    with open(source / "huge.jpg", "wb") as handle:
        handle.truncate(8 << 30)  # sparse: no disk used, but read whole it would need 8 GiB of memory
    manifest = _prepare_in_child(source, tmp_path / "out")
    assert manifest["num_images"] == 2 and manifest["skipped"] == {"too_large": 1}


# ---- item 4: damaged JPEGs -------------------------------------------------------------------
def test_prepare_skips_damaged_jpegs_by_default(tmp_path):
    source = _photos(tmp_path / "photos", 2)
    (source / "damaged.jpg").write_bytes(_damaged_jpeg())
    dataset = prepare_dataset(source, tmp_path / "out", size=8, progress=False)
    assert len(dataset) == 2 and dataset.manifest["skipped"] == {"damaged": 1}
    detail = dataset.manifest["skipped_files"][0]["detail"]
    assert "Corrupt JPEG data" in detail


def test_keep_damaged_keeps_and_lists_them(tmp_path, capsys):
    source = _photos(tmp_path / "photos", 2)
    (source / "damaged.jpg").write_bytes(_damaged_jpeg())
    assert main(["data", "prepare", str(source), str(tmp_path / "out"), "--size", "8", "--keep-damaged", "--no-progress"]) == 0
    manifest = FaceDataset.load(tmp_path / "out").manifest
    assert manifest["num_images"] == 3 and manifest["skipped"] == {} and manifest["num_damaged_kept"] == 1
    assert manifest["damaged_kept_files"][0]["path"] == "damaged.jpg"


# ---- item 5: hostile manifests ---------------------------------------------------------------
def _break_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(change(manifest)))


def _object_labels(folder: Path) -> None:
    np.savez(folder / "labels.npz", identity=np.array([None, 1, "a", 2.0], dtype=object))


BREAKAGES = {
    "manifest is a list": lambda folder: (folder / "manifest.json").write_text("[1, 2, 3]"),
    "paths shorter than images": lambda folder: _break_manifest(folder, lambda m: {**m, "paths": ["a"]}),
    "num_images a string": lambda folder: _break_manifest(folder, lambda m: {**m, "num_images": "4"}),
    "skipped not counts": lambda folder: _break_manifest(folder, lambda m: {**m, "skipped": {"x": "many"}}),
    "labels not a zip": lambda folder: (folder / "labels.npz").write_bytes(b"not a zip at all"),
    "labels wrong length": lambda folder: np.savez(folder / "labels.npz", identity=np.arange(3)),
    "labels object array": _object_labels,
    "images float": lambda folder: np.save(folder / "images.npy", np.zeros((4, 8, 8, 1), np.float32)),
    "images not NHWC": lambda folder: np.save(folder / "images.npy", np.zeros((4, 8), np.uint8)),
    "images garbage": lambda folder: (folder / "images.npy").write_bytes(b"\x93NUMPY garbage"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_hostile_manifest_is_one_error_line(tmp_path, capsys, breakage):
    folder = _small_dataset(tmp_path / "faces")
    BREAKAGES[breakage](folder)
    with pytest.raises(FaceganError, match="prepare the dataset again"):
        FaceDataset.load(folder)
    assert main(["data", "info", str(folder)]) == 2
    _one_error_line(capsys)


# ---- item 7: `.`, files, read-only folders, wrong types ------------------------------------
def test_prepare_into_the_current_folder_is_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "prepare", "builtin:lfw-subset", ".", "--size", "8", "--no-progress"]) == 2
    _one_error_line(capsys)
    assert os.listdir(tmp_path) == []


def test_info_and_split_of_the_current_folder_work(tmp_path, capsys, monkeypatch):
    _small_dataset(tmp_path / "faces")
    monkeypatch.chdir(tmp_path / "faces")
    assert main(["data", "info", "."]) == 0
    assert main(["data", "split", ".", "--holdout", "0.5"]) == 0
    assert len(FaceDataset.load(tmp_path / "faces-train")) == 2 and len(FaceDataset.load(tmp_path / "faces-holdout")) == 2
    monkeypatch.chdir(tmp_path)
    assert main(["data", "info", "."]) == 2
    _one_error_line(capsys)


def test_output_and_dataset_that_are_files_are_one_error_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["data", "prepare", "builtin:lfw-subset", str(tmp_path / "file"), "--no-progress"]) == 2
    _one_error_line(capsys)
    assert main(["data", "info", str(tmp_path / "file")]) == 2
    _one_error_line(capsys)
    assert main(["data", "split", str(tmp_path / "file")]) == 2
    _one_error_line(capsys)
    assert (tmp_path / "file").read_text() == "x"


def test_prepare_checks_a_read_only_output_folder_before_working(tmp_path, capsys, monkeypatch):
    from facegan import files
    from facegan.data import pipeline

    monkeypatch.setattr(files.os, "access", lambda path, mode: False)
    monkeypatch.setattr(pipeline, "list_source", lambda source: pytest.fail("listed the source before checking OUT"))
    assert main(["data", "prepare", str(_photos(tmp_path / "photos")), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "not writable" in _one_error_line(capsys)


@pytest.mark.parametrize("options", [{"size": "64"}, {"size": 64.0}, {"limit": "3"}, {"workers": 1.5}, {"keep_damaged": "no"}])
def test_prepare_api_wrong_types_are_facegan_errors(tmp_path, options):
    with pytest.raises(FaceganError):
        prepare_dataset("builtin:lfw-subset", tmp_path / "out", **options)


@pytest.mark.parametrize("holdout", ["x", math.nan, None, True, -0.1])
def test_split_api_wrong_holdout_is_a_facegan_error(holdout):
    with pytest.raises(FaceganError, match="--holdout"):
        FaceDataset(np.zeros((4, 2, 2, 1), np.uint8)).split(holdout)


@pytest.mark.parametrize(
    "options",
    [["--size", "-1"], ["--limit", "0"], ["--workers", "0"], ["--max-file-bytes", "0"]],
)
def test_prepare_impossible_cli_options_are_one_error_line(tmp_path, capsys, options):
    code = main(["data", "prepare", "builtin:lfw-subset", str(tmp_path / "out"), "--no-progress", *options])
    assert code == 2 and not (tmp_path / "out").exists()
    _one_error_line(capsys)


@pytest.mark.parametrize("options", [["--holdout", "nan"], ["--holdout", "1"], ["--seed", "-1"]])
def test_split_impossible_cli_options_are_one_error_line(tmp_path, capsys, options):
    dataset = _small_dataset(tmp_path / "faces")
    assert main(["data", "split", str(dataset), *options]) == 2
    _one_error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["faces"]


# ---- item 8: the umask -----------------------------------------------------------------------
def test_dataset_folder_and_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        folder = _small_dataset(tmp_path / "faces")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    assert {stat.S_IMODE(os.stat(folder / name).st_mode) for name in os.listdir(folder)} == {0o644}


# ---- two prepares into one OUT -------------------------------------------------------------
def test_two_prepares_into_the_same_output_leave_one_whole_dataset(tmp_path):
    out = tmp_path / "faces"
    results = []

    def prepare(size: str) -> None:
        results.append(_cli_subprocess("data", "prepare", "builtin:lfw-subset", str(out), "--size", size, "--no-progress"))

    threads = [threading.Thread(target=prepare, args=(size,)) for size in ("8", "12")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result.returncode in (0, 2) for result in results) and any(result.returncode == 0 for result in results)
    for result in results:
        assert "Traceback" not in result.stderr
    dataset = FaceDataset.load(out)
    assert len(dataset) == 100 and dataset.resolution in (8, 12)
    assert sorted(os.listdir(out)) == ["images.npy", "manifest.json"]
    assert sorted(os.listdir(tmp_path)) == ["faces"]  # no staging or backup folder left behind


def test_source_listing_does_not_crawl_proc_or_dev_through_links(tmp_path, monkeypatch):
    from facegan.data import sources

    source = _photos(tmp_path / "photos", 2)
    fake_proc = _photos(tmp_path / "fake_proc", 1)  # stands in for /proc, whose real crawl takes minutes
    monkeypatch.setattr(sources, "_PSEUDO_ROOTS", (fake_proc.resolve(), Path("/dev")))
    (source / "proc").symlink_to(fake_proc)
    (source / "devices").symlink_to("/dev")
    assert [path.name for path in sources.find_image_files(source)] == ["photo0.jpg", "photo1.jpg"]


def test_an_unlistable_sub_folder_is_counted_not_silently_lost(tmp_path, monkeypatch):
    source = _photos(tmp_path / "photos", 2)
    _photos(source / "private", 2)
    real_scandir = os.scandir

    def scandir(path="."):
        # Root may list any folder, so a permission-denied folder is simulated.
        if Path(path).name == "private":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    dataset = prepare_dataset(source, tmp_path / "out", size=8, progress=False)
    assert len(dataset) == 2 and dataset.manifest["skipped"] == {"unreadable": 1}
    assert dataset.manifest["skipped_files"][0]["path"] == "private/"
