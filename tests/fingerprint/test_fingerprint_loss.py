"""The fingerprint loss of `train --fingerprint`: the generator learns the key through the frozen decoder."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from facegan.cli.main import main
from facegan.data.dataset import FaceDataset
from facegan.fingerprint.apply import ensure_fingerprinted
from facegan.models.export import load_generator
from tests.fingerprint.test_integration import TINY


@pytest.fixture
def marked16(faces16, tiny_fingerprint, tmp_path):
    return ensure_fingerprinted(FaceDataset.load(FaceDataset.load(faces16).save(tmp_path / "faces16")), tiny_fingerprint)


def _train(data, out, fingerprint_path, *extra, kimg="0.128"):
    argv = ["train", "--data", str(data), "--out", str(out), "--kimg", kimg, *TINY, "--set", "ema.enabled=false", *extra]
    if fingerprint_path is not None:
        argv += ["--set", f"fingerprint.path={fingerprint_path}"]
        if FaceDataset.load(data).manifest.get("fingerprint"):  # trained on the marked faces (Yu et al.'s data) too
            argv += ["--set", "fingerprint.mark_data=true"]
    assert main(argv) == 0


def test_the_separate_loss_puts_the_key_in_generated_faces_and_the_data_alone_does_not_yet(marked16, tiny_fingerprint, tiny_fingerprint_path, tmp_path):
    # 48 steps of batch 8: far too short for a GAN to pick the key up from the data, long enough for the loss to teach it.
    _train(marked16.path, tmp_path / "with", tiny_fingerprint_path, "--set", "fingerprint.mode=separate", "--set", "fingerprint.weight=5",
           "--set", "fingerprint.every=1", "--set", "fingerprint.lr=0.005", kimg="0.384")
    _train(marked16.path, tmp_path / "without", tiny_fingerprint_path, "--set", "fingerprint.weight=0", kimg="0.384")
    with_loss = tiny_fingerprint.bit_accuracy(load_generator(tmp_path / "with").sample(range(64))).mean()
    data_only = tiny_fingerprint.bit_accuracy(load_generator(tmp_path / "without").sample(range(64))).mean()
    assert with_loss > 0.9 and data_only < 0.75, (with_loss, data_only)
    export = json.loads((tmp_path / "with" / "export" / "config.json").read_text())
    assert export["fingerprint_loss"] == {"fingerprint": tiny_fingerprint.id, "bits": tiny_fingerprint.bits, "weight": 5.0, "every": 1,
                                          "mode": "separate", "mark_data": True, "distort": True}
    assert "fingerprint_loss" not in json.loads((tmp_path / "without" / "export" / "config.json").read_text())
    stats = [json.loads(line) for line in (tmp_path / "with" / "stats.jsonl").read_text().splitlines()]
    assert all("fp_loss" in line and 0 <= line["fp_bit_accuracy"] <= 1 for line in stats if "loss_d" in line)


def test_the_joint_mode_teaches_the_key_in_g_s_own_step_and_resumes(marked16, tiny_fingerprint, tiny_fingerprint_path, tmp_path):
    """mode=joint adds the weighted loss to G's adversarial loss (G's optimizer): no second G update, no optimizer of its own."""
    run = tmp_path / "joint"
    _train(marked16.path, run, tiny_fingerprint_path, "--set", "fingerprint.mode=joint", "--set", "fingerprint.weight=3",
           "--set", "fingerprint.every=1", "--set", "optimizer.lr_g=0.005", "--set", "schedule.checkpoint_kimg=0.2", kimg="0.384")
    bits = tiny_fingerprint.bit_accuracy(load_generator(run).sample(range(64))).mean()
    assert bits > 0.9, bits
    export = json.loads((run / "export" / "config.json").read_text())
    assert export["fingerprint_loss"]["mode"] == "joint"
    import torch

    state = torch.load(run / "checkpoints" / "state.pt", map_location="cpu", weights_only=False)
    assert "fingerprint_rng" in state and "fingerprint_optimizer" not in state
    assert main(["train", "--out", str(run), "--resume", "--kimg", "0.448", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["kimg"] >= 0.448


def test_the_joint_term_is_the_weighted_decoder_loss_on_the_faces_d_judges(marked16, tiny_fingerprint_path, tmp_path):
    """G's gradient in a joint step is that of the adversarial loss plus the weight times the decoder's BCE (checked
    against the two computed apart on the same fakes)."""
    import torch

    from facegan.training.config import resolve_config
    from facegan.training.distributed import DistributedContext
    from facegan.training.loop import make_trainer

    config = resolve_config("default", {"data": str(marked16.path), "out": str(tmp_path / "run"), "batch_size": 8,
                                        "model": {"resolution": 16, "channels": 1, "g_channels": 16, "d_channels": 16, "min_channels": 8},
                                        "fingerprint": {"path": str(tiny_fingerprint_path), "mode": "joint", "weight": 2.0, "mark_data": True},
                                        "runtime": {"amp": False}})  # fp32: the sum is checked to float rounding
    trainer = make_trainer(config, FaceDataset.load(marked16.path), torch.device("cpu"), DistributedContext())
    (extension,) = trainer.extensions
    z = torch.randn(8, config.model.z_dim, generator=torch.Generator().manual_seed(1))
    rng_state = extension.rng.get_state()  # the distortion draw the decoder term below makes, repeated in the G step

    critic = torch.nn.Linear(16 * 16, 1, bias=False)
    trainer.discriminate = lambda images, labels=None: critic(images.float().flatten(1))  # deterministic, unlike D's augmentation
    stepped = []
    trainer.opt_G.step = lambda: stepped.append(torch.cat([p.grad.flatten() for p in trainer.G.parameters()]))

    def grads(loss_fn):
        trainer.G.zero_grad(set_to_none=True)
        loss_fn(trainer.G(z)).backward()
        return torch.cat([p.grad.flatten() for p in trainer.G.parameters()])

    from facegan.training.losses import generator_loss

    adversarial = grads(lambda fake: generator_loss(config.loss.kind, trainer.discriminate(fake)))
    decoder = grads(lambda fake: extension.generator_loss(trainer, fake))
    extension.rng.set_state(rng_state)
    trainer.generator_step(trainer.G(z))  # the trainer's own G step, its optimizer step recorded instead of taken
    assert decoder.abs().sum() > 0 and len(stepped) == 1
    torch.testing.assert_close(stepped[0], adversarial + decoder, rtol=1e-4, atol=1e-6)
    trainer.num_steps = 1
    extension.settings.every = 2
    assert extension.generator_loss(trainer, trainer.G(z)) is None  # off-steps add nothing


def test_a_run_with_the_loss_resumes_with_its_state_and_path_from_another_folder(marked16, tiny_fingerprint_path, tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.chdir(tiny_fingerprint_path.parent)
    _train(marked16.path, run, tiny_fingerprint_path.name, "--set", "fingerprint.tune_steps=20", kimg="0.032")  # a relative path: saved absolute
    saved = json.loads((run / "config.json").read_text())["fingerprint"]
    assert saved["path"] == str(tiny_fingerprint_path) and saved["weight"] > 0
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", str(run), "--resume", "--kimg", "0.064", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["kimg"] >= 0.064


def test_a_run_saved_before_fingerprint_mode_resumes_with_the_separate_update_it_was_trained_with(marked16, tiny_fingerprint_path, tmp_path):
    run = tmp_path / "old"
    _train(marked16.path, run, tiny_fingerprint_path, "--set", "fingerprint.mode=separate", "--set", "fingerprint.every=4",
           "--set", "fingerprint.weight=1", kimg="0.032")
    config = json.loads((run / "config.json").read_text())
    del config["fingerprint"]["mode"]  # as the previous release wrote it
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(run), "--resume", "--kimg", "0.064", "--no-progress"]) == 0
    assert json.loads((run / "export" / "config.json").read_text())["fingerprint_loss"]["mode"] == "separate"


@pytest.mark.parametrize("setting, message", [
    ("fingerprint.weight=-1", "fingerprint.weight must be at least 0"),
    ("fingerprint.every=0", "fingerprint.every must be at least 1"),
    ("fingerprint.lr=nan", "is not a finite number"),
    ("fingerprint.mode=both", "fingerprint.mode must be 'tune', 'joint' or 'separate'"),
    ("fingerprint.tune_steps=0", "fingerprint.tune_steps must be at least 1"),
    ("fingerprint.tune_consistency=-1", "fingerprint.tune_consistency must be at least 0"),
    ("fingerprint.tune_lr=0", "fingerprint.tune_lr"),
    ("fingerprint.tune_schedule=linear", "fingerprint.tune_schedule must be 'cosine' or 'constant'"),
    ("fingerprint.mark_data=yes", "fingerprint.mark_data': expected true or false"),
    ("fingerprint.mark_data=true fingerprint.path=FP", "but the training data carries no fingerprint"),
    ("fingerprint.path=FP fingerprint.mode=joint fingerprint.mark_data=true fingerprint.weight=0.5 --data MARKED", None),
    ("fingerprint.path=FP --data MARKED", "the training data carries fingerprint"),  # marked data, mark_data false
])
def test_bad_fingerprint_loss_settings_are_one_line(setting, message, faces16, marked16, tiny_fingerprint_path, tmp_path):
    argv = ["train", "--data", str(faces16), "--out", str(tmp_path / "run"), "--kimg", "0.016", *TINY]
    words = setting.replace("MARKED", str(marked16.path)).replace("FP", str(tiny_fingerprint_path)).split()
    for index, word in enumerate(words):
        if word.startswith("--"):
            argv += words[index:]
            break
        argv += ["--set", word]
    process = subprocess.run([sys.executable, "-m", "facegan", *argv], capture_output=True, text=True, timeout=120)
    if message is None:  # the control: marked data with mark_data set trains
        assert process.returncode == 0, process.stderr
        return
    process = subprocess.run([sys.executable, "-m", "facegan", *argv], capture_output=True, text=True, timeout=120)
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1 and message in lines[0], process.stderr
    assert not (tmp_path / "run").exists()


def test_the_generator_learns_the_fingerprint_of_a_larger_model_resolution(tiny_fingerprint, tmp_path):
    """A 32 px generator with a 16 px fingerprint: the loss reads its faces downscaled, as `detect` does."""
    from facegan.fingerprint.fingerprint import fingerprint_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, size=(32, 32, 32, 1), dtype=np.uint8)
    plain = FaceDataset.load(FaceDataset(images, {"source": "noise", "resolution": 32, "channels": 1}).save(tmp_path / "plain32"))
    marked = fingerprint_dataset(plain, tiny_fingerprint, tmp_path / "marked32")
    for mode, data in (("joint", marked), ("tune", plain)):  # the tune reads its faces downscaled too
        _train(data.path, tmp_path / mode, tiny_fingerprint.path, "--set", f"fingerprint.mode={mode}", "--set", "fingerprint.tune_steps=20",
               kimg="0.016")
        record = json.loads((tmp_path / mode / "export" / "config.json").read_text())["fingerprint_loss"]
        assert record["bits"] == tiny_fingerprint.bits and record["mode"] == mode


def test_the_joint_loss_composes_with_dp_training_and_costs_no_epsilon(marked16, tiny_fingerprint, tiny_fingerprint_path, tiny_config, tmp_path):
    """A DP run with the fingerprint loss: one accountant step per D step, the same epsilon as without the loss (the
    loss reads generated faces only), and the export records both."""
    from facegan import train
    from tests.privacy.helpers import private_config

    epsilons = {}
    for name, weight in (("with", 3.0), ("without", 0.0)):
        run = tmp_path / name
        config = private_config(tiny_config, marked16.path, run, kimg=0.064, noise_multiplier=1.0,
                                fingerprint={"path": str(tiny_fingerprint_path), "weight": weight, "mode": "joint",
                                             "mark_data": True})
        result = train(config, progress=False)
        export = json.loads((run / "export" / "config.json").read_text())
        assert result.num_steps == export["dp"]["steps"] == 8
        epsilons[name] = export["dp"]["epsilon"]
        assert ("fingerprint_loss" in export) == (weight > 0)
    assert epsilons["with"] == epsilons["without"] > 0
    stats = [json.loads(line) for line in (tmp_path / "with" / "stats.jsonl").read_text().splitlines()]
    assert any("fp_bit_accuracy" in line for line in stats)
