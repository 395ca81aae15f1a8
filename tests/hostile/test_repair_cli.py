"""Hostile and careless `facegan repair train / apply` input: one `error:` line (exit 2), never a traceback or a lost file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from tests.hostile.helpers import refused

TINY = ["--batch-size", "4", "--no-progress", "--set", "model.width=4", "--set", "model.discriminator_width=4",
        "--set", "loss.identity=0", "--set", "runtime.tensorboard=false", "--set", "runtime.device=cpu", "--set", "runtime.num_threads=1"]


@pytest.fixture(scope="module")
def repair_run(faces32, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile_repair") / "run"
    assert main(["repair", "train", "--data", str(faces32), "--out", str(out), "--steps", "1", *TINY]) == 0
    return out


def _apply(run, data, out, *extra):
    return ["repair", "apply", str(run), str(data), "--out", str(out), *extra]


def test_apply_refuses_a_mask_of_another_size(repair_run, faces32, tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.zeros((64, 64), bool) | (np.arange(64) < 10)[:, None])
    line = refused(_apply(repair_run, faces32, tmp_path / "o", "--mask", str(tmp_path / "m.npy"), "--limit", "2"), capsys)
    assert "64, 64" in line and "32x32" in line and not (tmp_path / "o").exists()


def test_apply_refuses_an_all_hole_mask(repair_run, faces32, tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.ones((32, 32), bool))
    assert "hides every pixel" in refused(_apply(repair_run, faces32, tmp_path / "o", "--mask", str(tmp_path / "m.npy")), capsys)


def test_apply_refuses_mask_ratio_without_mask_kind(repair_run, faces32, tmp_path, capsys):
    assert "give it with --mask-kind" in refused(_apply(repair_run, faces32, tmp_path / "o", "--mask-ratio", "0.3"), capsys)


def test_apply_refuses_a_mask_ratio_outside_0_95(repair_run, faces32, tmp_path, capsys):
    assert "--mask-ratio must be a number between" in refused(
        _apply(repair_run, faces32, tmp_path / "o", "--mask-kind", "box", "--mask-ratio", "nan"), capsys)


def test_apply_refuses_holes_and_degradation_together(repair_run, faces32, tmp_path, capsys):
    assert "not both" in refused(_apply(repair_run, faces32, tmp_path / "o", "--mask-kind", "box", "--degrade", "noise"), capsys)


def test_apply_refuses_inpainting_baseline_without_masks(faces32, tmp_path, capsys):
    assert "telea fills holes" in refused(["repair", "apply", "telea", str(faces32), "--out", str(tmp_path / "o"), "--degrade", "blur"], capsys)


def test_apply_refuses_restoring_baseline_with_masks(faces32, tmp_path, capsys):
    assert "fills no holes" in refused(["repair", "apply", "unsharp", str(faces32), "--out", str(tmp_path / "o"), "--mask-kind", "box"], capsys)


def test_apply_refuses_images_of_another_size(repair_run, faces16, tmp_path, capsys):
    line = refused(_apply(repair_run, faces16, tmp_path / "o", "--mask-kind", "box"), capsys)
    assert "16x16" in line and "--size 32" in line


def test_apply_refuses_out_inside_the_dataset(repair_run, faces32, capsys):
    line = refused(_apply(repair_run, faces32, faces32 / "results", "--mask-kind", "box"), capsys)
    assert "is the input" in line and not (faces32 / "results").exists()


def test_apply_never_writes_into_a_folder_of_foreign_files(repair_run, faces32, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert "did not write" in refused(_apply(repair_run, faces32, tmp_path / "mine", "--mask-kind", "box"), capsys)
    assert sorted(path.name for path in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_apply_refuses_a_missing_model(faces32, tmp_path, capsys):
    assert "no such run or export" in refused(_apply(tmp_path / "nope", faces32, tmp_path / "o", "--mask-kind", "box"), capsys)


def test_apply_refuses_a_baseline_method_with_a_model(repair_run, faces32, tmp_path, capsys):
    assert "needs no model" in refused(_apply(repair_run, faces32, tmp_path / "o", "--mask-kind", "box", "--method", "ns"), capsys)


def test_apply_net_refuses_a_generator_run(faces32, tmp_path, capsys, tiny_config):
    from facegan import train

    run = train(tiny_config(faces32, tmp_path / "gan", kimg=0.008)).run_dir
    line = refused(_apply(run, faces32, tmp_path / "o", "--mask-kind", "box", "--method", "net"), capsys)
    assert "is a generator" in line and "not a repair model" in line


def test_apply_refuses_corrupt_weights(repair_run, faces32, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(repair_run, copy)
    (copy / "export" / "model.safetensors").write_bytes(b"garbage")
    assert "corrupt or unreadable" in refused(_apply(copy, faces32, tmp_path / "o", "--mask-kind", "box"), capsys)


def test_train_refuses_a_size_the_network_cannot_take(tmp_path, capsys):
    FaceDataset(np.zeros((4, 24, 24, 1), np.uint8), {"source": "test", "source_kind": "builtin"}).save(tmp_path / "d24")
    line = refused(["repair", "train", "--data", str(tmp_path / "d24"), "--out", str(tmp_path / "r"), "--steps", "1", *TINY], capsys)
    assert "24 px" in line and "--size 32" in line and not (tmp_path / "r").exists()


def test_train_refuses_out_inside_the_dataset(faces32, capsys):
    line = refused(["repair", "train", "--data", str(faces32), "--out", str(faces32 / "run"), "--steps", "1", *TINY], capsys)
    assert "inside the dataset" in line and not (faces32 / "run").exists()


def test_train_resume_refuses_a_gan_run(faces32, tmp_path, capsys, tiny_config):
    from facegan import train

    run = train(tiny_config(faces32, tmp_path / "gan", kimg=0.008)).run_dir
    assert "is a GAN run (facegan train), not a repair run" in refused(["repair", "train", "--out", str(run), "--resume", "--steps", "2"], capsys)


def test_train_resume_of_nothing_is_refused(tmp_path, capsys):
    assert "nothing to resume" in refused(["repair", "train", "--out", str(tmp_path / "r"), "--resume", "--steps", "2"], capsys)


def test_train_refuses_an_unknown_mask_kind(faces32, tmp_path, capsys):
    line = refused(["repair", "train", "--data", str(faces32), "--out", str(tmp_path / "r"), "--steps", "1",
                    "--set", 'damage.mask_kinds=["hat"]'], capsys)
    assert "'hat' is not one of box" in line


def test_apply_json_has_no_nan_or_inf(repair_run, faces32, tmp_path):
    out = tmp_path / "o"
    assert main(_apply(repair_run, faces32, out, "--mask-kind", "box", "--limit", "2")) == 0
    json.loads((out / "repair.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in repair.json"))


def test_apply_refuses_projection_steps_for_the_network(repair_run, faces32, tmp_path, capsys):
    assert "needs --method projection" in refused(_apply(repair_run, faces32, tmp_path / "o", "--mask-kind", "box", "--steps", "5"), capsys)


def test_apply_projection_refuses_a_repair_run(repair_run, faces32, tmp_path, capsys):
    line = refused(_apply(repair_run, faces32, tmp_path / "o", "--mask-kind", "box", "--method", "projection"), capsys)
    assert "not a facegan generator export" in line


def test_train_ctrl_c_checkpoints_and_exits_130(faces32, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from facegan.run import Run

    out = tmp_path / "run"
    argv = ["repair", "train", "--data", str(faces32), "--out", str(out), "--steps", "100000", *TINY, "--set", "schedule.log_steps=1"]
    script = f"import sys\nfrom facegan.cli.main import main\nsys.exit(main({argv!r}))\n"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(root, "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
    deadline = time.time() + 120
    while not Run(out).stats_path.exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "resume with: facegan repair train" in stdout and "Traceback" not in stderr
    import torch

    assert torch.load(Run(out).state_path, weights_only=True)["num_steps"] >= 1
    assert main(["repair", "train", "--out", str(out), "--resume", "--steps", "3", "--no-progress"]) == 0


def test_gan_and_recogniser_resume_of_a_repair_run_name_the_right_command(repair_run, capsys):
    for command in (["train", "--out", str(repair_run), "--resume", "--kimg", "1"],
                    ["recog", "train", "--out", str(repair_run), "--resume", "--steps", "3"]):
        line = refused(command, capsys)
        assert "is a face-repair run (facegan repair train)" in line and "facegan repair train --out" in line


def test_apply_with_an_empty_mask_reports_capped_psnr_not_a_traceback(repair_run, faces32, tmp_path, capsys):
    masks = np.zeros((2, 32, 32), bool)
    masks[1, 8:16, 8:16] = True  # image 0 has no hole: its repair is exact (PSNR inf)
    np.save(tmp_path / "m.npy", masks)
    assert main(_apply(repair_run, faces32, tmp_path / "o", "--mask", str(tmp_path / "m.npy"), "--limit", "2")) == 0
    record = json.loads((tmp_path / "o" / "repair.json").read_text())
    assert record["images"][0]["psnr"] is None and record["psnr_cap_db"] == 100.0
    second = record["images"][1]["psnr"]
    assert record["means"]["psnr"] == pytest.approx((100.0 + second) / 2, abs=1e-5)  # both images counted, as for SSIM
    assert "psnr" in capsys.readouterr().out


def test_eval_refuses_to_write_into_another_run(repair_run, faces32, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"kind": "repair"}))
    (other / "repair_eval.json").write_text('{"mine": 1}')
    line = refused(["repair", "eval", str(repair_run), "--data", str(faces32), "--out", str(other), "--limit", "2", "--no-fd"], capsys)
    assert "is the run" in line and (other / "repair_eval.json").read_text() == '{"mine": 1}'
    (other / "checkpoints").mkdir()
    line = refused(["repair", "eval", str(repair_run), "--data", str(faces32), "--out", str(other / "checkpoints"), "--limit", "2"], capsys)
    assert "lies inside the run" in line
