"""Found by a hostile sweep of the merged recognition commands (`recog eval|embed|train`): one `error:` line, exit 2, nothing spoilt."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from facegan.run import Run
from tests.hostile.helpers import refused
from tests.recognition.helpers import save_identity_dataset, write_pairs


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("sweep") / "ids")


def _eval(recogniser, identities, pairs, *extra):
    return ["recog", "eval", str(recogniser), "--data", str(identities), "--pairs", str(pairs), "--no-progress", *extra]


def test_recog_eval_refuses_another_recognisers_run_as_out(identities, tmp_path, capsys):
    run = Run(tmp_path / "recog")
    run.path.mkdir()
    run.write_config({"kind": "recogniser"})
    line = refused(_eval("pixel", identities, write_pairs(tmp_path / "pairs.txt"), "--out", str(run.path)), capsys)
    assert "is the run of another recogniser" in line
    assert not run.verification_path.exists()  # `facegan report RUN` would have shown pixel's numbers as the run's


def test_recog_eval_refuses_an_export_folder_as_out(identities, tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text("{}")
    (export / "model.safetensors").write_bytes(b"weights")
    line = refused(_eval("pixel", identities, write_pairs(tmp_path / "pairs.txt"), "--out", str(export)), capsys)
    assert "is an export folder" in line
    assert sorted(path.name for path in export.iterdir()) == ["config.json", "model.safetensors"]


def test_recog_eval_default_results_never_go_into_a_standalone_export(tmp_path):
    from facegan.cli.recog import _default_results_dir

    export = tmp_path / "shipped"
    export.mkdir()
    (export / "config.json").write_text("{}")
    (export / "model.safetensors").write_bytes(b"weights")
    assert _default_results_dir(str(export)) is None
    assert _default_results_dir(str(export / "model.safetensors")) is None


def test_recog_eval_of_a_dataset_as_recogniser_says_it_is_not_a_recogniser(identities, tmp_path, capsys):
    line = refused(_eval(identities, identities, write_pairs(tmp_path / "pairs.txt")), capsys)
    assert "is not a recogniser" in line and "dataset folder itself" not in line


def test_recog_embed_lbph_refuses_a_one_pixel_image_instead_of_an_opencv_traceback(tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.new("RGB", (32, 32), (9, 9, 9)).save(folder / "a.png")
    Image.new("RGB", (1, 1), (1, 2, 3)).save(folder / "one.png")
    line = refused(["recog", "embed", "lbph", str(folder), "--out", str(tmp_path / "e.npy")], capsys)
    assert "at least 3x3 px, got 1x1" in line


def test_recog_embed_refuses_out_inside_the_dataset(identities, capsys):
    line = refused(["recog", "embed", "pixel", str(identities), "--out", str(identities / "emb.npy")], capsys)
    assert "lies inside the dataset" in line
    assert not (identities / "emb.npy").exists()


@pytest.mark.parametrize("copy", [False, True])
def test_recog_train_refuses_one_dataset_given_twice(identities, tmp_path, capsys, copy):
    second = identities
    if copy:
        second = tmp_path / "copy"
        shutil.copytree(identities, second)
    line = refused(["recog", "train", "--data", str(identities), "--data", str(second), "--out", str(tmp_path / "run"), "--steps", "1",
                    "--no-progress"], capsys)
    assert "is the same dataset as" in line  # else every person became two classes
    assert not (tmp_path / "run").exists()


def test_recog_train_refuses_out_inside_the_dataset_and_leaves_no_folder(identities, capsys):
    before = sorted(path.name for path in identities.iterdir())
    line = refused(["recog", "train", "--data", str(identities), "--out", str(identities / "runs" / "r"), "--steps", "1", "--no-progress"], capsys)
    assert "lies inside the dataset" in line
    assert sorted(path.name for path in identities.iterdir()) == before
    assert np.load(identities / "images.npy", mmap_mode="r").shape[0] > 0


def test_recog_eval_into_a_folder_another_eval_is_writing_is_refused_not_interleaved(identities, tmp_path, capsys):
    out = Run(tmp_path / "results")
    with out.lock():  # another `recog eval --out` in the middle of writing its four files
        line = refused(_eval("pixel", identities, write_pairs(tmp_path / "pairs.txt"), "--out", str(out.path)), capsys)
    assert "in use by another facegan process" in line
    assert not out.verification_pairs_path.exists() and not out.verification_path.exists()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_drawing_workers_end_when_data_prepare_is_killed(tmp_path):
    script = "from facegan.data.rendered import render_faces\nrender_faces(2000, 20, 32, workers=2)\n"
    parent = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(_children(parent.pid)) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.05)
        workers = _children(parent.pid)
        assert len(workers) >= 2, "the pool never started"
        time.sleep(0.5)  # the workers are drawing
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z" for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived their killed parent"
            time.sleep(0.1)
    finally:
        parent.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only on failure: the orphans this test made


def test_recog_eval_of_one_fold_pairs_is_refused_before_any_embedding(identities, tmp_path, capsys, monkeypatch):
    from facegan.recognition import verification

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded images for pairs the protocol cannot use")

    monkeypatch.setattr(verification, "_embed_rows", no_embedding)
    line = refused(["recog", "eval", "pixel", "--data", str(identities), "--pairs", str(write_pairs(tmp_path / "p.txt", num_folds=1, per_fold=4))],
                   capsys)
    assert "needs at least 2 folds" in line


def test_recog_eval_dlib_on_an_unusable_device_is_one_line(identities, tmp_path, capsys):
    line = refused(_eval("dlib", identities, write_pairs(tmp_path / "pairs.txt"), "--device", "nan"), capsys)
    assert "cannot use device 'nan'" in line


def _results(identities, tmp_path, name):
    from facegan.recognition.verification import verify

    out = tmp_path / "results" / name
    verify("pixel", identities, write_pairs(tmp_path / "pairs.txt"), out_dir=out)
    return Run(out)


def test_report_of_results_with_a_fifo_pairs_csv_does_not_hang(identities, tmp_path):
    results = _results(identities, tmp_path, "pixel")
    results.verification_pairs_path.unlink()
    os.mkfifo(results.verification_pairs_path)
    results.verification_examples_path.unlink()
    results.verification_examples_path.symlink_to("/dev/zero")
    done = subprocess.run([sys.executable, "-m", "facegan", "report", str(tmp_path / "results")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert "Face verification" in (tmp_path / "results" / "report.html").read_text()


def test_report_leaves_out_a_hand_edited_verification_record_not_the_whole_section(identities, tmp_path):
    import json

    from facegan.report.recognition_sections import verification_section

    _results(identities, tmp_path, "good")
    edited = _results(identities, tmp_path, "edited")
    record = json.loads(edited.verification_path.read_text())
    record["accuracy_mean"] = "abc"
    edited.verification_path.write_text(json.dumps(record))
    section = verification_section(tmp_path / "results")
    assert [row[0] for row in section.tables[0].rows] == ["pixel (good)"]


def test_recog_train_resume_of_a_missing_run_says_there_is_nothing_to_resume(tmp_path, capsys):
    line = refused(["recog", "train", "--out", str(tmp_path / "nothing"), "--resume", "--steps", "2"], capsys)
    assert "nothing to resume" in line  # not "pass --data", which a resume does not need
    assert not (tmp_path / "nothing").exists()


def test_recog_train_resume_of_an_export_folder_names_the_run(tmp_path, capsys):
    run = Run(tmp_path / "recog")
    run.export_dir.mkdir(parents=True)
    run.write_config({"kind": "recogniser"})
    (run.export_dir / "config.json").write_text('{"format": "facegan-recogniser", "datasets": []}')
    (run.export_dir / "model.safetensors").write_bytes(b"weights")
    line = refused(["recog", "train", "--out", str(run.export_dir), "--resume", "--steps", "2"], capsys)
    assert "is an export folder" in line and f"--out {run.path} --resume" in line


def test_recog_train_mix_nan_says_it_is_not_a_finite_number(identities, tmp_path, capsys):
    line = refused(["recog", "train", "--data", str(identities), "--data", str(identities), "--mix", "nan", "--out", str(tmp_path / "r"),
                    "--steps", "1"], capsys)
    assert "'mix': nan is not a finite number" in line  # was "nan does not fit float | None"


def test_gan_resume_of_a_recogniser_run_says_what_it_is(tmp_path, capsys):
    from facegan.cli.main import main
    from facegan.run import Run

    run = tmp_path / "recog"
    Run(run).write_config({"kind": "recogniser", "backbone": {"width": 8}, "data": [], "out": str(run)})
    assert main(["train", "--out", str(run), "--resume", "--kimg", "1"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: ") and "is a face recogniser run (facegan recog train), not a GAN run" in line and "\n" not in line
