"""Recogniser PGD adversarial training: the budget, bit-identical resume and eps 0, the export record, and a real gain."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from facegan.config import from_dict
from facegan.errors import FaceganError
from facegan.recognition.config import AdversarialConfig, RecogConfig
from facegan.recognition.training import RecogTrainer, load_identity_data, train_recogniser
from facegan.run import Run
from tests.recognition.identities import save_identity_dataset
from tests.recognition.tiny import config_for, export_weights, logged_losses

AT = {"eps": 8.0, "steps": 2}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("recog_at") / "shapes", num_identities=6, per_identity=5)





@pytest.mark.parametrize("norm, eps", [("linf", 4.0), ("linf", 8.0), ("l2", 50.0)])
def test_the_perturbed_batch_stays_within_the_budget_and_the_pixel_range(shapes, norm, eps):
    config = config_for(shapes, "unused", adversarial={"eps": eps, "steps": 3, "norm": norm})
    trainer = RecogTrainer(config, load_identity_data(config), torch.device("cpu"))
    x, classes = trainer.next_batch()
    x_adv, stats = trainer.adversarial_batch(x, classes)
    delta = ((x_adv - x) * 127.5).flatten(1)  # back on the 0..255 scale of the budget
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert size.max().item() <= eps * (1 + 1e-5) and size.min().item() > 0.5 * eps  # moved, and not beyond the ball
    assert x_adv.min().item() >= -1 - 1e-6 and x_adv.max().item() <= 1 + 1e-6
    assert x_adv.is_contiguous(memory_format=trainer.memory_format) and not x_adv.requires_grad
    # The attack raised the loss the update is made on, and left the weights, BN statistics and grads alone.
    with torch.no_grad():
        adversarial_loss = F.cross_entropy(trainer.head(trainer.net(x_adv), classes), classes)  # train mode, as the update
    assert adversarial_loss.item() > stats["clean_loss"].item()
    before = {name: value.clone() for name, value in trainer.net.state_dict().items()}
    trainer.adversarial_batch(x, classes)
    assert all(torch.equal(before[name], value) for name, value in trainer.net.state_dict().items())
    assert all(parameter.grad is None and parameter.requires_grad for parameter in trainer.net.parameters())


def test_adversarial_training_changes_the_weights_and_logs_clean_and_adversarial_figures(shapes, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "plain"))
    train_recogniser(config_for(shapes, tmp_path / "at", adversarial=AT))
    assert export_weights(tmp_path / "plain") != export_weights(tmp_path / "at")
    plain, at = Run(tmp_path / "plain").read_stats(), Run(tmp_path / "at").read_stats()
    assert "clean_loss" not in plain[0] and {"loss", "accuracy", "clean_loss", "clean_accuracy"} <= set(at[0])
    # Step 1 sees the same batch and weights in both runs: the clean loss is the plain run's loss, the trained one higher.
    assert at[0]["clean_loss"] == plain[0]["loss"] and at[0]["loss"] > at[0]["clean_loss"]


def test_eps_zero_trains_bit_for_bit_as_without_adversarial_training(shapes, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "plain"))
    train_recogniser(config_for(shapes, tmp_path / "zero", adversarial={"eps": 0.0, "steps": 7, "norm": "l2", "step_size": 3.0}))
    assert export_weights(tmp_path / "plain") == export_weights(tmp_path / "zero")
    assert logged_losses(tmp_path / "plain") == logged_losses(tmp_path / "zero")
    assert "clean_loss" not in Run(tmp_path / "zero").read_stats()[0]


def test_two_plus_two_adversarial_steps_equal_four_bit_for_bit(shapes, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "straight", adversarial=AT))
    train_recogniser(config_for(shapes, tmp_path / "resumed", steps=2, adversarial=AT))
    train_recogniser(config_for(shapes, tmp_path / "resumed", adversarial=AT), resume=True)
    assert export_weights(tmp_path / "straight") == export_weights(tmp_path / "resumed")
    assert logged_losses(tmp_path / "straight") == logged_losses(tmp_path / "resumed")
    state = torch.load(Run(tmp_path / "resumed").state_path, weights_only=True)
    assert isinstance(state["rng_adversarial"], torch.Tensor)


def test_resume_refuses_changed_adversarial_settings(shapes, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "run", steps=1, adversarial=AT))
    with pytest.raises(FaceganError, match="'adversarial.eps' differs"):
        train_recogniser(config_for(shapes, tmp_path / "run", steps=2, adversarial={**AT, "eps": 4.0}), resume=True)
    with pytest.raises(FaceganError, match="'adversarial.eps' differs"):
        train_recogniser(config_for(shapes, tmp_path / "run", steps=2), resume=True)  # dropping AT is not a resume either


def test_a_plain_run_from_before_adversarial_training_still_resumes(shapes, tmp_path):
    # Checkpoints written before PGD-AT existed have no rng_adversarial; plain runs never draw from it.
    train_recogniser(config_for(shapes, tmp_path / "run", steps=2))
    run = Run(tmp_path / "run")
    state = torch.load(run.state_path, weights_only=True)
    del state["rng_adversarial"]
    torch.save(state, run.state_path)
    saved = run.read_config()
    del saved["adversarial"]  # nor an adversarial section in their config
    run.write_config(saved)
    assert train_recogniser(config_for(shapes, tmp_path / "run"), resume=True).num_steps == 4


def test_the_export_records_the_adversarial_settings(shapes, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "plain", steps=1))
    train_recogniser(config_for(shapes, tmp_path / "at", steps=1, adversarial={"eps": 4.0, "steps": 3}))
    plain = json.loads((Run(tmp_path / "plain").export_dir / "config.json").read_text())
    at = json.loads((Run(tmp_path / "at").export_dir / "config.json").read_text())
    assert plain["adversarial_training"] is None
    assert at["adversarial_training"] == {"method": "pgd-at", "norm": "linf", "eps": 4.0, "steps": 3, "step_size": 2.5 * 4 / 3,
                                          "random_start": True, "scale": "0..255",
                                          "description": "PGD-AT linf eps 4 (0..255), 3 steps"}
    from facegan.report.recognition_sections import recogniser_section

    rows = {row[0]: row[1] for row in recogniser_section(tmp_path / "at").tables[0].rows}
    assert rows["adversarial training"] == "PGD-AT linf eps 4 (0..255), 3 steps"
    assert "adversarial training" not in {row[0] for row in recogniser_section(tmp_path / "plain").tables[0].rows}


@pytest.mark.parametrize("values, message", [
    ({"eps": -1.0}, "--adversarial-eps must be at least 0"),
    ({"eps": 256.0}, "--adversarial-eps must be at most 255"),
    ({"steps": 0}, "--adversarial-steps must be at least 1"),
    ({"step_size": 0.0}, "--adversarial-step-size must be positive"),
    ({"norm": "l3"}, "unknown norm 'l3'"),
])
def test_adversarial_config_refusals_are_one_line(values, message):
    with pytest.raises(FaceganError, match=message) as error:
        AdversarialConfig(**values).validate()
    assert "\n" not in str(error.value)


def test_describe_names_the_method_budget_and_steps():
    assert AdversarialConfig().describe() == "none"
    assert AdversarialConfig(eps=4.0, steps=3).describe() == "PGD-AT linf eps 4 (0..255), 3 steps"
    assert AdversarialConfig(eps=0.5, steps=7, norm="l2", step_size=0.25).describe() == "PGD-AT l2 eps 0.5 (0..255), 7 steps, step 0.25"


def _robust_accuracy(trainer: RecogTrainer, data, eps: float) -> tuple[float, float]:
    """(clean, robust) nearest-class-centre accuracy on the training images, eval mode, under 10-step PGD on the margin loss."""
    from facegan.attacks import pgd

    images, classes = data.streams[0]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()  # 0..255
    y = torch.from_numpy(classes)
    trainer.net.eval()

    def objective(pixels):
        return -F.cross_entropy(trainer.head(trainer.net(pixels / 127.5 - 1.0), y), y, reduction="none")

    adversarial = pgd(objective, x, norm="linf", eps=eps, steps=10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean, robust = (trainer.head.cosine(trainer.net(images / 127.5 - 1.0)).argmax(1) == y for images in (x, adversarial))
    return clean.float().mean().item(), robust.float().mean().item()


def test_an_adversarially_trained_recogniser_resists_pgd_better_than_a_plain_one(tmp_path):
    data_path = save_identity_dataset(tmp_path / "shapes", num_identities=8, per_identity=8)
    results = {}
    for name, eps in (("plain", 0.0), ("at", 8.0)):
        config = from_dict(RecogConfig, {"data": [str(data_path)], "out": "unused", "steps": 50, "batch_size": 32, "calibration_images": 0,
                                         "backbone": {"width": 8, "embedding_size": 32, "blocks": [1, 1, 1, 1]},
                                         "optimizer": {"warmup_steps": 10}, "runtime": {"tensorboard": False, "device": "cpu"},
                                         "adversarial": {"eps": eps, "steps": 3}})
        data = load_identity_data(config)
        trainer = RecogTrainer(config, data, torch.device("cpu"))
        for _ in range(config.steps):
            trainer.step()
        results[name] = _robust_accuracy(trainer, data, eps=8.0)
    (plain_clean, plain_robust), (at_clean, at_robust) = results["plain"], results["at"]
    assert plain_clean > 0.9 and at_clean > 0.75, results  # both learned the identities
    assert at_robust > plain_robust + 0.25, results  # and only PGD-AT keeps them under an eps-8 attack
