"""Hostile inputs to `facegan project` (issue 9): each refused in one line, exit 2, nothing written."""
from __future__ import annotations

from facegan.provenance.record import Provenance
import numpy as np
import pytest

from facegan.data.dataset import FaceDataset
from tests.hostile.helpers import refused
from tests.inversion.helpers import make_tiny_export


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.mktemp("export") / "export")

FAST = ["--steps", "2", "--starts", "1", "--identity-weight", "0", "--no-progress"]


def _faces(tmp_path, size=32, count=2):
    images = np.full((count, size, size, 1), 128, np.uint8)
    return FaceDataset(images, {"source": "test", "source_kind": "builtin"}).save(tmp_path / f"faces{size}")


def test_project_refuses_images_of_another_size(tmp_path, tiny_export, capsys):
    line = refused(["project", str(tiny_export), str(_faces(tmp_path, 16)), "--out", str(tmp_path / "p"), *FAST], capsys)
    assert "the targets are 16x16, the generator makes 32x32" in line and "--size 32" in line
    assert not (tmp_path / "p").exists()


def test_project_refuses_an_all_hole_mask(tmp_path, tiny_export, capsys):
    np.save(tmp_path / "m.npy", np.ones((32, 32), bool))
    line = refused(["project", str(tiny_export), str(_faces(tmp_path)), "--out", str(tmp_path / "p"), "--mask", str(tmp_path / "m.npy"), *FAST], capsys)
    assert "hides every pixel" in line
    assert not (tmp_path / "p").exists()


def test_project_refuses_a_mask_of_another_size(tmp_path, tiny_export, capsys):
    np.save(tmp_path / "m.npy", np.zeros((2, 16, 16), bool))
    line = refused(["project", str(tiny_export), str(_faces(tmp_path)), "--out", str(tmp_path / "p"), "--mask", str(tmp_path / "m.npy"), *FAST], capsys)
    assert "(2, 16, 16)" in line and "the images are 32x32" in line


def test_project_refuses_an_out_folder_with_foreign_files(tmp_path, tiny_export, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("keep me")
    line = refused(["project", str(tiny_export), str(_faces(tmp_path)), "--out", str(out), *FAST], capsys)
    assert "not a facegan projection folder" in line
    assert (out / "thesis.txt").read_text() == "keep me"


def test_project_refuses_out_inside_the_image_folder(tmp_path, tiny_export, capsys):
    from facegan.images import save_png

    folder = tmp_path / "pictures"
    save_png(np.zeros((32, 32, 1), np.uint8), folder / "a.png", Provenance.off("test"))
    line = refused(["project", str(tiny_export), str(folder), "--out", str(folder / "proj"), *FAST], capsys)
    assert "is the images" in line and "inside/around" in line


def test_project_refuses_out_inside_the_export(tmp_path, tiny_export, capsys):
    line = refused(["project", str(tiny_export), str(_faces(tmp_path)), "--out", str(tiny_export / "proj"), *FAST], capsys)
    assert "is the export" in line
    assert not (tiny_export / "proj").exists()


def test_project_refuses_images_of_mixed_sizes(tmp_path, tiny_export, capsys):
    from facegan.images import save_png

    folder = tmp_path / "pictures"
    save_png(np.zeros((32, 32, 3), np.uint8), folder / "a.png", Provenance.off("test"))
    save_png(np.zeros((40, 40, 3), np.uint8), folder / "b.png", Provenance.off("test"))
    line = refused(["project", str(tiny_export), str(folder), "--out", str(tmp_path / "p"), *FAST], capsys)
    assert "give images of one size" in line


def test_project_refuses_zero_steps(tmp_path, tiny_export, capsys):
    line = refused(["project", str(tiny_export), str(_faces(tmp_path)), "--out", str(tmp_path / "p"), "--steps", "0"], capsys)
    assert "--steps" in line


def test_project_refuses_a_missing_image_source(tmp_path, tiny_export, capsys):
    line = refused(["project", str(tiny_export), str(tmp_path / "nothing"), "--out", str(tmp_path / "p"), *FAST], capsys)
    assert "no such dataset, image folder or image" in line
