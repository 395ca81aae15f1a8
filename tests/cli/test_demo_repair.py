"""`make demo-repair` end to end on tiny settings: every part writes its result, and a second run reuses them."""
from __future__ import annotations

import json

from facegan.demo_repair import RepairPlan, run_repair_demo

TINY = RepairPlan(repair_steps=3, repair_batch_size=4, gan_kimg=0.064, fingerprint_steps=20, fingerprint_tune_steps=10, projection_steps=2, projection_starts=1,
                  edit_identities=20, edit_per_identity=5, edit_kimg=0.064, edit_seeds=(0, 1), edit_strengths=(-1.0, 0.0, 1.0),
                  edit_samples=200, classifier_steps=3,
                  edits=(("Black_Hair", ("Eyeglasses",)),))


def test_demo_repair_writes_repair_eval_strips_and_edits_then_reuses_them(tmp_path, capsys):
    out, data = tmp_path / "runs", tmp_path / "data" / "faces32"
    run_repair_demo(str(out), str(data), size=32, plan=TINY, progress=False)
    record = json.loads((out / "repair" / "repair_eval.json").read_text())
    bands = record["inpainting"]["bands"]
    assert [band["label"] for band in bands] == ["10-20%", "20-30%", "30-40%", "40-50%", "50-60%"]
    assert set(bands[0]["methods"]) == {"masked", "net", "telea", "ns"}
    assert (out / "repair_strip.png").stat().st_size > 0 and (out / "repair" / "report.html").is_file()
    edit = json.loads((out / "edit_Black_Hair.json").read_text())
    assert edit["attribute"] == "Black_Hair" and edit["condition_on"] == ["Eyeglasses"]
    assert [row["strength"] for row in edit["measurements"]["per_strength"]] == [-1.0, 0.0, 1.0]
    summary = (out / "summary-repair.txt").read_text()
    assert "identity distance" in summary and "Black_Hair" in summary

    capsys.readouterr()
    before = (out / "repair" / "repair_eval.json").stat().st_mtime
    run_repair_demo(str(out), str(data), size=32, plan=TINY, progress=False)
    assert "reusing finished repair run" in capsys.readouterr().out
    assert (out / "repair" / "repair_eval.json").stat().st_mtime == before
