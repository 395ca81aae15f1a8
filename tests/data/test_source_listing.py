"""list_source: which kind of folder, which files in which order, which labels."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facegan.data.sources import list_source
from facegan.errors import FaceganError


def test_folder_lists_images_recursively_sorted_any_case(messy_folder):
    listing = list_source(messy_folder)
    assert listing.kind == "folder"
    assert listing.relative_paths == sorted(listing.relative_paths)
    assert "nested/deeper/tiny.bmp" in listing.relative_paths
    assert "UPPER.JPEG" in listing.relative_paths
    assert "dangling.jpg" in listing.relative_paths  # listed; decoding reports it unreadable
    assert "notes.txt" not in listing.relative_paths
    assert listing.identity_names is None and listing.attributes is None


def test_missing_and_empty_sources_are_one_line_errors(tmp_path):
    with pytest.raises(FaceganError, match="source not found: .*nowhere"):
        list_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures here")
    with pytest.raises(FaceganError, match="no images found in .*empty"):
        list_source(tmp_path / "empty")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(FaceganError, match="is a file, not a folder"):
        list_source(tmp_path / "file.jpg")


def test_celeba_labels_are_read_and_aligned_with_files(celeba_folder):
    listing = list_source(celeba_folder)
    assert listing.kind == "celeba"
    assert listing.relative_paths == [f"img_align_celeba/{number:06d}.jpg" for number in range(1, 7)]
    assert listing.attributes.shape == (6, 40) and listing.attributes.dtype == np.int8
    assert listing.attribute_names[0] == "Attribute_00" and len(listing.attribute_names) == 40
    # Row for 000002.jpg: attribute k is 1 where (2 + k) % 3 == 0.
    assert listing.attributes[1, :4].tolist() == [-1, 1, -1, -1]
    assert listing.identity_names == ["2880", "17", "2880", "5", "17", "9"]
    assert listing.partition.tolist() == [0, 0, 0, 1, 1, 2]


def test_celeba_without_label_files_has_no_labels(celeba_folder):
    for name in ("list_attr_celeba.txt", "identity_CelebA.txt", "list_eval_partition.txt"):
        (celeba_folder / name).unlink()
    listing = list_source(celeba_folder)
    assert listing.kind == "celeba"
    assert listing.attributes is None and listing.identity_names is None and listing.partition is None


def test_celeba_images_missing_from_label_files_get_unknown_labels(celeba_folder):
    lines = (celeba_folder / "list_eval_partition.txt").read_text().splitlines()
    (celeba_folder / "list_eval_partition.txt").write_text("\n".join(lines[:-1]) + "\n")  # drop 000006
    assert list_source(celeba_folder).partition.tolist() == [0, 0, 0, 1, 1, -1]


def test_malformed_celeba_attributes_name_the_line(celeba_folder):
    path = celeba_folder / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 1)[0]  # one value short on line 5
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FaceganError, match=r"list_attr_celeba.txt:5 has 39 values for 40 attributes"):
        list_source(celeba_folder)


def test_lfw_is_detected_by_structure(lfw_folder):
    listing = list_source(lfw_folder)
    assert listing.kind == "lfw"
    assert listing.identity_names == ["Aaron_Eckhart", "George_W_Bush", "George_W_Bush", "George_W_Bush", "Zoe_Zed", "Zoe_Zed"]
    assert listing.extra_manifest["pairs_txt"] == str((lfw_folder / "pairs.txt").resolve())


def test_one_misnamed_file_makes_it_a_plain_folder(lfw_folder):
    (lfw_folder / "pairs.txt").unlink()
    Image.new("RGB", (8, 8)).save(lfw_folder / "Zoe_Zed" / "holiday.jpg")
    assert list_source(lfw_folder).kind == "folder"
    (lfw_folder / "Zoe_Zed" / "holiday.jpg").unlink()
    listing = list_source(lfw_folder)
    assert listing.kind == "lfw" and listing.extra_manifest["pairs_txt"] is None


def test_head_keeps_labels_aligned(celeba_folder):
    head = list_source(celeba_folder).head(2)
    assert len(head) == 2 and head.identity_names == ["2880", "17"] and head.attributes.shape == (2, 40)


def test_one_numbered_folder_is_not_lfw(tmp_path):
    for number in (1, 2):
        path = tmp_path / "photos" / "trip" / f"trip_{number:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path)
    assert list_source(tmp_path / "photos").kind == "folder"
