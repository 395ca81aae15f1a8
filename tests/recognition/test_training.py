"""Recogniser training: the run folder, bit-identical resume, stop/Ctrl-C, mixing, augmentation, export and the CLI."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from facegan.config import from_dict
from facegan.errors import FaceganError
from facegan.recognition.config import RecogConfig
from facegan.recognition.export import calibrate_threshold, is_recogniser_export, load_recogniser_export
from facegan.recognition.training import RecogTrainer, load_identity_data, train_recogniser
from facegan.run import EXPORT_WEIGHTS_NAME, Run
from tests.recognition.identities import save_identity_dataset, shape_identities

TINY = {"backbone": {"width": 4, "embedding_size": 16, "blocks": [1, 1, 1, 1]}, "batch_size": 8,
        "optimizer": {"warmup_steps": 2}, "runtime": {"tensorboard": False, "device": "cpu"}, "schedule": {"log_steps": 1},
        "calibration_images": 4}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("recog") / "shapes", num_identities=6, per_identity=5)


@pytest.fixture(scope="module")
def other_shapes(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("recog") / "other", num_identities=3, per_identity=4, seed=5)


def config_for(data, out, **updates) -> RecogConfig:
    values = {**TINY, "data": [str(path) for path in (data if isinstance(data, list) else [data])], "out": str(out), "steps": 4, **updates}
    return from_dict(RecogConfig, values)


def _state(run_dir):
    return torch.load(Run(run_dir).state_path, weights_only=True)


def test_a_run_folder_holds_config_stats_checkpoint_and_a_recogniser_export(shapes, tmp_path):
    config = config_for(shapes, tmp_path / "run", runtime={"tensorboard": True, "device": "cpu"})
    result = train_recogniser(config)
    run = Run(result.run_dir)
    assert result.num_steps == 4 and not result.interrupted
    assert run.read_config()["kind"] == "recogniser" and run.has_checkpoint() and run.tensorboard_dir.is_dir()
    assert [line["step"] for line in run.read_stats()] == [1, 2, 3, 4]
    assert {"loss", "accuracy", "img_per_s", "lr"} <= set(run.read_stats()[-1])
    exported = json.loads((run.export_dir / "config.json").read_text())
    assert exported["kind"] == "recogniser" and exported["match"]["metric"] == "cosine"
    assert is_recogniser_export(run.path) and is_recogniser_export(run.export_dir)
    assert not is_recogniser_export(shapes)


def test_two_plus_two_steps_equal_four_steps_bit_for_bit(shapes, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "straight", steps=4))
    train_recogniser(config_for(shapes, tmp_path / "resumed", steps=2))
    assert _state(tmp_path / "resumed")["num_steps"] == 2
    train_recogniser(config_for(shapes, tmp_path / "resumed", steps=4), resume=True)
    straight, resumed = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    for part in ("net", "head"):
        for name, tensor in straight[part].items():
            assert torch.equal(tensor, resumed[part][name]), f"{part}.{name}"
    assert [line["loss"] for line in Run(tmp_path / "straight").read_stats()] == [line["loss"] for line in Run(tmp_path / "resumed").read_stats()]
    weights = [Run(tmp_path / name).export_dir / EXPORT_WEIGHTS_NAME for name in ("straight", "resumed")]
    assert weights[0].read_bytes() == weights[1].read_bytes()


def test_should_stop_checkpoints_and_returns_interrupted(shapes, tmp_path):
    calls = []
    result = train_recogniser(config_for(shapes, tmp_path / "run", steps=50), should_stop=lambda: calls.append(1) or len(calls) >= 3)
    assert result.interrupted and result.num_steps == 3 and _state(tmp_path / "run")["num_steps"] == 3
    assert Run(tmp_path / "run").has_export()


def test_progress_reports_kimg_done_of_total(shapes, tmp_path):
    seen = []
    train_recogniser(config_for(shapes, tmp_path / "run", steps=3), progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0.0, 0.024) and seen[-1] == (0.024, 0.024) and len(seen) == 4


def test_mixing_draws_the_given_share_from_the_second_dataset_and_keeps_identities_apart(shapes, other_shapes):
    config = config_for([shapes, other_shapes], "unused", mix=0.25, calibration_images=0)
    data = load_identity_data(config)
    assert data.num_classes == 6 + 3  # the two datasets' identity 0 are two people
    trainer = RecogTrainer(config, data, torch.device("cpu"))
    for _ in range(3):
        _, classes = trainer.next_batch()
        assert (classes >= 6).sum().item() == 2 and len(classes) == 8


def test_epochs_set_the_length_from_the_training_images(shapes, tmp_path):
    result = train_recogniser(config_for(shapes, tmp_path / "run", steps=0, epochs=1.0))
    assert result.num_steps == int(np.ceil((30 - 4) / 8))  # 4 images held out for calibration


def test_augmentation_only_flips_and_shifts(shapes):
    plain = RecogTrainer(config_for(shapes, "unused", augment={"flip": False, "shift": 0.0}), load_identity_data(config_for(shapes, "unused")),
                         torch.device("cpu"))
    indices = torch.arange(8)
    assert torch.equal(plain._augmented(0, indices), plain.images[0][indices])
    flipping = RecogTrainer(config_for(shapes, "unused", augment={"flip": True, "shift": 0.0}), load_identity_data(config_for(shapes, "unused")),
                            torch.device("cpu"))
    out, raw = flipping._augmented(0, indices), flipping.images[0][indices]
    flipped = [bool(torch.equal(out[i], raw[i].flip(1))) for i in range(8)]
    assert all(torch.equal(out[i], raw[i]) or flipped[i] for i in range(8)) and any(flipped)
    shifting = RecogTrainer(config_for(shapes, "unused", augment={"flip": False, "shift": 0.1}), load_identity_data(config_for(shapes, "unused")),
                            torch.device("cpu"))
    moved = shifting._augmented(0, indices)
    assert moved.shape == raw.shape and not torch.equal(moved, raw)


def test_calibrated_threshold_separates_the_calibration_pairs():
    threshold, accuracy = calibrate_threshold(np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.6, 0.9]))
    assert 0.3 < threshold < 0.5 and accuracy == 1.0
    threshold, accuracy = calibrate_threshold(np.array([0.1, 0.7]), np.array([0.5, 0.9]))
    assert accuracy == 0.75


def test_the_export_is_a_recogniser_that_embeds_any_size_to_unit_vectors(shapes, tmp_path):
    from facegan.faces.recognisers import Recogniser

    train_recogniser(config_for(shapes, tmp_path / "run"))
    recogniser = load_recogniser_export(tmp_path / "run")
    assert isinstance(recogniser, Recogniser)
    assert recogniser.name.startswith("facegan:") and recogniser.dim == 16 and recogniser.match.metric == "cosine"
    assert recogniser.version == load_recogniser_export(Run(tmp_path / "run").export_dir / EXPORT_WEIGHTS_NAME).version
    images, _ = shape_identities(3, 2, size=48)
    embeddings = recogniser.embed(images)
    assert embeddings.dtype == np.float32 and embeddings.shape == (6, 16)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert np.allclose(recogniser.embed(images[:2]), embeddings[:2], atol=1e-5)  # eval mode: no batch dependence
    grey = recogniser.embed(images[..., :1])
    assert grey.shape == (6, 16) and recogniser.same_person(embeddings, embeddings).all()


def test_a_trained_recogniser_separates_held_out_identities(tmp_path):
    """End to end: shapes recognised on identities never trained on, well beyond chance and beyond raw pixels."""
    from sklearn.metrics import roc_auc_score

    data = save_identity_dataset(tmp_path / "train", num_identities=16, per_identity=10)
    config = from_dict(RecogConfig, {"data": [str(data)], "out": str(tmp_path / "run"), "steps": 80, "batch_size": 32,
                                     "backbone": {"width": 8, "embedding_size": 32, "blocks": [1, 1, 1, 1]},
                                     "optimizer": {"warmup_steps": 20}, "runtime": {"tensorboard": False, "device": "cpu"}})
    train_recogniser(config)
    recogniser = load_recogniser_export(tmp_path / "run")
    images, identity = shape_identities(10, 6, seed=99)  # other people (another seed draws other looks)
    embeddings = recogniser.embed(images)
    rows, cols = np.triu_indices(len(identity), 1)
    same = identity[rows] == identity[cols]
    similarity = (embeddings[rows] * embeddings[cols]).sum(1)
    pixels = images.reshape(len(images), -1).astype(np.float64)
    pixels -= pixels.mean(1, keepdims=True)
    pixels /= np.linalg.norm(pixels, axis=1, keepdims=True)
    trained_auc, pixel_auc = roc_auc_score(same, similarity), roc_auc_score(same, (pixels[rows] * pixels[cols]).sum(1))
    assert trained_auc > 0.95 and trained_auc > pixel_auc + 0.05
    accepted = recogniser.same_person(embeddings[rows], embeddings[cols])
    balanced = (accepted[same].mean() + (~accepted[~same]).mean()) / 2  # at the threshold calibrated on training data
    assert balanced > 0.75


# ---- the CLI (through a `recog` group built here until cli/recog.py is merged) -------------------------
def _recog_main(argv, monkeypatch):
    from facegan.cli import main as cli_main
    from facegan.cli import recog_train

    def build_parser():
        parser = cli_main._Parser(prog="facegan")
        commands = parser.add_subparsers(dest="command", required=True)
        try:
            from facegan.cli import recog

            recog.register(commands)
        except ImportError:
            group = commands.add_parser("recog")
            recog_train.register(group.add_subparsers(dest="verb", required=True))
        return parser

    monkeypatch.setattr(cli_main, "build_parser", build_parser)
    return cli_main.main(argv)


def test_cli_trains_resumes_and_dry_runs(shapes, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    common = ["--batch-size", "8", "--embedding-size", "16", "--set", "backbone.width=4", "--set", "backbone.blocks=[1,1,1,1]",
              "--set", "calibration_images=4", "--set", "runtime.tensorboard=false", "--no-progress"]
    assert _recog_main(["recog", "train", "--data", str(shapes), "--out", str(out), "--steps", "2", "--head", "cosface", *common], monkeypatch) == 0
    assert "finished step 2" in capsys.readouterr().out
    assert _recog_main(["recog", "train", "--out", str(out), "--resume", "--steps", "3", "--no-progress"], monkeypatch) == 0
    assert _state(out)["num_steps"] == 3 and Run(out).read_config()["head"]["kind"] == "cosface"
    capsys.readouterr()
    assert _recog_main(["recog", "train", "--data", str(shapes), "--out", str(tmp_path / "dry"), "--epochs", "2", "--dry-run"], monkeypatch) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["epochs"] == 2.0 and printed["head"]["kind"] == "arcface" and not (tmp_path / "dry").exists()


def test_resume_refuses_a_changed_head(shapes, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "run", steps=1))
    with pytest.raises(FaceganError, match="'head.kind' differs"):
        train_recogniser(config_for(shapes, tmp_path / "run", steps=2, head={"kind": "cosface"}), resume=True)


def test_bf16_autocast_is_on_where_native_can_be_turned_off_and_trains(shapes, monkeypatch):
    config = config_for(shapes, "unused", runtime={"device": "cpu", "tensorboard": False})
    assert config.runtime.amp is True
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        trainer = RecogTrainer(config, load_identity_data(config), torch.device("cpu"))
        assert trainer.bf16 is native
        assert all(torch.isfinite(value).item() for value in trainer.step().values())
    config = config_for(shapes, "unused", runtime={"amp": False, "device": "cpu", "tensorboard": False})
    assert RecogTrainer(config, load_identity_data(config), torch.device("cpu")).bf16 is False
