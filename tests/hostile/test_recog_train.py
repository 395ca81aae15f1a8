"""Hostile and careless `facegan recog train` input: one `error:` line (exit 2), 130 after a clean Ctrl-C, never a traceback."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from facegan.errors import FaceganError
from facegan.run import Run
from tests.hostile.helpers import refused
from tests.recognition.identities import save_identity_dataset

TINY = ["--batch-size", "8", "--embedding-size", "8", "--no-progress", "--set", "backbone.width=4", "--set", "backbone.blocks=[1,1,1,1]",
        "--set", "runtime.tensorboard=false", "--set", "calibration_images=2", "--set", "runtime.device=cpu"]


def _build_parser():
    """The CLI with a `recog` group: cli/recog.py's once merged, else one built here around recog_train.register."""
    from facegan.cli import main as cli_main
    from facegan.cli import recog_train

    parser = cli_main._Parser(prog="facegan")
    commands = parser.add_subparsers(dest="command", required=True)
    try:
        from facegan.cli import recog

        recog.register(commands)
    except ImportError:
        recog_train.register(commands.add_parser("recog").add_subparsers(dest="verb", required=True))
    from facegan.cli import sample

    sample.register(commands)
    return parser


@pytest.fixture(autouse=True)
def recog_cli(monkeypatch):
    from facegan.cli import main as cli_main

    monkeypatch.setattr(cli_main, "build_parser", _build_parser)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("hostile_recog") / "shapes", num_identities=4, per_identity=3)


@pytest.fixture(scope="module")
def recog_run(shapes, tmp_path_factory):
    from facegan.cli import main as cli_main

    out = tmp_path_factory.mktemp("hostile_recog") / "run"
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse fixture is not in place yet
        patch.setattr(cli_main, "build_parser", _build_parser)
        assert cli_main.main(["recog", "train", "--data", str(shapes), "--out", str(out), "--steps", "1", *TINY]) == 0
    return out


def _train(data, out, *extra):
    return ["recog", "train", *[part for path in data for part in ("--data", str(path))], "--out", str(out), "--steps", "1", *TINY, *extra]


def test_recog_train_refuses_a_dataset_without_identities(faces32, tmp_path, capsys):
    assert "has no identity labels" in refused(_train([faces32], tmp_path / "run"), capsys)
    assert not (tmp_path / "run").exists()


def test_recog_train_refuses_a_dataset_with_one_identity(tmp_path, capsys):
    data = save_identity_dataset(tmp_path / "one", num_identities=1, per_identity=4)
    assert "one identity only" in refused(_train([data], tmp_path / "run"), capsys)


def test_recog_train_refuses_chips_outside_32_to_112_px(tmp_path, capsys):
    data = save_identity_dataset(tmp_path / "small", num_identities=3, per_identity=3, size=16)
    assert "32-112 px" in refused(_train([data], tmp_path / "run"), capsys)


def test_recog_train_refuses_datasets_of_different_sizes(shapes, tmp_path, capsys):
    other = save_identity_dataset(tmp_path / "big", num_identities=3, per_identity=3, size=48)
    assert "one --size" in refused(_train([shapes, other], tmp_path / "run"), capsys)


def test_recog_train_refuses_mix_with_one_dataset(shapes, tmp_path, capsys):
    assert "exactly two --data" in refused(_train([shapes], tmp_path / "run", "--mix", "0.5"), capsys)


def test_recog_train_refuses_a_mix_outside_zero_to_one(shapes, tmp_path, capsys):
    assert "--mix must be below 1" in refused(_train([shapes, shapes], tmp_path / "run", "--mix", "1.5"), capsys)


def test_recog_train_refuses_steps_and_epochs_together(shapes, tmp_path, capsys):
    assert "not allowed with argument" in refused(_train([shapes], tmp_path / "run", "--epochs", "2"), capsys)


def test_recog_train_without_data_or_length_says_what_to_pass(shapes, tmp_path, capsys):
    assert "pass --data" in refused(["recog", "train", "--out", str(tmp_path / "run"), "--steps", "1"], capsys)
    assert "--steps N or --epochs E" in refused(["recog", "train", "--data", str(shapes), "--out", str(tmp_path / "run")], capsys)


def test_recog_train_into_an_existing_run_without_resume_is_refused(shapes, recog_run, capsys):
    assert "pass --resume" in refused(_train([shapes], recog_run), capsys)


def test_recog_train_resume_of_a_gan_run_is_refused(tmp_path, capsys):
    (tmp_path / "gan").mkdir()
    (tmp_path / "gan/config.json").write_text(json.dumps({"kimg": 1.0, "preset": "default"}))
    assert "is a GAN run" in refused(["recog", "train", "--out", str(tmp_path / "gan"), "--resume", "--steps", "2"], capsys)


def test_recog_train_resume_with_other_data_is_refused(recog_run, tmp_path, capsys):
    other = save_identity_dataset(tmp_path / "other", num_identities=4, per_identity=3, seed=3)
    assert "content hash changed" in refused(["recog", "train", "--out", str(recog_run), "--resume", "--data", str(other), "--steps", "2"], capsys)


def test_recog_train_refuses_a_negative_adversarial_eps(shapes, tmp_path, capsys):
    assert "--adversarial-eps '-4' is negative" in refused(_train([shapes], tmp_path / "run", "--adversarial-eps", "-4"), capsys)
    # argparse reads a bare -4/255 as an option (one usage line); with = it reaches the budget check.
    assert "--adversarial-eps '-4/255' is negative" in refused(_train([shapes], tmp_path / "run", "--adversarial-eps=-4/255"), capsys)
    assert not (tmp_path / "run").exists()


def test_recog_train_refuses_an_adversarial_eps_above_255(shapes, tmp_path, capsys):
    assert "--adversarial-eps '300' is above 255" in refused(_train([shapes], tmp_path / "run", "--adversarial-eps", "300"), capsys)


def test_recog_train_refuses_an_adversarial_eps_that_is_no_number(shapes, tmp_path, capsys):
    assert "--adversarial-eps '4/0' is not a budget" in refused(_train([shapes], tmp_path / "run", "--adversarial-eps", "4/0"), capsys)


def test_recog_train_refuses_an_unknown_adversarial_norm(shapes, tmp_path, capsys):
    line = refused(_train([shapes], tmp_path / "run", "--adversarial-eps", "4", "--adversarial-norm", "l3"), capsys)
    assert "unknown norm 'l3' for --adversarial-norm; choose linf or l2" in line


def test_recog_train_refuses_zero_adversarial_steps(shapes, tmp_path, capsys):
    assert "--adversarial-steps must be at least 1" in refused(_train([shapes], tmp_path / "run", "--adversarial-eps", "4",
                                                                      "--adversarial-steps", "0"), capsys)


def test_recog_train_refuses_a_zero_adversarial_step_size(shapes, tmp_path, capsys):
    assert "--adversarial-step-size must be positive" in refused(_train([shapes], tmp_path / "run", "--adversarial-eps", "4",
                                                                        "--adversarial-step-size", "0"), capsys)


def test_recog_train_resume_with_another_adversarial_budget_is_refused(recog_run, capsys):
    line = refused(["recog", "train", "--out", str(recog_run), "--resume", "--steps", "2", "--adversarial-eps", "4/255"], capsys)
    assert "'adversarial.eps' differs" in line


def test_recog_train_with_adversarial_options_trains_and_records_them(shapes, tmp_path, capsys):
    from facegan.cli.main import main

    out = tmp_path / "run"
    assert main(_train([shapes], out, "--adversarial-eps", "4/255", "--adversarial-steps", "2", "--adversarial-norm", "linf")) == 0
    assert Run(out).read_config()["adversarial"] == {"eps": 4.0, "steps": 2, "norm": "linf", "step_size": None, "loss": "madry",
                                                     "clean_weight": 0.0, "beta": 6.0, "impersonation_weight": 1.0}
    assert json.loads((Run(out).export_dir / "config.json").read_text())["adversarial_training"]["description"] == \
        "PGD-AT linf eps 4 (0..255), 2 steps"


def test_sample_refuses_a_recogniser_run(recog_run, tmp_path, capsys):
    assert "not a facegan generator export" in refused(["sample", str(recog_run), "--seeds", "0-3", "--grid", str(tmp_path / "g.png")], capsys)
    from facegan.models.export import load_generator

    with pytest.raises(FaceganError, match="not a facegan generator export"):
        load_generator(recog_run)


def test_load_recogniser_export_refuses_a_generator_export(tmp_path):
    from facegan.recognition.export import is_recogniser_export, load_recogniser_export

    (tmp_path / "export").mkdir()
    (tmp_path / "export/config.json").write_text(json.dumps({"format": "facegan-generator", "format_version": 1}))
    (tmp_path / "export/model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(FaceganError, match="is a generator .*not a face recogniser"):
        load_recogniser_export(tmp_path / "export")
    assert not is_recogniser_export(tmp_path / "export")


def test_load_recogniser_export_of_a_corrupt_weights_file_is_one_line(recog_run, tmp_path):
    import shutil

    from facegan.recognition.export import load_recogniser_export

    copy = tmp_path / "export"
    shutil.copytree(recog_run / "export", copy)
    (copy / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(FaceganError, match="corrupt or unreadable"):
        load_recogniser_export(copy)


def test_recog_train_ctrl_c_checkpoints_and_exits_130(shapes, tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import sys
        from facegan.cli import main as cli_main
        from tests.hostile.test_recog_train import _build_parser
        cli_main.build_parser = _build_parser
        sys.exit(cli_main.main({["recog", "train", "--data", str(shapes), "--out", str(out),
                                  "--steps", "100000", *TINY, "--set", "schedule.log_steps=1"]!r}))
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.path.join(root, "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
    deadline = time.time() + 120
    while not Run(out).stats_path.exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "resume with: facegan recog train" in stdout and "Traceback" not in stderr
    import torch

    assert torch.load(Run(out).state_path, weights_only=True)["num_steps"] >= 1


@pytest.mark.parametrize("option", ["--adversarial-eps", "--adversarial-step-size"])
def test_recog_train_refuses_an_overflowing_adversarial_budget_in_one_line(shapes, tmp_path, capsys, option):
    extra = [] if option == "--adversarial-eps" else ["--adversarial-eps", "4"]
    line = refused(_train([shapes], tmp_path / "run", *extra, option, "1e300/1e-300"), capsys)
    assert f"{option} '1e300/1e-300' is not a budget" in line
    assert not (tmp_path / "run").exists()


def test_recog_train_stores_a_minus_zero_adversarial_eps_as_zero(shapes, tmp_path, capsys):
    from facegan.cli.main import main

    assert main(_train([shapes], tmp_path / "run", "--adversarial-eps", "-0", "--dry-run")) == 0
    assert '"eps": 0.0' in capsys.readouterr().out


@pytest.mark.parametrize("option, value", [("--adversarial-steps", "5"), ("--adversarial-step-size", "1/255"), ("--adversarial-norm", "l2"),
                                           ("--adversarial-loss", "trades"), ("--adversarial-clean-weight", "0.5"),
                                           ("--adversarial-beta", "6")])
def test_recog_train_refuses_adversarial_options_without_a_budget(shapes, tmp_path, capsys, option, value):
    line = refused(_train([shapes], tmp_path / "run", option, value), capsys)
    assert f"{option} is an option of adversarial training, which is off (no --adversarial-eps)" in line
    assert not (tmp_path / "run").exists()


def test_recog_train_resume_refuses_adversarial_options_of_a_plain_run(recog_run, capsys):
    line = refused(["recog", "train", "--out", str(recog_run), "--resume", "--steps", "2", "--adversarial-steps", "5"], capsys)
    assert "--adversarial-steps is an option of adversarial training, which is off" in line


def test_recog_train_refuses_an_unknown_adversarial_loss(shapes, tmp_path, capsys):
    line = refused(_train([shapes], tmp_path / "run", "--adversarial-eps", "4", "--adversarial-loss", "free"), capsys)
    assert "unknown loss 'free' for --adversarial-loss; choose madry, trades, trades-impersonation" in line


@pytest.mark.parametrize("extra, message", [
    (["--adversarial-clean-weight", "1"], "--adversarial-clean-weight must be below 1"),
    (["--adversarial-clean-weight", "nan"], "adversarial.clean_weight': nan is not a finite number"),
    (["--adversarial-beta", "-1"], "--adversarial-beta must be positive"),
    (["--adversarial-loss", "trades", "--adversarial-clean-weight", "0.5"], "TRADES always trains on the clean loss"),
    (["--adversarial-beta", "2"], "Madry's loss has none"),
    (["--adversarial-loss", "madry", "--adversarial-beta", "100"], "Madry's loss has none"),
])
def test_recog_train_refuses_impossible_adversarial_loss_options(shapes, tmp_path, capsys, extra, message):
    line = refused(_train([shapes], tmp_path / "run", "--adversarial-eps", "4", *extra), capsys)
    assert message in line
    assert not (tmp_path / "run").exists()


def test_recog_train_init_fine_tunes_a_run_and_records_it(shapes, recog_run, tmp_path, capsys):
    from facegan.cli.main import main

    out = tmp_path / "tuned"
    assert main(_train([shapes], out, "--init", str(recog_run), "--adversarial-eps", "4", "--adversarial-loss", "trades")) == 0
    export = json.loads((Run(out).export_dir / "config.json").read_text())
    assert export["init"]["path"] == str(Run(recog_run).export_dir.resolve())
    assert export["adversarial_training"]["method"] == "trades-cosine"


@pytest.mark.parametrize("what", ["missing", "dataset", "wide"])
def test_recog_train_refuses_a_bad_init_in_one_line(shapes, recog_run, tmp_path, capsys, what):
    init = {"missing": str(tmp_path / "nowhere"), "dataset": str(shapes), "wide": str(recog_run)}[what]
    extra = ["--set", "backbone.width=8"] if what == "wide" else []
    line = refused(_train([shapes], tmp_path / "run", "--init", init, *extra), capsys)
    expected = {"missing": "nowhere", "dataset": "is not a recogniser", "wide": "another backbone than this run (width 4 vs 8"}[what]
    assert expected in line
    assert not (tmp_path / "run").exists()


def test_recog_train_refuses_a_generator_as_init(shapes, tmp_path, capsys):
    (tmp_path / "export").mkdir()
    (tmp_path / "export/config.json").write_text(json.dumps({"format": "facegan-generator", "format_version": 1}))
    (tmp_path / "export/model.safetensors").write_bytes(b"\0" * 16)
    line = refused(_train([shapes], tmp_path / "run", "--init", str(tmp_path / "export")), capsys)
    assert "is a generator" in line
    assert not (tmp_path / "run").exists()
