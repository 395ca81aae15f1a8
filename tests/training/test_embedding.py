"""train() as a library call: callbacks, stopping from another thread, step stats as tensors, time checkpoints."""
import json
import logging
import threading

import pytest
import torch
from safetensors.torch import load_file

from facegan.errors import DivergenceError, FaceganError
from facegan.training import control, loop
from facegan.training.loop import Trainer, train


def _stats_lines(run):
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def _export(run):
    return load_file(str(run / "export" / "model.safetensors"))


def test_on_log_receives_every_stats_line_and_progress_reaches_the_total(faces16, tiny_config, tmp_path):
    logged, progressed = [], []
    result = train(tiny_config(faces16, tmp_path / "run", kimg=0.064), on_log=logged.append,
                   progress=lambda done, total: progressed.append((done, total)))
    assert logged == _stats_lines(tmp_path / "run") and len(logged) == 4
    assert result.last_stats == logged[-1]
    assert progressed[0] == (0.0, 0.064) and progressed[-1] == (0.064, 0.064)
    assert [done for done, _ in progressed] == sorted(done for done, _ in progressed) and len(progressed) == 1 + result.num_steps


def test_should_stop_set_from_another_thread_checkpoints_and_returns_interrupted(faces16, tiny_config, tmp_path):
    stop = threading.Event()
    first_log = threading.Event()
    run = tmp_path / "run"

    def on_log(stats):
        first_log.set()

    setter = threading.Thread(target=lambda: (first_log.wait(60), stop.set()))
    setter.start()
    result = train(tiny_config(faces16, run, kimg=50.0), on_log=on_log, should_stop=stop.is_set)
    setter.join()
    assert result.interrupted and 0 < result.kimg < 50
    state = torch.load(run / "checkpoints" / "state.pt", weights_only=True)
    assert state["num_images_seen"] == round(result.kimg * 1000)  # the checkpoint is the stopping step
    assert json.loads((run / "summary.json").read_text())["interrupted"] is True


def test_train_runs_off_the_main_thread(faces16, tiny_config, tmp_path):
    # A web UI calls train() from a worker thread: no signal handler can be installed there, and none is needed.
    results, errors = [], []

    def work():
        try:
            results.append(train(tiny_config(faces16, tmp_path / "run", kimg=0.032), should_stop=lambda: False))
        except BaseException as error:  # noqa: BLE001 - surfaced by the assert below
            errors.append(error)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(120)
    assert not errors and results[0].kimg == pytest.approx(0.032) and not results[0].interrupted


def test_setup_trainer_sees_the_trainer_before_the_first_step(faces16, tiny_config, tmp_path):
    seen = []
    train(tiny_config(faces16, tmp_path / "run", kimg=0.016), setup_trainer=lambda trainer: seen.append((type(trainer), trainer.num_steps)))
    assert seen == [(Trainer, 0)]


def test_step_stats_as_device_tensors_give_the_same_log_lines(faces16, tiny_config, tmp_path, monkeypatch):
    """Steps return 0-d tensors (no host sync); summing them at log time gives what per-step floats gave."""
    train(tiny_config(faces16, tmp_path / "tensors", kimg=0.064))
    tensor_step = Trainer.step

    def float_step(self):
        stats = tensor_step(self)
        assert all(isinstance(value, torch.Tensor) for value in stats.values())
        return {name: float(value) for name, value in stats.items()}  # the old per-step .item()

    monkeypatch.setattr(Trainer, "step", float_step)
    train(tiny_config(faces16, tmp_path / "floats", kimg=0.064))
    drop = ("time_s", "img_per_s")
    strip = lambda lines: [{k: v for k, v in line.items() if k not in drop} for line in lines]  # noqa: E731
    assert strip(_stats_lines(tmp_path / "tensors")) == strip(_stats_lines(tmp_path / "floats"))


def test_means_accept_floats_and_tensors_with_one_count_per_name():
    sums, counts = {}, {}
    control.accumulate_stats(sums, counts, {"loss_d": 1.0, "r1": torch.tensor(3.0)})
    control.accumulate_stats(sums, counts, {"loss_d": torch.tensor(2.0)})
    assert control.mean_stats(sums, counts) == {"loss_d": 1.5, "r1": 3.0}


def test_non_finite_stats_are_caught_at_log_time_and_never_checkpointed(faces16, tiny_config, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(tiny_config(faces16, run, kimg=0.032))
    before = _export(run)
    float_step = Trainer.step

    def nan_step(self):  # the future step(): no per-step check, a NaN only shows in the accumulated stats
        stats = float_step(self)
        return {**stats, "loss_d": torch.tensor(float("nan"))}

    monkeypatch.setattr(Trainer, "step", nan_step)
    with pytest.raises(DivergenceError, match=r"training diverged: loss_d became nan at kimg 0\.05; the last good checkpoint is kept"):
        train(tiny_config(faces16, run, kimg=0.064), resume=True)
    assert torch.load(run / "checkpoints" / "state.pt", weights_only=True)["num_images_seen"] == 32
    after = _export(run)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [line["kimg"] for line in _stats_lines(run)] == [0.016, 0.032]


def test_checkpoints_on_wall_time_do_not_change_the_trajectory(faces16, tiny_config, tmp_path, monkeypatch):
    schedule = {"checkpoint_kimg": 10.0, "log_kimg": 0.016, "snapshot_kimg": 10.0, "num_snapshot_images": 4}
    saves = []
    real_save = loop.save_state
    monkeypatch.setattr(loop, "save_state", lambda path, state: (saves.append(state["num_images_seen"]), real_save(path, state))[1])
    train(tiny_config(faces16, tmp_path / "timed", kimg=0.064, schedule={**schedule, "checkpoint_minutes": 1e-9}))
    assert saves == [8, 16, 24, 32, 40, 48, 56, 64]  # every step is "minutes later" here: a checkpoint each step
    saves.clear()
    train(tiny_config(faces16, tmp_path / "plain", kimg=0.064, schedule={**schedule, "checkpoint_minutes": 0}))
    assert saves == [64]
    timed, plain = _export(tmp_path / "timed"), _export(tmp_path / "plain")
    assert all(torch.equal(timed[k], plain[k]) for k in plain)


def test_negative_checkpoint_minutes_is_refused(faces16, tiny_config, tmp_path):
    with pytest.raises(FaceganError, match="checkpoint_minutes"):
        train(tiny_config(faces16, tmp_path / "run", schedule={"checkpoint_minutes": -1}))
    assert not (tmp_path / "run").exists()


def test_resume_of_a_run_without_checkpoint_starts_over_with_its_config(faces16, tiny_config, tmp_path, caplog):
    straight = tmp_path / "straight"
    train(tiny_config(faces16, straight, kimg=0.032))
    run = tmp_path / "run"
    # A run killed before its first checkpoint: config, run info and a stats line, nothing else.
    train(tiny_config(faces16, run, kimg=0.032))
    import shutil

    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "export")
    with pytest.raises(FaceganError, match="already holds a run; pass --resume"):
        train(tiny_config(faces16, run, kimg=0.032))
    with caplog.at_level(logging.WARNING, logger="facegan.training"):
        result = train(tiny_config(faces16, run, kimg=0.032), resume=True)
    assert "no checkpoint yet" in caplog.text and "from the beginning" in caplog.text
    assert result.resumed_from_scratch and result.kimg == pytest.approx(0.032)
    assert [line["kimg"] for line in _stats_lines(run)] == [0.016, 0.032]  # old lines dropped, not doubled
    a, b = _export(straight), _export(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_setup_leaves_no_run_behind(tiny_config, tmp_path):
    with pytest.raises(FaceganError, match="dataset not found"):
        train(tiny_config(tmp_path / "nope", tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # so it can simply be started again, without --resume


def test_resume_finds_the_dataset_spelled_another_way_and_from_another_folder(faces16, tiny_config, tmp_path, monkeypatch):
    import os

    run = tmp_path / "run"
    train(tiny_config(faces16, run, kimg=0.016))
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"] == str(faces16.resolve())
    assert json.loads((run / "run.json").read_text())["dataset_path"] == str(faces16.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = os.path.relpath(faces16, elsewhere) + "/"  # relative from another folder, with a trailing slash
    result = train(tiny_config(relative, run, kimg=0.032), resume=True)
    assert result.kimg == pytest.approx(0.032)


def test_resume_refuses_another_dataset_by_content(faces16, faces32, tiny_config, tmp_path):
    import numpy as np

    from facegan.data.dataset import FaceDataset

    run = tmp_path / "run"
    train(tiny_config(faces16, run, kimg=0.016))
    other = FaceDataset(np.asarray(FaceDataset.load(faces16).images)[::-1].copy(), {"source": "test:reversed", "source_kind": "builtin"})
    other.save(tmp_path / "reversed")
    with pytest.raises(FaceganError, match="not the one this run was trained on"):
        train(tiny_config(tmp_path / "reversed", run, kimg=0.032), resume=True)


def test_a_full_disk_at_checkpoint_time_is_one_line_and_leaves_no_temp_file(faces16, tiny_config, tmp_path, monkeypatch):
    import errno

    from facegan.training import checkpoint

    run = tmp_path / "run"
    train(tiny_config(faces16, run, kimg=0.032))
    good = (run / "checkpoints" / "state.pt").read_bytes()

    def full_disk(state, handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(FaceganError, match="No space left on device.*--resume") as caught:
        train(tiny_config(faces16, run, kimg=0.064), resume=True)
    assert "\n" not in str(caught.value)
    assert (run / "checkpoints" / "state.pt").read_bytes() == good
    assert [p.name for p in run.rglob(".*tmp*")] == []


def test_a_full_disk_while_exporting_leaves_no_temp_file(faces16, tiny_config, tmp_path, monkeypatch):
    import errno
    import os

    import facegan.files

    real_replace = os.replace

    def full_disk(source, target, *args, **kwargs):
        if os.path.basename(target) == "model.safetensors":  # the export's weights: the temp file is complete, the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(facegan.files.os, "replace", full_disk)
    with pytest.raises(FaceganError, match=r"cannot write .*model\.safetensors.*No space left on device"):
        train(tiny_config(faces16, tmp_path / "run", kimg=0.016))
    assert [p.name for p in (tmp_path / "run").rglob(".*tmp*")] == []


def test_a_full_disk_while_writing_stats_is_one_line(faces16, tiny_config, tmp_path, monkeypatch):
    import errno

    from facegan.run import Run

    def full_disk(self, line):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Run, "append_stats", full_disk)
    with pytest.raises(FaceganError, match=r"cannot write to the run folder .* \(No space left on device\).*--resume"):
        train(tiny_config(faces16, tmp_path / "run", kimg=0.016))
