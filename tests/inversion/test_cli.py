"""`facegan project` end to end on a tiny export and real faces: the files written and what they hold."""
from __future__ import annotations

import json

from facegan.provenance.record import Provenance
import numpy as np

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from facegan.inversion import load_projection

FAST = ["--steps", "8", "--starts", "2", "--identity-weight", "0", "--no-progress"]


def test_project_writes_latents_reconstructions_and_figures(tmp_path, tiny_export, faces32, capsys):
    small = FaceDataset(np.asarray(FaceDataset.load(faces32).images[:3]), {"source": "test", "source_kind": "builtin"})
    data = small.save(tmp_path / "three")
    out = tmp_path / "proj"
    assert main(["project", str(tiny_export), str(data), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "projected 3 images" in printed and "face distance" in printed
    assert sorted(p.name for p in out.iterdir()) == ["extended.npy", "grid.png", "latents.npy", "projection.json", "reconstructions"]
    record = json.loads((out / "projection.json").read_text())
    assert record["count"] == 3 and record["settings"]["steps"] == 8 and record["settings"]["starts"] == 2
    assert [row["index"] for row in record["images"]] == [0, 1, 2]
    assert all(row["psnr"] > 5 and -1 <= row["ssim"] <= 1 and row["face_distance"] >= 0 for row in record["images"])
    assert np.load(out / "latents.npy").shape == (3, 16)
    from facegan.provenance.inspect import read_provenance

    # Reconstructions are generated through and through; the grid puts the real targets beside them.
    assert read_provenance(out / "reconstructions" / "0000.png")["xmp"]["digital_source_type"] == "trainedAlgorithmicMedia"
    assert read_provenance(out / "grid.png")["xmp"]["digital_source_type"] == "compositeWithTrainedAlgorithmicMedia"
    assert record["provenance"]["xmp"] is True and record["provenance"]["model"].startswith("sha256:")
    result = load_projection(out)
    assert result.images.shape == (3, 32, 32, 1)
    # The same command again replaces the folder's contents (a projection folder is ours to overwrite), bit for bit.
    assert main(["project", str(tiny_export), str(data), "--out", str(out), *FAST]) == 0
    assert np.array_equal(load_projection(out).z, result.z)


def test_project_image_folder_with_a_mask(tmp_path, tiny_export, faces32):
    from facegan.images import save_png

    images = np.asarray(FaceDataset.load(faces32).images[:2])
    folder = tmp_path / "pictures"
    for index, image in enumerate(images):
        save_png(image, folder / f"face{index}.png", Provenance.off("test"))
    mask = np.zeros((32, 32), bool)
    mask[10:20, 8:24] = True
    np.save(tmp_path / "mask.npy", mask)
    out = tmp_path / "fill"
    assert main(["project", str(tiny_export), str(folder), "--out", str(out), "--mask", str(tmp_path / "mask.npy"),
                 "--steps", "8", "--starts", "1", "--no-progress"]) == 0
    record = json.loads((out / "projection.json").read_text())
    assert record["settings"]["masked"] is True and record["settings"]["identity_weight"] == 0.0
    assert [row["name"] for row in record["images"]] == ["face0.png", "face1.png"]
