"""The training loop on tiny models: files written, exact resume, divergence, refusals."""
import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from facegan.errors import DivergenceError, FaceganError
from facegan.training.loop import train


def test_run_folder_contents(faces16, tiny_config, tmp_path):
    result = train(tiny_config(faces16, tmp_path / "run", kimg=0.064, runtime={"tensorboard": True, "num_threads": 1}), progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "run.json", "stats.jsonl", "summary.json", "loss_curves.png", "checkpoints/state.pt",
                 "export/config.json", "export/model.safetensors", "samples/reals.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert list((run / "samples").glob("fakes*.png"))
    lines = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [round(line["kimg"], 3) for line in lines] == [0.016, 0.032, 0.048, 0.064]
    assert all({"loss_d", "loss_g", "img_per_s", "time_s", "step"} <= set(line) for line in lines)
    assert result.kimg == pytest.approx(0.064) and result.num_steps == 8
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["resolution"] == 16 and saved["model"]["channels"] == 1  # resolved from the data


def test_training_changes_weights_and_losses_are_finite(faces16, tiny_config, tmp_path):
    import facegan
    from facegan.images import to_model
    from facegan.training.losses import discriminator_loss
    from tests.privacy.helpers import build_trainer

    config = tiny_config(faces16, tmp_path / "run", kimg=0.048)
    initial = build_trainer(config)  # the networks train() starts from (same seed, same init)
    result = train(config, progress=False)
    assert all(np.isfinite(v) for k, v in result.last_stats.items() if k.startswith("loss"))
    state = _state(tmp_path / "run")
    for net, module in (("G", initial.G), ("D", initial.D)):
        unchanged = [name for name, p in module.named_parameters() if torch.equal(p.detach(), state[net][name])]
        assert not unchanged, f"{net} parameters never updated: {unchanged}"
    # The loss moved: D's loss on one fixed batch differs between its initial and its trained weights
    # (spectral norm's power-iteration buffers kept at their initial values, so only weights can move it).
    trained_D = copy.deepcopy(initial.D)
    trained_D.load_state_dict({**state["D"], **dict(initial.D.named_buffers())})
    real = to_model(initial.images[:8], torch.device("cpu"))  # (8, 1, 16, 16)
    with torch.no_grad():
        fake = initial.G.eval()(torch.randn(8, config.model.z_dim, generator=torch.Generator().manual_seed(0)))
        before = discriminator_loss("logistic", initial.D.eval()(real), initial.D(fake)).item()
        after = discriminator_loss("logistic", trained_D.eval()(real), trained_D(fake)).item()
    assert np.isfinite(before) and np.isfinite(after) and abs(after - before) > 1e-3, (before, after)
    images = facegan.load_generator(tmp_path / "run").sample(range(4))
    assert images.shape == (4, 16, 16, 1) and images.std() > 1  # not a constant image


def _export_tensors(run):
    return load_file(str(run / "export" / "model.safetensors"))


def _state(run):
    return torch.load(run / "checkpoints" / "state.pt", weights_only=True)


@pytest.mark.parametrize("preset, data", [("default", "faces16"), ("seed-dcgan", "faces32")])
def test_resume_continues_exactly(preset, data, tiny_config, tmp_path, request):
    dataset = request.getfixturevalue(data)
    straight = tmp_path / "straight"
    train(tiny_config(dataset, straight, preset=preset, kimg=0.064), progress=False)
    split = tmp_path / "split"
    train(tiny_config(dataset, split, preset=preset, kimg=0.032), progress=False)
    train(tiny_config(dataset, split, preset=preset, kimg=0.064), resume=True, progress=False)
    a, b = _state(straight), _state(split)
    for net in ("G", "D") + (("G_ema",) if "G_ema" in a else ()):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key} differs after resume"
    assert a["num_images_seen"] == b["num_images_seen"] == 64
    export_a, export_b = _export_tensors(straight), _export_tensors(split)
    assert all(torch.equal(export_a[k], export_b[k]) for k in export_a)
    lines = [json.loads(x)["kimg"] for x in (split / "stats.jsonl").read_text().splitlines()]
    assert lines == sorted(lines) and len(lines) == 4  # no duplicated lines after resume


def test_existing_run_needs_resume_and_resume_needs_a_run(faces16, tiny_config, tmp_path):
    config = tiny_config(faces16, tmp_path / "run", kimg=0.016)
    train(config, progress=False)
    with pytest.raises(FaceganError, match="already holds a run"):
        train(config, progress=False)
    with pytest.raises(FaceganError, match="nothing to resume"):
        train(tiny_config(faces16, tmp_path / "other"), resume=True, progress=False)


def test_resume_refuses_a_changed_recipe(faces16, tiny_config, tmp_path):
    train(tiny_config(faces16, tmp_path / "run", kimg=0.016), progress=False)
    changed = tiny_config(faces16, tmp_path / "run", kimg=0.032, loss={"kind": "hinge"})
    with pytest.raises(FaceganError, match="loss.kind"):
        train(changed, resume=True, progress=False)


def test_divergence_stops_with_a_clear_message_and_keeps_the_checkpoint(faces16, tiny_config, tmp_path, monkeypatch):
    from facegan.training import loop

    run = tmp_path / "run"
    train(tiny_config(faces16, run, kimg=0.032), progress=False)
    before = _state(run)["num_images_seen"]
    real_loss = loop.discriminator_loss
    monkeypatch.setattr(loop, "discriminator_loss", lambda *a: real_loss(*a) * float("nan"))
    with pytest.raises(DivergenceError, match="diverged.*last good checkpoint"):
        train(tiny_config(faces16, run, kimg=0.064), resume=True, progress=False)
    state = _state(run)
    assert state["num_images_seen"] == before  # nothing non-finite was saved
    assert all(torch.isfinite(t).all() for t in state["G"].values() if t.is_floating_point())


def test_dataset_resolution_mismatch_is_refused(faces16, tiny_config, tmp_path):
    with pytest.raises(FaceganError, match="prepare it with --size 32"):
        train(tiny_config(faces16, tmp_path / "run", model={"resolution": 32}), progress=False)


def test_missing_dataset_is_one_clear_error(tiny_config, tmp_path):
    with pytest.raises(FaceganError, match="dataset not found"):
        train(tiny_config(tmp_path / "nope", tmp_path / "run"), progress=False)


def test_metric_every_logs_fd_and_keeps_the_best_export(faces16, tiny_config, tmp_path, monkeypatch):
    from facegan.metrics.features import unregister_extractor
    from tests.metrics.helpers import PROJECTION_NAME, register_projection

    monkeypatch.setenv("FACEGAN_CACHE_DIR", str(tmp_path / "cache"))
    register_projection()
    try:
        run = tmp_path / "run"
        config = tiny_config(faces16, run, kimg=0.064, schedule={"metric_kimg": 0.032, "metric_num": 16, "metric_features": PROJECTION_NAME,
                                                                 "log_kimg": 0.016, "checkpoint_kimg": 0.032, "snapshot_kimg": 0.032, "num_snapshot_images": 4})
        train(config, progress=False)
    finally:
        unregister_extractor(PROJECTION_NAME)
    lines = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    measured = [line for line in lines if "fd" in line]
    assert [round(line["kimg"], 3) for line in measured] == [0.032, 0.064]
    assert all(line["fd"] >= 0 and "kid_mean" in line for line in measured)
    best = json.loads((run / "export-best" / "config.json").read_text())
    assert best["selected_by"]["fd"] == pytest.approx(min(line["fd"] for line in measured), rel=1e-5)
    assert _state(run)["best_fd"] == pytest.approx(best["selected_by"]["fd"], rel=1e-5)


def test_max_minutes_alone_stops_early_with_a_checkpoint(faces16, tiny_config, tmp_path):
    run = tmp_path / "run"
    schedule = {**tiny_config(faces16, run).schedule.__dict__, "max_minutes": 1e-4}  # 6 ms: over after the first step
    result = train(tiny_config(faces16, run, kimg=10, schedule=schedule), progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"].startswith("time budget of 0.0001 min reached at") and not summary["interrupted"]
    seen = _state(run)["num_images_seen"]
    assert 8 <= seen < 10_000 and seen == round(summary["kimg"] * 1000) == round(result.kimg * 1000)
    assert json.loads((run / "export" / "config.json").read_text())["kimg"] == seen / 1000  # the export is the stopped model
    assert json.loads((run / "stats.jsonl").read_text().splitlines()[-1])["kimg"] == round(seen / 1000, 3)  # its last line logged
