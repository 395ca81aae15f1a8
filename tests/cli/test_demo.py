"""The main job end to end at tiny lengths: every promised file, the DP guarantee, and reuse on a second run."""
import json
from pathlib import Path

from facegan.demo import RecognitionPlan, run_demo


def test_demo_writes_everything_and_reuses_it(tmp_path, capsys):
    out, data = tmp_path / "runs", tmp_path / "data" / "faces16"
    run_demo(str(out), str(data), size=16, kimg=0.064, dp_kimg=0.064, dp_finetune_kimg=0.032, num_eval=32, fingerprint_steps=20, fingerprint_tune_steps=10, num_detect=16, progress=False, recognition=False)
    for name in ("grid.png", "grid-dp.png", "interpolation.png", "reals.png", "summary.txt",
                 "default/report.html", "dp/report.html", "default/metrics.json", "dp/audit.json", "default/loss_curves.png"):
        assert (out / name).is_file(), name
    dp = json.loads((out / "dp" / "export" / "config.json").read_text())["dp"]
    assert 0 < dp["epsilon"] <= 10.0 + 1e-6
    summary = (out / "summary.txt").read_text()
    assert "(10.00," in summary or f"({dp['epsilon']:.2f}," in summary
    assert "Differential privacy" in (out / "dp" / "report.html").read_text()
    export = json.loads((out / "dp" / "export" / "config.json").read_text())
    assert export["init_from"]["path"].endswith("dp-public") and export["init_from"]["overlap_images"] == 0  # DP fine-tuning of a public model
    # The default GAN trained on plain faces, its export tuned toward the key: the export names the fingerprint, detect.json has every group.
    fingerprint = json.loads((out / "fingerprint" / "fingerprint.json").read_text())
    default = json.loads((out / "default" / "export" / "config.json").read_text())
    assert default["fingerprint"]["id"] == fingerprint["id"] and default["fingerprint_loss"]["mark_data"] is False
    trained_on = json.loads((out / "default" / "config.json").read_text())["data"]
    assert Path(trained_on).name == "faces16-train"  # the plain training faces, not the encoded copy (faces16-train-fp…)
    detections = json.loads((out / "detect.json").read_text())
    assert set(detections["groups"]) == {"generated", "generated_jpeg75", "control_dp_generated", "real_never_encoded", "real_encoded"}
    assert detections["groups"]["real_never_encoded"]["num_images"] == 100 and "fingerprint (" in summary
    from facegan.provenance.inspect import read_provenance

    assert read_provenance(out / "grid.png")["xmp"]["fingerprint"] == fingerprint["id"]
    first = capsys.readouterr().out

    mtimes = {name: (out / name).stat().st_mtime for name in ("default/metrics.json", "dp/audit.json", "default/export/model.safetensors")}
    run_demo(str(out), str(data), size=16, kimg=0.064, dp_kimg=0.064, dp_finetune_kimg=0.032, num_eval=32, fingerprint_steps=20, fingerprint_tune_steps=10, num_detect=16, progress=False, recognition=False)
    assert "reusing finished run" in capsys.readouterr().out and "reusing" not in first
    assert all((out / name).stat().st_mtime == mtime for name, mtime in mtimes.items())  # nothing measured or trained twice

    (out / "default" / "metrics.json").write_text("{garbage")  # a broken result is measured again, not a traceback
    run_demo(str(out), str(data), size=16, kimg=0.064, dp_kimg=0.064, dp_finetune_kimg=0.032, num_eval=32, fingerprint_steps=20, fingerprint_tune_steps=10, num_detect=16, progress=False, recognition=False)
    assert json.loads((out / "default" / "metrics.json").read_text())["metrics"]["fd"] >= 0


def test_demo_recognition_part_writes_synthetic_people_a_recogniser_and_four_verifications(tmp_path, capsys):
    from facegan.data.dataset import FaceDataset

    out, data = tmp_path / "runs", tmp_path / "data" / "faces32"
    plan = RecognitionPlan(id_kimg=0.064, recog_steps=2, recog_batch_size=8, folds=2, pairs_per_fold=2, min_distance=0.0,
                           synth_train={"identities": 4, "per_identity": 3, "seed": 0},
                           synth_test={"identities": 4, "per_identity": 3, "seed": 1000})
    run_demo(str(out), str(data), size=32, kimg=0.064, dp_kimg=0.064, dp_finetune_kimg=0.032, num_eval=32, fingerprint_steps=20, fingerprint_tune_steps=10, num_detect=16, progress=False, recognition=plan)
    base = out / "recognition"
    synth = FaceDataset.load(base / "synth-test")
    assert synth.identity_names == ["s00000", "s00001", "s00002", "s00003"] and len(synth) == 12
    judges = synth.manifest["synth"]["consistency_by_recogniser"]
    assert set(judges) == {"lbph", "pixel"} and all(judge["independent"] for judge in judges.values())
    assert synth.manifest["synth"]["recogniser"]["independent"] is False  # dlib trained the identity loss
    for name in ("dlib", "lbph", "pixel", "facegan"):
        record = json.loads((base / "verification" / name / "verification.json").read_text())
        assert record["num_pairs"] == 8 and 0.0 <= record["accuracy_mean"] <= 1.0, name
    assert "Face verification" in (base / "verification" / "report.html").read_text()
    summary = (out / "summary.txt").read_text()
    assert "identity-aware model" in summary and "facegan " in summary and "TAR@1e-2" in summary

    capsys.readouterr()
    before = (base / "verification" / "facegan" / "verification.json").stat().st_mtime
    run_demo(str(out), str(data), size=32, kimg=0.064, dp_kimg=0.064, dp_finetune_kimg=0.032, num_eval=32, fingerprint_steps=20, fingerprint_tune_steps=10, num_detect=16, progress=False, recognition=plan)
    assert "reusing finished recogniser run" in capsys.readouterr().out
    assert (base / "verification" / "facegan" / "verification.json").stat().st_mtime == before
