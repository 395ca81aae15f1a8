"""`--help` shows each default once and correctly, the preset names, and every config field's docstring."""
import re
import subprocess
import sys

import pytest

from facegan.cli.main import build_parser, main


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _subcommands():
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    names = []
    for name, sub in commands.choices.items():
        verbs = [action for action in sub._actions if getattr(action, "choices", None) and isinstance(action.choices, dict)]
        names.extend([[name, verb] for verb in verbs[0].choices] if verbs else [[name]])
    return names


def test_train_help_lists_every_config_field_with_its_docstring(capsys):
    from facegan.config import describe_fields
    from facegan.training.config import TrainConfig

    text = " ".join(_help(capsys, "train").split())  # unwrap
    assert "config fields (--set KEY=VALUE" in text
    assert "model.g_channels (int, default 64; seed-dcgan: 256): Widest generator feature maps (at 4x4); later stages halve down to `min_channels`." in text
    assert "ema.half_life_kimg (float, default 5): Half-life of the average in thousands of images." in text
    assert "loss.kind (logistic | hinge, default logistic):" in text
    for key, _kind, _default, _doc in describe_fields(TrainConfig):
        if key not in ("data", "out", "preset"):
            assert f" {key} (" in text, key


def test_train_help_lists_the_presets_and_flag_defaults_from_the_config(capsys):
    text = _help(capsys, "train")
    assert "--preset {default,seed-dcgan,dp}" in text
    flat = " ".join(text.split())
    assert "images per step (default: 64)" in flat and "(default: 100)" in flat


@pytest.mark.parametrize("argv", [[], *_subcommands()], ids=lambda argv: " ".join(argv) or "facegan")
def test_each_default_is_shown_once_and_never_as_none(capsys, argv):
    text = _help(capsys, *argv)
    assert "(default: None)" not in text and "default: None" not in text
    blocks = re.split(r"\n(?=  -)", text)  # one block per option
    for block in blocks:
        assert block.count("(default:") <= 1, block


def test_unknown_preset_is_one_line(capsys, tmp_path):
    assert main(["train", "--data", "d", "--out", str(tmp_path / "x"), "--preset", "nope", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown preset 'nope' (known: default, seed-dcgan, dp)"


def test_top_level_help_does_not_import_torch():
    code = "import sys; from facegan.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
