"""`facegan repair train / apply` end to end on a tiny network: files written, known pixels exact, resume, baselines."""
from __future__ import annotations

import json

from facegan.provenance.record import Provenance
import numpy as np
import pytest

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from facegan.images import read_masks
from facegan.run import Run

TINY = ["--batch-size", "4", "--no-progress", "--set", "model.width=4", "--set", "model.discriminator_width=4",
        "--set", "loss.identity=0", "--set", "runtime.tensorboard=false", "--set", "runtime.device=cpu",
        "--set", "runtime.num_threads=1", "--set", "schedule.log_steps=2"]


@pytest.fixture(scope="module")
def repair_run(faces32, tmp_path_factory):
    out = tmp_path_factory.mktemp("repair_cli") / "run"
    assert main(["repair", "train", "--data", str(faces32), "--out", str(out), "--steps", "2", *TINY]) == 0
    return out


def _read_png_folder(folder):
    from PIL import Image

    return np.stack([np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))])


def test_train_then_resume_continues(repair_run, capsys, tmp_path, faces32):
    assert Run(repair_run).has_export()
    out = tmp_path / "run"
    assert main(["repair", "train", "--data", str(faces32), "--out", str(out), "--steps", "2", *TINY]) == 0
    assert main(["repair", "train", "--out", str(out), "--resume", "--steps", "4", "--no-progress"]) == 0
    assert "finished step 4" in capsys.readouterr().out
    assert [line["step"] for line in Run(out).read_stats()] == [2, 4]


def test_dry_run_prints_the_resolved_config(capsys, tmp_path):
    assert main(["repair", "train", "--data", "d", "--out", str(tmp_path / "r"), "--steps", "10", "--dry-run",
                 "--set", "damage.mask_kinds=[\"eyes\",\"mouth\"]"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["kind"] == "repair" and config["damage"]["mask_kinds"] == ["eyes", "mouth"] and config["steps"] == 10
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["box", "strokes", "eyes", "mouth"])
def test_apply_net_keeps_known_pixels_and_writes_everything(repair_run, faces32, tmp_path, kind, capsys):
    out = tmp_path / "out"
    assert main(["repair", "apply", str(repair_run), str(faces32), "--out", str(out), "--mask-kind", kind, "--mask-ratio", "0.3",
                 "--limit", "5", "--seed", "3"]) == 0
    originals = np.asarray(FaceDataset.load(faces32).images[:5])
    repaired = _read_png_folder(out / "repaired")[..., None]
    masks = read_masks(out / "masks", 5, 32)
    assert repaired.shape == originals.shape
    assert np.array_equal(repaired[~masks], originals[~masks])  # compositing: known pixels bit-exact
    assert abs(masks.mean() - 0.3) < 0.03
    record = json.loads((out / "repair.json").read_text())
    assert record["method"] == "net" and record["damage"] == {"mask_kind": kind, "mask_ratio": 0.3} and record["num_images"] == 5
    assert len(record["images"]) == 5 and all(np.isfinite(entry["psnr"]) for entry in record["images"])
    # Repaired is closer to the original than the holes left grey-black: the figures compare the two.
    assert record["means"]["l1"] < record["damaged_means"]["l1"]
    assert (out / "strip.png").is_file() and len(list((out / "damaged").glob("*.png"))) == 5
    assert "repaired 5 image(s) with net" in capsys.readouterr().out
    from facegan.provenance.inspect import read_provenance

    kinds = {folder: read_provenance(next((out / folder).glob("*.png")))["xmp"].get("digital_source_type")
             for folder in ("repaired", "damaged", "masks")}
    assert kinds == {"repaired": "compositeWithTrainedAlgorithmicMedia", "damaged": "composite", "masks": "algorithmicMedia"}
    assert record["provenance"] == {"xmp": True, "c2pa": False, "digital_source_type": "compositeWithTrainedAlgorithmicMedia", "model": None}


def test_apply_same_seed_same_masks_for_net_and_baselines(repair_run, faces32, tmp_path):
    for method, model in (("net", str(repair_run)), ("telea", "telea"), ("ns", "ns")):
        assert main(["repair", "apply", model, str(faces32), "--out", str(tmp_path / method), "--mask-kind", "box", "--limit", "4"]) == 0
    first = read_masks(tmp_path / "net" / "masks", 4, 32)
    for method in ("telea", "ns"):
        assert np.array_equal(read_masks(tmp_path / method / "masks", 4, 32), first)
        repaired = _read_png_folder(tmp_path / method / "repaired")[..., None]
        originals = np.asarray(FaceDataset.load(faces32).images[:4])
        assert np.array_equal(repaired[~first], originals[~first])
        from facegan.provenance.inspect import read_provenance

        # OpenCV's inpainting is no trained model: the photo is marked as changed, not as AI-generated.
        assert read_provenance(next((tmp_path / method / "repaired").glob("*.png")))["xmp"]["digital_source_type"] == "composite"


def test_apply_user_masks_from_a_folder(repair_run, faces32, tmp_path):
    from facegan.images import write_masks

    masks = np.zeros((3, 32, 32), bool)
    masks[:, 10:20, 5:25] = True
    write_masks(tmp_path / "mymasks", masks)
    out = tmp_path / "out"
    assert main(["repair", "apply", str(repair_run), str(faces32), "--out", str(out), "--mask", str(tmp_path / "mymasks"), "--limit", "3"]) == 0
    assert np.array_equal(read_masks(out / "masks", 3, 32), masks)


@pytest.mark.parametrize("kind", ["noise", "blur", "jpeg"])
def test_apply_restores_degradations(repair_run, faces32, tmp_path, kind):
    out = tmp_path / "out"
    assert main(["repair", "apply", str(repair_run), str(faces32), "--out", str(out), "--degrade", kind, "--limit", "3"]) == 0
    record = json.loads((out / "repair.json").read_text())
    assert record["damage"] == {"degrade": kind} and not (out / "masks").exists()
    assert set(record["means"]) == {"psnr", "ssim", "l1"}


def test_apply_again_into_its_own_output_replaces_it(repair_run, faces32, tmp_path):
    out = tmp_path / "out"
    assert main(["repair", "apply", str(repair_run), str(faces32), "--out", str(out), "--mask-kind", "box", "--limit", "6"]) == 0
    assert main(["repair", "apply", str(repair_run), str(faces32), "--out", str(out), "--mask-kind", "box", "--limit", "2"]) == 0
    assert len(list((out / "repaired").glob("*.png"))) == 2 and len(list((out / "masks").glob("*.png"))) == 2


def test_apply_reads_an_image_folder(repair_run, faces32, tmp_path):
    from facegan.images import save_png

    originals = np.asarray(FaceDataset.load(faces32).images[:3])
    for index, image in enumerate(originals):
        save_png(image, tmp_path / "pics" / f"face{index}.png", Provenance.off("test"))
    out = tmp_path / "out"
    assert main(["repair", "apply", str(repair_run), str(tmp_path / "pics"), "--out", str(out), "--mask-kind", "eyes"]) == 0
    masks = read_masks(out / "masks", 3, 32)
    repaired = _read_png_folder(out / "repaired")[..., None]
    assert np.array_equal(repaired[~masks], originals[~masks])
    assert json.loads((out / "repair.json").read_text())["images"][0]["source"].endswith("face0.png")


def test_report_card_of_a_repair_run_has_its_section_and_no_gan_ones(repair_run, tmp_path):
    from facegan.report.card import build_report

    page = build_report(repair_run, tmp_path / "card.html").read_text()
    assert "<h2>Face repair</h2>" in page and "gated-convolution encoder-decoder" in page
    assert "facegan repair eval RUN --data HOLDOUT" in page
    for gan_only in ("<h2>Run</h2>", "<h2>Samples</h2>", "<h2>Training</h2>", "could not be built"):
        assert gan_only not in page


def test_apply_projection_with_a_gan_run_keeps_known_pixels(faces32, tmp_path, tiny_config):
    from facegan import train

    gan = train(tiny_config(faces32, tmp_path / "gan", kimg=0.008)).run_dir
    out = tmp_path / "out"
    assert main(["repair", "apply", str(gan), str(faces32), "--out", str(out), "--mask-kind", "mouth", "--limit", "2",
                 "--steps", "3", "--starts", "1", "--no-progress"]) == 0
    record = json.loads((out / "repair.json").read_text())
    assert record["method"] == "projection" and record["projection"] == {"steps": 3, "starts": 1}
    masks = read_masks(out / "masks", 2, 32)
    repaired = _read_png_folder(out / "repaired")[..., None]
    originals = np.asarray(FaceDataset.load(faces32).images[:2])
    assert np.array_equal(repaired[~masks], originals[~masks])
    assert not np.array_equal(repaired[masks], originals[masks])


@pytest.fixture(scope="module")
def rgb_faces(tmp_path_factory):
    from tests.recognition.identities import save_identity_dataset

    return save_identity_dataset(tmp_path_factory.mktemp("repair_eval") / "shapes", num_identities=6, per_identity=4)


def test_eval_writes_bands_restoration_strip_and_the_card_shows_them(rgb_faces, tmp_path, capsys):
    from facegan.report.card import build_report

    run = tmp_path / "run"
    assert main(["repair", "train", "--data", str(rgb_faces), "--out", str(run), "--steps", "1", *TINY]) == 0
    capsys.readouterr()
    assert main(["repair", "eval", str(run), "--data", str(rgb_faces), "--recogniser", "pixel", "--no-fd", "--limit", "20"]) == 0
    printed = capsys.readouterr().out
    assert "identity distance repaired/opencv-best = " in printed and "the evaluation faces are the training faces" in printed
    record = json.loads(Run(run).repair_eval_path.read_text())
    bands = record["inpainting"]["bands"]
    assert [band["label"] for band in bands] == ["10-20%", "20-30%", "30-40%", "40-50%", "50-60%"]
    assert set(bands[0]["methods"]) == {"masked", "net", "telea", "ns"}
    assert len({entry["masks_sha256"] for entry in bands[0]["methods"].values()}) == 1
    assert record["num_images"] == 20 and record["inpainting"]["num_images"] == 20
    assert {row["method"] for row in record["restoration_quality"]} == {"degraded", "net", "opencv-nlm", "unsharp"}
    damages = [condition["damage"] for condition in record["restoration"]["conditions"]]
    assert damages == ["noise", "blur", "jpeg", "eyes occlusion", "mouth occlusion"]
    assert Run(run).repair_strip_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = build_report(run, tmp_path / "card.html").read_text()
    for title in ("Inpainting per mask-ratio band", "Restoration per degradation", "Verification accuracy under damage", "Repair examples"):
        assert title in page
    assert "repaired / best OpenCV" in page


def test_eval_without_identities_skips_verification_with_a_note(repair_run, faces32, capsys):
    assert main(["repair", "eval", str(repair_run), "--data", str(faces32), "--recogniser", "pixel", "--no-fd", "--limit", "4"]) == 0
    assert "has no identity labels" in capsys.readouterr().out
    assert json.loads(Run(repair_run).repair_eval_path.read_text())["restoration"] is None


def test_apply_methods_never_see_what_the_mask_hides(repair_run, faces32, tmp_path, monkeypatch):
    from facegan.repair import baselines

    seen = []
    monkeypatch.setitem(baselines.INPAINTERS, "telea", lambda damaged, masks: seen.append(damaged[masks].copy()) or damaged)
    assert main(["repair", "apply", "telea", str(faces32), "--out", str(tmp_path / "o"), "--mask-kind", "box", "--limit", "3"]) == 0
    assert len(seen) == 1 and seen[0].size and not seen[0].any()  # every hidden pixel reached the method as 0
