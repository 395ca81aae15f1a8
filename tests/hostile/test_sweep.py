"""Hostile-user sweep over the merged CLI (issue 7 §1): each item ends in correct work or one
`error:` line with exit status 2 — never a traceback."""
from __future__ import annotations

import os

import pytest
import torch

from facegan.cli.main import main
from tests.hostile.helpers import refused as _refused


@pytest.fixture
def loop(tmp_path):
    """Two symbolic links pointing at each other."""
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    return tmp_path / "loop1"


@pytest.fixture
def export(tmp_path):
    from facegan.models import ModelConfig, build_generator, save_export

    torch.manual_seed(0)
    config = ModelConfig(resolution=16, channels=1, g_channels=16, min_channels=8)
    return save_export(tmp_path / "export", build_generator(config), config, {"dataset_hash": "abc"})


def test_prepare_from_a_symlink_loop_source_is_one_line(capsys, tmp_path, loop):
    assert "loop1" in _refused(["data", "prepare", str(loop), str(tmp_path / "out"), "--size", "16"], capsys)


def test_prepare_into_a_folder_under_a_symlink_loop_is_one_line(capsys, tmp_path, loop):
    assert "loop1" in _refused(["data", "prepare", "builtin:lfw-subset", str(loop / "sub"), "--size", "16"], capsys)


def test_sample_grid_under_a_symlink_loop_is_one_line(capsys, tmp_path, loop, export):
    assert "loop1" in _refused(["sample", str(export), "--seeds", "0-1", "--grid", str(loop / "g.png")], capsys)


def test_sample_out_dir_that_is_a_dangling_link_is_one_line(capsys, tmp_path, export):
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    assert "dangling" in _refused(["sample", str(export), "--seeds", "0-1", "--out-dir", str(tmp_path / "dangling")], capsys)


def test_writable_check_refuses_a_dangling_link_before_any_work(tmp_path):
    from facegan.errors import FaceganError
    from facegan.files import check_writable_target

    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(FaceganError, match="broken symbolic link"):
        check_writable_target(tmp_path / "dangling" / "audit.json", "--out")


DEEP_JSON = "[" * 100_000 + "]" * 100_000  # valid JSON that json.loads cannot nest (RecursionError)


def test_run_json_files_that_are_fifos_or_nested_too_deep_read_as_missing_not_a_hang(tmp_path):
    from facegan.run import Run

    run = Run(tmp_path)
    os.mkfifo(run.metrics_path)
    run.summary_path.write_text(DEEP_JSON)
    assert run.read_metrics() is None and run.read_summary() is None


def test_run_config_nested_too_deep_is_a_facegan_error(tmp_path):
    from facegan.errors import FaceganError
    from facegan.run import Run

    run = Run(tmp_path)
    run.config_path.write_text(DEEP_JSON)
    with pytest.raises(FaceganError, match="not valid JSON"):
        run.read_config()


def test_export_config_nested_too_deep_is_one_line(capsys, tmp_path, export):
    (export / "config.json").write_text(DEEP_JSON)
    assert "corrupt" in _refused(["sample", str(export), "--seeds", "0", "--grid", str(tmp_path / "g.png")], capsys)


def test_audit_json_nested_too_deep_is_not_an_audit_and_never_overwritten(tmp_path):
    from facegan.privacy.audit_result import load_audit

    (tmp_path / "audit.json").write_text(DEEP_JSON)
    assert load_audit(tmp_path) is None


def test_resume_truncation_keeps_hand_edited_stats_lines_whose_kimg_is_not_a_number(tmp_path):
    from facegan.run import Run

    run = Run(tmp_path)
    run.stats_path.write_text('{"kimg": 0.1}\n{"kimg": 0.5}\n{"kimg": "abc"}\n{"kimg": null}\n{"kimg": [1]}\n')
    run.truncate_stats(0.2)  # was ValueError/TypeError from float()
    assert [line["kimg"] for line in run.read_stats()] == [0.1, "abc", None, [1]]


@pytest.mark.parametrize("config", ["x", None, {"data": 5}])
def test_train_api_with_something_other_than_a_config_is_a_facegan_error(config):
    import facegan

    with pytest.raises(facegan.FaceganError, match="TrainConfig"):
        facegan.train(config)  # was AttributeError: ... has no attribute 'privacy'


def test_cli_with_stdout_closed_does_its_work_without_a_traceback(tmp_path, export):
    import subprocess
    import sys

    import facegan

    src = str(os.path.dirname(os.path.dirname(facegan.__file__)))
    grid = tmp_path / "g.png"
    command = f'"{sys.executable}" -m facegan sample "{export}" --seeds 0-1 --grid "{grid}" >&-'
    done = subprocess.run(["bash", "-c", command], env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr and grid.is_file(), done.stderr


def test_report_of_a_run_whose_metrics_json_is_garbage_says_so(tmp_path):
    from facegan.report.card import metrics_section
    from facegan.run import Run

    Run(tmp_path).metrics_path.write_text("garbage")
    section = metrics_section(tmp_path)  # was None: the metrics vanished from the report without a word
    assert section is not None and "facegan eval" in " ".join(section.readings)


def test_a_malformed_command_line_is_one_error_line(capsys):
    """argparse's own refusals (non-numeric values, missing arguments, unknown choices) are one line too."""
    from facegan.cli.main import main

    for argv in (["train", "--out", "r", "--batch-size", "nan"], ["sample"], ["data", "split", "d", "--by", "bogus"], ["nonsense"]):
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: facegan"), (argv, lines)


def test_dp_epsilon_zero_or_negative_says_so(tmp_path, capsys):
    from facegan.cli.main import main

    for value in ("0", "-1"):
        assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--dp-epsilon", value, "--dry-run"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "--dp-epsilon must be positive" in err, err
