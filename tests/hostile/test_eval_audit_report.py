"""Hostile inputs to `facegan eval`, `facegan audit` and `facegan report`: each is refused with exit 2 and
exactly one `error:` line, before any slow work (no image is generated, no file is written)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset


@pytest.fixture(scope="module")
def run(faces16, tmp_path_factory) -> Path:
    from tests.metrics.helpers import train_tiny_run

    return train_tiny_run(faces16, tmp_path_factory.mktemp("runs") / "run")


@pytest.fixture(scope="module")
def sets(faces16, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(train, disjoint holdout, holdout sharing 10 faces with train), from the 100 real faces."""
    images = np.asarray(FaceDataset.load(faces16).images)
    folder = tmp_path_factory.mktemp("sets")
    train = FaceDataset(images[:80]).save(folder / "train")
    holdout = FaceDataset(images[80:]).save(folder / "holdout")
    overlap = FaceDataset(images[70:]).save(folder / "overlap")
    return Path(train), Path(holdout), Path(overlap)


@pytest.fixture
def no_work(monkeypatch):
    """Make the slow parts fail loudly: a refusal must come before them."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the slow work started before the refusal")

    import facegan.metrics.evaluation as evaluation
    import facegan.privacy.audit as audit

    monkeypatch.setattr(evaluation, "evaluate", forbidden)
    monkeypatch.setattr(audit, "audit_generator", forbidden)
    monkeypatch.setattr(audit, "audit_samples", forbidden)


def refused(argv: list[str], capsys, message: str) -> str:
    """Run the CLI; assert exit 2 and one `error:` line on stderr that contains `message`."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    return lines[0]


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder nothing can be written into: read-only for a normal user; /proc for root (who ignores modes)."""
    if os.geteuid() == 0:
        return Path("/proc")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


# ---- eval ---------------------------------------------------------------------------------------
def test_eval_refuses_out_that_is_a_folder(run, faces16, tmp_path, capsys, no_work):
    refused(["eval", str(run), "--data", str(faces16), "--out", str(tmp_path)], capsys, "is a folder")


def test_eval_refuses_out_under_a_file(run, faces16, tmp_path, capsys, no_work):
    (tmp_path / "file").write_text("x")
    refused(["eval", str(run), "--data", str(faces16), "--out", str(tmp_path / "file" / "metrics.json")], capsys, "is a file, not a folder")


def test_eval_never_overwrites_a_file_it_did_not_write(run, faces16, capsys, no_work):
    manifest = Path(faces16) / "manifest.json"
    before = manifest.read_bytes()
    refused(["eval", str(run), "--data", str(faces16), "--out", str(manifest)], capsys, "is not a facegan metrics file")
    assert manifest.read_bytes() == before


def test_eval_refuses_an_unwritable_out_folder(run, faces16, tmp_path, capsys, no_work):
    refused(["eval", str(run), "--data", str(faces16), "--out", str(_unwritable_folder(tmp_path) / "metrics.json")], capsys, "not writable")


@pytest.mark.parametrize("option, value, message", [
    ("--num", "nan", "--num must be a whole number"),
    ("--num", "-5", "--num must be at least 2"),
    ("--num", "1e9", "--num must be a whole number"),
    ("--truncation", "nan", "--truncation must be a number between 0 and 1"),
    ("--truncation", "-0.5", "--truncation must be a number between 0 and 1"),
    ("--seed", "-1", "--seed must be between 0"),
    ("--batch-size", "0", "--batch-size must be between 1"),
])
def test_eval_refuses_impossible_numbers(run, faces16, capsys, no_work, option, value, message):
    refused(["eval", str(run), "--data", str(faces16), option, value], capsys, message)


def test_eval_refuses_an_absurd_num_with_a_memory_estimate(run, faces16, capsys, monkeypatch):
    import facegan.resources as resources

    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 8 * 1024**3)
    line = refused(["eval", str(run), "--data", str(faces16), "--num", "100000000", "--metrics", "fd,kid,prdc", "--no-progress"],
                   capsys, "GiB of memory, but 8.0 GiB is available; lower --num")
    assert "evaluating 100000000 generated images needs about" in line
    assert not (run / "metrics.json").exists()


def test_eval_of_the_current_folder_as_data_is_one_line(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(["eval", str(run), "--data", ".", "--num", "8", "--no-progress"], capsys, "is not a prepared facegan dataset")


def test_eval_refuses_a_device_that_is_not_here(run, faces16, capsys):
    refused(["eval", str(run), "--data", str(faces16), "--num", "8", "--device", "nope", "--no-progress"], capsys, "unknown --device 'nope'")
    pytest.importorskip("torch")
    import torch

    if not torch.cuda.is_available():
        refused(["eval", str(run), "--data", str(faces16), "--num", "8", "--device", "cuda", "--no-progress"], capsys, "no CUDA device")


# ---- audit --------------------------------------------------------------------------------------
def test_audit_refuses_out_that_is_a_file(run, sets, tmp_path, capsys, no_work):
    train, holdout, _ = sets
    (tmp_path / "file").write_text("x")
    refused(["audit", str(run), "--train", str(train), "--holdout", str(holdout), "--out", str(tmp_path / "file")], capsys,
            "is a file; the audit writes a folder")


def test_audit_refuses_an_unwritable_out_folder(run, sets, tmp_path, capsys, no_work):
    train, holdout, _ = sets
    refused(["audit", str(run), "--train", str(train), "--holdout", str(holdout), "--out", str(_unwritable_folder(tmp_path) / "audit")],
            capsys, "not writable")


def test_audit_refuses_holdout_equal_to_train(run, sets, tmp_path, capsys):
    """The same set twice would give a perfect memoriser a clean verdict."""
    train, _, _ = sets
    refused(["audit", str(run), "--train", str(train), "--holdout", str(train), "--num", "8", "--features", "pixel", "--out", str(tmp_path / "a"),
             "--no-progress"], capsys, "--holdout must be disjoint from --train: 80 of its 80 images are in the training set")
    assert not (tmp_path / "a").exists()


def test_audit_refuses_holdout_overlapping_train(run, sets, tmp_path, capsys):
    train, _, overlap = sets
    refused(["audit", str(run), "--train", str(train), "--holdout", str(overlap), "--num", "8", "--features", "pixel", "--out", str(tmp_path / "a"),
             "--no-progress"], capsys, "--holdout must be disjoint from --train: 10 of its 30 images are in the training set")


@pytest.mark.parametrize("value, message", [("nan", "--num must be a whole number"), ("-3", "--num must be at least 2"), ("1", "--num must be at least 2")])
def test_audit_refuses_impossible_num(run, sets, capsys, no_work, value, message):
    train, holdout, _ = sets
    refused(["audit", str(run), "--train", str(train), "--holdout", str(holdout), "--num", value], capsys, message)


def test_audit_refuses_an_absurd_num_with_a_memory_estimate(run, sets, tmp_path, capsys, monkeypatch):
    import facegan.resources as resources

    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 8 * 1024**3)
    train, holdout, _ = sets
    refused(["audit", str(run), "--train", str(train), "--holdout", str(holdout), "--num", "100000000", "--out", str(tmp_path / "a"), "--no-progress"],
            capsys, "auditing 100000000 generated faces needs about")


def test_audit_refuses_the_current_folder_as_train(run, sets, tmp_path, capsys, monkeypatch):
    _, holdout, _ = sets
    monkeypatch.chdir(tmp_path)
    refused(["audit", str(run), "--train", ".", "--holdout", str(holdout), "--out", str(tmp_path / "a"), "--no-progress"], capsys,
            "--train: . is not a prepared facegan dataset")


def test_audit_refuses_out_inside_the_samples(sets, tmp_path, capsys, no_work):
    train, holdout, _ = sets
    (tmp_path / "fakes").mkdir()
    refused(["audit", "--samples", str(tmp_path / "fakes"), "--train", str(train), "--holdout", str(holdout), "--out", str(tmp_path / "fakes" / "audit")],
            capsys, "is inside --samples")


def test_audit_of_missing_samples_is_one_line_even_with_progress(sets, tmp_path, capsys):
    train, holdout, _ = sets
    refused(["audit", "--samples", str(tmp_path / "missing"), "--train", str(train), "--holdout", str(holdout)], capsys, "samples folder not found")


def test_audit_never_overwrites_a_foreign_audit_json(run, sets, tmp_path, capsys, no_work):
    train, holdout, _ = sets
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "audit.json").write_text('{"mine": true}')
    refused(["audit", str(run), "--train", str(train), "--holdout", str(holdout), "--out", str(tmp_path / "out")], capsys, "is not a facegan audit")
    assert (tmp_path / "out" / "audit.json").read_text() == '{"mine": true}'


# ---- report -------------------------------------------------------------------------------------
def test_report_of_an_export_inside_a_run_is_the_runs_report(run, tmp_path, capsys):
    out = tmp_path / "from-export.html"
    assert main(["report", str(run / "export"), "--out", str(out)]) == 0
    page = out.read_text()
    assert f"facegan report: {run.name}" in page and "<h2>Run</h2>" in page and "<h2>Training</h2>" in page


def test_report_of_a_standalone_export_is_refused(run, tmp_path, capsys):
    import shutil

    shutil.copytree(run / "export", tmp_path / "shared-model")
    refused(["report", str(tmp_path / "shared-model")], capsys, "is a stand-alone export")
    assert not (tmp_path / "shared-model" / "report.html").exists()


def test_report_of_a_folder_that_is_not_a_run_is_refused(faces16, tmp_path, capsys, monkeypatch):
    refused(["report", str(faces16)], capsys, "is not a facegan run folder")
    monkeypatch.chdir(tmp_path)
    refused(["report", "."], capsys, "is not a facegan run folder")
    refused(["report", "missing"], capsys, "no such run folder")


@pytest.mark.parametrize("name, message", [("folder", "is a folder"), ("report.txt", "does not end in .html"), ("mine.html", "is not a facegan report")])
def test_report_refuses_bad_out(run, tmp_path, capsys, name, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "mine.html").write_text("<html>my own page</html>")
    refused(["report", str(run), "--out", str(tmp_path / name)], capsys, message)
    assert (tmp_path / "mine.html").read_text() == "<html>my own page</html>"


def test_report_refuses_an_unwritable_out(run, tmp_path, capsys):
    refused(["report", str(run), "--out", str(_unwritable_folder(tmp_path) / "report.html")], capsys, "not writable")


def test_an_export_that_refuses_to_load_is_one_line_or_a_reading(run, sets, tmp_path, capsys, monkeypatch):
    """load_generator refuses broken exports (e.g. non-finite weights) with a FaceganError: eval and audit
    must pass it on as one line, and the report must say so rather than silently drop its samples."""
    import facegan.models.export as export
    from facegan.errors import FaceganError

    def broken(*args, **kwargs):
        raise FaceganError("export/model.safetensors holds non-finite weights; export the model again")

    monkeypatch.setattr(export, "load_generator", broken)
    train, holdout, _ = sets
    refused(["eval", str(run), "--data", str(train), "--num", "8", "--out", str(tmp_path / "m.json"), "--no-progress"], capsys, "non-finite weights")
    refused(["audit", str(run), "--train", str(train), "--holdout", str(holdout), "--num", "8", "--out", str(tmp_path / "a"), "--no-progress"],
            capsys, "non-finite weights")
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert "could not be loaded: export/model.safetensors holds non-finite weights" in (tmp_path / "r.html").read_text()


def test_report_survives_foreign_lines_and_results_in_a_run(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with open(copy / "stats.jsonl", "a") as handle:
        handle.write('{"note": "added by hand"}\n[1, 2]\n')
    (copy / "loss_curves.png").unlink()  # redrawn from the stats by the report
    (copy / "metrics.json").write_text('{"metrics": {"fd": "n/a"}, "protocol": []}')
    assert main(["report", str(copy)]) == 0, capsys.readouterr().err
    page = (copy / "report.html").read_text()
    assert "<h2>Training</h2>" in page and "<h2>Samples</h2>" in page
    assert "<h2>Metrics</h2>" in page and "could not be built from the files" in page


def test_audit_refuses_an_unknown_feature_space_in_one_line(run, sets, tmp_path, capsys):
    train, holdout, _ = sets
    refused(["audit", str(run), "--train", str(train), "--holdout", str(holdout), "--features", "nope", "--out", str(tmp_path / "a")], capsys,
            "unknown feature space 'nope'")


def test_audit_of_samples_in_the_current_folder_writes_beside_it(tmp_path, monkeypatch):
    from facegan.cli.audit import default_output_folder

    (tmp_path / "fakes").mkdir()
    monkeypatch.chdir(tmp_path / "fakes")
    assert default_output_folder(None, ".") == tmp_path / "fakes-audit"  # not "./-audit" nor inside the samples
    assert default_output_folder(None, "fakes") == Path("fakes-audit")
