"""prepare_dataset end to end: sources in, FaceDataset folders out, bad files counted, never a traceback."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from facegan import __version__
from facegan.config import from_dict
from facegan.data import FaceDataset, prepare
from facegan.data.pipeline import PrepareConfig, prepare_dataset, prepare_from_config
from facegan.errors import FaceganError

REQUIRED_MANIFEST_KEYS = {
    "source", "source_kind", "size", "channels", "alignment", "paths", "skipped", "skipped_files",
    "facegan_version", "content_hash", "num_images", "num_source_files", "prepare_seconds", "config",
}  # fmt: skip


def test_messy_folder_keeps_good_files_and_counts_bad_ones(messy_folder, messy_expectations, tmp_path):
    dataset = prepare_dataset(messy_folder, tmp_path / "out", size=16, progress=False)
    expected_skips: dict[str, int] = {}
    for reason in messy_expectations.values():
        if reason is not None:
            expected_skips[reason] = expected_skips.get(reason, 0) + 1
    assert dataset.manifest["skipped"] == expected_skips
    assert expected_skips == {"zero_byte": 1, "not_an_image": 1, "truncated": 1, "corrupt": 1, "too_large": 1, "unreadable": 1}
    kept_names = sorted(name for name, reason in messy_expectations.items() if reason is None)
    assert sorted(dataset.source_paths, key=lambda path: path.split("/")[-1]) == sorted(
        [("nested/deeper/" if name == "tiny.bmp" else "") + name for name in kept_names], key=lambda path: path.split("/")[-1]
    )  # fmt: skip
    assert dataset.images.shape == (len(kept_names), 16, 16, 3) and dataset.images.dtype == np.uint8
    assert {entry["path"]: entry["reason"] for entry in dataset.manifest["skipped_files"]} == {
        name: reason for name, reason in messy_expectations.items() if reason is not None
    }
    # Spot-check values through the whole pipeline (flat colours survive crop + resize exactly).
    by_name = dict(zip(dataset.source_paths, dataset.images))
    assert np.all(by_name["sixteen_bit.png"] == 100)
    assert np.all(by_name["transparent.png"] == 255)
    assert np.all(by_name["grey.png"] == 77)
    assert np.all(by_name["nested/deeper/tiny.bmp"] == (1, 2, 3))
    assert np.abs(by_name["cmyk.jpg"].astype(int) - (255, 0, 0)).max() <= 3
    assert dataset.manifest["num_skipped"] == 6 and dataset.manifest["num_source_files"] == len(messy_expectations)


def test_manifest_and_files_on_disk(messy_folder, tmp_path):
    out = tmp_path / "out"
    prepare_dataset(messy_folder, out, size=16, channels=1, progress=False)
    assert sorted(path.name for path in out.iterdir()) == ["images.npy", "manifest.json"]  # no labels, no scratch
    manifest = json.loads((out / "manifest.json").read_text())
    assert REQUIRED_MANIFEST_KEYS <= set(manifest)
    assert manifest["source"] == str(messy_folder) and manifest["source_kind"] == "folder"
    assert manifest["alignment"] == "center-crop" and manifest["channels"] == 1 and manifest["size"] == 16
    assert manifest["facegan_version"] == __version__
    assert FaceDataset.load(out).images.shape[1:] == (16, 16, 1)
    assert not list(tmp_path.glob(".out*"))  # no staging or scratch left behind


def test_builtin_lfw_subset(tmp_path):
    first = prepare_dataset("builtin:lfw-subset", tmp_path / "first", size=32, progress=False)
    second = prepare("builtin:lfw-subset", tmp_path / "second", size=32, align="dlib", progress=False)
    assert first.images.shape == (100, 32, 32, 1) and first.images.dtype == np.uint8
    assert first.content_hash == second.content_hash  # deterministic; --align does not apply to crops
    assert first.manifest["source_kind"] == "builtin" and first.manifest["alignment"] == "builtin-crop"
    assert REQUIRED_MANIFEST_KEYS <= set(first.manifest)
    assert first.identity is None and first.manifest["skipped"] == {}
    assert 60 < first.images.mean() < 200  # faces, not blank frames
    colour = prepare_dataset("builtin:lfw-subset", tmp_path / "colour", size=16, channels=3, limit=10, progress=False)
    assert colour.images.shape == (10, 16, 16, 3)
    assert np.array_equal(colour.images[..., 0], colour.images[..., 2])


def test_unknown_builtin_lists_the_known_ones(tmp_path):
    with pytest.raises(FaceganError, match="unknown built-in data builtin:ffhq .*known: builtin:lfw-subset"):
        prepare_dataset("builtin:ffhq", tmp_path / "out", progress=False)


def test_celeba_labels_follow_the_kept_images(celeba_folder, tmp_path):
    dataset = prepare_dataset(celeba_folder, tmp_path / "out", size=16, progress=False)
    assert dataset.manifest["source_kind"] == "celeba"
    assert dataset.manifest["skipped"] == {"zero_byte": 1}  # 000004.jpg is empty
    assert dataset.source_paths == [f"img_align_celeba/{number:06d}.jpg" for number in (1, 2, 3, 5, 6)]
    # Identity 5 belonged only to the skipped image, so it is not among the names.
    assert dataset.identity_names == ["9", "17", "2880"]
    assert dataset.identity.tolist() == [2, 1, 2, 1, 0]
    assert dataset.partition.tolist() == [0, 0, 0, 1, 2] and dataset.partition.dtype == np.int8
    assert dataset.attributes.shape == (5, 40) and dataset.attributes.dtype == np.int8
    assert set(np.unique(dataset.attributes)) == {-1, 1}
    assert dataset.attributes[3, :3].tolist() == [-1, 1, -1]  # 000005: attribute k is 1 where (5 + k) % 3 == 0
    assert len(dataset.attribute_names) == 40
    reloaded = FaceDataset.load(dataset.path)
    assert np.array_equal(reloaded.identity, dataset.identity)


def test_lfw_identities_and_pairs(lfw_folder, tmp_path):
    dataset = prepare_dataset(lfw_folder, tmp_path / "out", size=16, progress=False)
    assert dataset.manifest["source_kind"] == "lfw"
    assert dataset.identity_names == ["Aaron_Eckhart", "George_W_Bush", "Zoe_Zed"]
    assert dataset.identity.tolist() == [0, 1, 1, 1, 2, 2]
    assert dataset.manifest["pairs_txt"].endswith("pairs.txt")
    holdout_ids = set(dataset.split(0.34, by_identity=True)[1].identity.tolist())
    train_ids = set(dataset.split(0.34, by_identity=True)[0].identity.tolist())
    assert holdout_ids and not holdout_ids & train_ids


def test_dlib_alignment_keeps_faces_and_skips_the_rest(tmp_path, write_file, encode_image):
    write_file("astronaut.png", encode_image(Image.fromarray(astronaut()), "PNG"))
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    write_file("noise.png", encode_image(Image.fromarray(noise), "PNG"))
    dataset = prepare_dataset(tmp_path / "source", tmp_path / "out", size=32, align="dlib", progress=False)
    assert dataset.images.shape == (1, 32, 32, 3)
    assert dataset.source_paths == ["astronaut.png"]
    assert dataset.manifest["skipped"] == {"no_face": 1}
    assert dataset.manifest["alignment"] == "dlib-5point"
    assert dataset.manifest["alignment_details"]["chip_padding"] == 0.25


def test_dlib_with_no_faces_at_all_says_so(tmp_path, write_file, encode_image):
    flat = encode_image(Image.new("RGB", (64, 64), (128, 128, 128)), "PNG")
    write_file("a.png", flat)
    write_file("b.png", flat)
    with pytest.raises(FaceganError, match=r"all 2 files were skipped \(no_face 2\).*--align center"):
        prepare_dataset(tmp_path / "source", tmp_path / "out", align="dlib", progress=False)
    assert not (tmp_path / "out").exists()


def test_nothing_usable_is_one_line_error(tmp_path, write_file):
    write_file("a.jpg", b"hello")
    write_file("b.png", b"")
    with pytest.raises(FaceganError, match=r"no usable images in .*all 2 files were skipped \((not_an_image 1, zero_byte 1|zero_byte 1, not_an_image 1)\)"):
        prepare_dataset(tmp_path / "source", tmp_path / "out", progress=False)


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(FaceganError, match="source not found"):
        prepare_dataset(tmp_path / "missing", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceganError, match="no images found"):
        prepare_dataset(tmp_path / "empty", tmp_path / "out", progress=False)


def test_refuses_to_replace_a_folder_that_is_not_a_dataset(messy_folder, tmp_path):
    with pytest.raises(FaceganError, match="exists and is not a prepared dataset"):
        prepare_dataset(messy_folder, messy_folder, progress=False)
    assert (messy_folder / "good.jpg").is_file()
    # An older dataset is replaced without complaint.
    prepare_dataset("builtin:lfw-subset", tmp_path / "out", size=8, limit=3, progress=False)
    assert len(prepare_dataset("builtin:lfw-subset", tmp_path / "out", size=8, limit=5, progress=False)) == 5


def test_limit_takes_the_first_files_in_order(lfw_folder, tmp_path):
    dataset = prepare_dataset(lfw_folder, tmp_path / "out", size=8, limit=2, progress=False)
    assert dataset.source_paths == ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"size": 2}, "--size"),
        ({"align": "mtcnn"}, "--align must be one of center, dlib, none"),
        ({"channels": 2}, "--channels must be 1 or 3"),
        ({"workers": 0}, "--workers"),
        ({"limit": 0}, "--limit"),
    ],
)
def test_impossible_options_are_rejected(options, message):
    with pytest.raises(FaceganError, match=message):
        PrepareConfig(source="builtin:lfw-subset", **options)


def test_config_round_trips_through_json(tmp_path):
    config = from_dict(PrepareConfig, {"source": "builtin:lfw-subset", "size": 8, "progress": False})
    dataset = prepare_from_config(config, tmp_path / "out")
    assert from_dict(PrepareConfig, dataset.manifest["config"]) == config
    with pytest.raises(FaceganError, match="unknown config key 'sise'"):
        from_dict(PrepareConfig, {"source": "x", "sise": 8})


@pytest.fixture
def eighty_images(tmp_path, write_file, encode_image):
    """80 small random PNGs (enough to use a worker pool) in 3 sub-folders, plus one broken JPEG."""
    rng = np.random.default_rng(7)
    for index in range(80):
        pixels = rng.integers(0, 256, (int(rng.integers(12, 40)), int(rng.integers(12, 40)), 3), dtype=np.uint8)
        write_file(f"batch{index % 3}/image_{index:03d}.png", encode_image(Image.fromarray(pixels), "PNG"))
    write_file("batch1/broken.jpg", b"\xff\xd8\xff\xe0 truncated")
    return tmp_path / "source"


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_two_workers_give_the_same_dataset_as_one(eighty_images, tmp_path, monkeypatch, start_method):
    import multiprocessing

    import facegan.data.pipeline as prepare_module

    # fork is chosen when the parent is single-threaded and torch-free, forkserver otherwise: test both.
    monkeypatch.setattr(prepare_module, "_pool_context", lambda: multiprocessing.get_context(start_method))
    serial = prepare_dataset(eighty_images, tmp_path / "serial", size=12, workers=1, progress=False)
    parallel = prepare_dataset(eighty_images, tmp_path / "parallel", size=12, workers=2, progress=False)
    assert serial.manifest["num_workers"] == 1 and parallel.manifest["num_workers"] == 2
    assert len(parallel) == 80 and parallel.manifest["skipped"] == {"truncated": 1}
    assert parallel.content_hash == serial.content_hash
    assert parallel.source_paths == serial.source_paths


def _die_at_start(*_args) -> None:
    os._exit(3)  # what an OOM kill or a segfault in a decoder looks like to the parent


def test_a_dying_worker_is_an_error_not_a_hang(eighty_images, tmp_path, monkeypatch):
    import multiprocessing

    import facegan.data.pipeline as prepare_module

    monkeypatch.setattr(prepare_module, "_pool_context", lambda: multiprocessing.get_context("fork"))
    monkeypatch.setattr(prepare_module, "_init_worker", _die_at_start)
    with pytest.raises(FaceganError, match="worker process stopped unexpectedly"):
        prepare_dataset(eighty_images, tmp_path / "out", size=12, workers=2, progress=False)
    assert not (tmp_path / "out").exists()


def test_large_outputs_are_filled_on_disk_and_cleaned_up(lfw_folder, tmp_path, monkeypatch):
    import facegan.data.pipeline as prepare_module

    in_memory = prepare_dataset(lfw_folder, tmp_path / "memory", size=8, progress=False)
    monkeypatch.setattr(prepare_module, "IN_MEMORY_MAX_BYTES", 0)  # force the scratch .npy path
    on_disk = prepare_dataset(lfw_folder, tmp_path / "disk", size=8, progress=False)
    assert on_disk.content_hash == in_memory.content_hash
    assert not list(tmp_path.glob(".disk*"))  # the scratch file is gone


def test_progress_bar_goes_to_stderr(lfw_folder, tmp_path, capsys):
    prepare_dataset(lfw_folder, tmp_path / "out", size=8, progress=True)
    captured = capsys.readouterr()
    assert "prepare" in captured.err and "6/6" in captured.err and captured.out == ""


def test_data_preparation_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, facegan.data.pipeline, facegan.data.align, facegan.faces.align, facegan.images, facegan.run; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_level_prepare_is_the_function(tmp_path):
    import facegan.data
    import facegan.data.pipeline  # noqa: F401 - importing the module must not shadow the function

    assert len(facegan.data.prepare("builtin:lfw-subset", tmp_path / "out", size=8, limit=4, progress=False)) == 4
    assert facegan.data.prepare_dataset is prepare_dataset and facegan.data.PrepareConfig is PrepareConfig


def test_scratch_file_is_removed_when_nothing_survives(tmp_path, write_file, monkeypatch):
    import facegan.data.pipeline as prepare_module

    monkeypatch.setattr(prepare_module, "IN_MEMORY_MAX_BYTES", 0)
    write_file("a.jpg", b"not a picture")
    with pytest.raises(FaceganError, match="no usable images"):
        prepare_dataset(tmp_path / "source", tmp_path / "out", progress=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["source"]


def test_dataset_save_never_replaces_a_file_or_a_foreign_folder(tmp_path):
    dataset = FaceDataset(images=np.zeros((2, 4, 4, 1), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FaceganError, match="is a file"):
        dataset.save(tmp_path / "notes.txt")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "me.jpg").write_bytes(b"precious")
    with pytest.raises(FaceganError, match="not a prepared dataset"):
        dataset.save(tmp_path / "photos")
    assert (tmp_path / "photos" / "me.jpg").read_bytes() == b"precious"
    (tmp_path / "empty").mkdir()
    assert FaceDataset.load(dataset.save(tmp_path / "empty")).images.shape == (2, 4, 4, 1)
