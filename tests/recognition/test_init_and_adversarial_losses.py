"""`--init` (fine-tuning from a recogniser export) and the PGD-AT loss options (mixed clean weight, TRADES-cosine)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from facegan.errors import FaceganError
from facegan.recognition.config import AdversarialConfig
from facegan.recognition.export import load_recogniser_export
from facegan.recognition.training import RecogTrainer, load_identity_data, train_recogniser
from facegan.run import Run
from tests.recognition.identities import save_identity_dataset
from tests.recognition.tiny import TINY, config_for, export_weights, logged_losses

AT = {"eps": 4.0, "steps": 2}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("recog_init") / "shapes", num_identities=6, per_identity=5)


@pytest.fixture(scope="module")
def base(shapes, tmp_path_factory):
    """A trained tiny recogniser to start from."""
    out = tmp_path_factory.mktemp("recog_init") / "base"
    train_recogniser(config_for(shapes, out, steps=6))
    return out





def test_init_loads_the_exported_network_and_imprints_the_head(shapes, base):
    config = config_for(shapes, "unused", init=str(base))
    data = load_identity_data(config)
    trainer = RecogTrainer(config, data, torch.device("cpu"))
    record = trainer.initialise_from(str(base), data)
    exported = load_recogniser_export(base)
    for name, value in exported.net.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(trainer.net.state_dict()[name], value), name
    # Each class centre is the normalised mean of its training images' embeddings.
    images, classes = data.streams[0]
    first = torch.from_numpy(trainer.embed(images[classes == 0]))
    centre = F.normalize(first.mean(0), dim=0)
    assert torch.allclose(trainer.head.weight[0], centre, atol=1e-5)
    assert record["version"] == exported.version and record["num_steps"] == 6 and record["head"] == "imprinted"
    # The imprinted head already classifies the training images better than a random one.
    with torch.no_grad():
        embeddings = torch.from_numpy(trainer.embed(images))
        labels = torch.from_numpy(classes)
        imprinted = (trainer.head.cosine(embeddings).argmax(1) == labels).float().mean().item()
        random_head = RecogTrainer(config, data, torch.device("cpu")).head
        random = (random_head.cosine(embeddings).argmax(1) == labels).float().mean().item()
    assert imprinted > random and imprinted > 0.5


def test_a_run_from_init_records_it_and_differs_from_a_fresh_one(shapes, base, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "fresh"))
    train_recogniser(config_for(shapes, tmp_path / "tuned", init=str(base)))
    assert export_weights(tmp_path / "fresh") != export_weights(tmp_path / "tuned")
    version = load_recogniser_export(base).version
    export = json.loads((Run(tmp_path / "tuned").export_dir / "config.json").read_text())
    assert export["init"]["version"] == version and export["init"]["path"] == str(Run(base).export_dir.resolve())
    assert Run(tmp_path / "tuned").read_run_info()["init"]["version"] == version
    assert Run(tmp_path / "tuned").read_config()["init"] == str(base.resolve())
    assert "init" not in json.loads((Run(tmp_path / "fresh").export_dir / "config.json").read_text())
    assert "init" not in Run(tmp_path / "fresh").read_run_info()
    # Starting near a trained network, the first losses are lower than from random weights.
    assert logged_losses(tmp_path / "tuned")[0] < logged_losses(tmp_path / "fresh")[0]


def test_init_resumes_bit_for_bit_even_after_the_init_export_is_gone(shapes, base, tmp_path):
    copy = tmp_path / "base-copy"
    shutil.copytree(base, copy)
    train_recogniser(config_for(shapes, tmp_path / "straight", init=str(copy), adversarial=AT))
    train_recogniser(config_for(shapes, tmp_path / "resumed", steps=2, init=str(copy), adversarial=AT))
    shutil.rmtree(copy)  # the checkpoint holds the weights: resuming never reads --init again
    train_recogniser(config_for(shapes, tmp_path / "resumed", init=str(copy), adversarial=AT), resume=True)
    assert export_weights(tmp_path / "straight") == export_weights(tmp_path / "resumed")
    assert logged_losses(tmp_path / "straight") == logged_losses(tmp_path / "resumed")
    export = json.loads((Run(tmp_path / "resumed").export_dir / "config.json").read_text())
    assert export["init"]["version"] == load_recogniser_export(base).version


def test_resume_refuses_another_init_or_dropping_it(shapes, base, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "run", steps=1, init=str(base)))
    with pytest.raises(FaceganError, match="'--init' differs") as error:
        train_recogniser(config_for(shapes, tmp_path / "run", steps=2), resume=True)
    assert "\n" not in str(error.value)
    with pytest.raises(FaceganError, match="'--init' differs"):
        train_recogniser(config_for(shapes, tmp_path / "run", steps=2, init=str(tmp_path / "run")), resume=True)


def test_init_refuses_another_backbone_in_one_line(shapes, base, tmp_path):
    config = config_for(shapes, tmp_path / "wide", init=str(base), backbone={**TINY["backbone"], "width": 8})
    with pytest.raises(FaceganError, match=r"another backbone than this run \(width 4 vs 8") as error:
        train_recogniser(config)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "wide").exists()  # refused before anything was written


def test_init_from_something_that_is_no_recogniser_is_one_line(shapes, tmp_path):
    with pytest.raises(FaceganError, match="is not a recogniser") as error:
        train_recogniser(config_for(shapes, tmp_path / "run", init=str(shapes)))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("adversarial", [{**AT, "clean_weight": 0.5}, {**AT, "loss": "trades", "beta": 2.0}])
def test_mixed_and_trades_losses_are_what_they_say(shapes, adversarial):
    # fp32 (no bf16 autocast where the CPU has it), so the recomputation below is the same arithmetic.
    config = config_for(shapes, "unused", adversarial=adversarial, runtime={"tensorboard": False, "device": "cpu", "amp": False})
    trainer = RecogTrainer(config, load_identity_data(config), torch.device("cpu"))
    x, classes = trainer.next_batch()
    generator_state = trainer.adversarial_rng.get_state()
    trainer.net.train()
    loss, _, extra = trainer._clean_and_adversarial_loss(x, classes)
    # Recompute it from the same perturbed batch (same random start), clean and perturbed in one BatchNorm pass.
    trainer.adversarial_rng.set_state(generator_state)
    x_adv, _ = trainer.adversarial_batch(x, classes)
    delta = (x_adv - x) * 127.5
    assert delta.abs().max().item() <= AT["eps"] * (1 + 1e-5) and delta.abs().max().item() > 0.5 * AT["eps"]
    with torch.no_grad():
        clean, perturbed = trainer.net(torch.cat([x, x_adv])).chunk(2)
        clean_loss = F.cross_entropy(trainer.head(clean, classes), classes)
        if adversarial.get("loss") == "trades":
            drift = (1 - F.cosine_similarity(clean, perturbed)).mean()
            expected = clean_loss + 2.0 * drift
            assert extra["drift"].item() == pytest.approx(drift.item(), rel=1e-5) and drift.item() > 0
        else:
            expected = 0.5 * clean_loss + 0.5 * F.cross_entropy(trainer.head(perturbed, classes), classes)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_trades_attack_moves_embeddings_further_than_random_noise(shapes):
    config = config_for(shapes, "unused", adversarial={"eps": 8.0, "steps": 5, "loss": "trades"})
    trainer = RecogTrainer(config, load_identity_data(config), torch.device("cpu"))
    x, classes = trainer.next_batch()
    trainer.net.train()
    x_adv, _ = trainer.adversarial_batch(x, classes)
    noise = (x + (torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 8 / 127.5).clamp(-1, 1)
    with torch.no_grad():
        for module in trainer.batch_norms:
            module.track_running_stats = False
        clean, attacked, noisy = (trainer.net(batch) for batch in (x, x_adv, noise))
    assert (1 - F.cosine_similarity(clean, attacked)).mean() > (1 - F.cosine_similarity(clean, noisy)).mean()


def test_loss_options_train_record_and_resume_bit_for_bit(shapes, tmp_path):
    trades = {**AT, "loss": "trades", "beta": 3.0}
    train_recogniser(config_for(shapes, tmp_path / "straight", adversarial=trades))
    train_recogniser(config_for(shapes, tmp_path / "resumed", steps=2, adversarial=trades))
    train_recogniser(config_for(shapes, tmp_path / "resumed", adversarial=trades), resume=True)
    assert export_weights(tmp_path / "straight") == export_weights(tmp_path / "resumed")
    stats = Run(tmp_path / "straight").read_stats()
    assert {"loss", "drift", "clean_loss", "clean_accuracy"} <= set(stats[0])
    export = json.loads((Run(tmp_path / "straight").export_dir / "config.json").read_text())
    assert export["adversarial_training"]["method"] == "trades-cosine" and export["adversarial_training"]["beta"] == 3.0
    assert export["adversarial_training"]["description"] == "TRADES-cosine (beta 3) linf eps 4 (0..255), 2 steps"
    with pytest.raises(FaceganError, match="'adversarial.beta' differs"):
        train_recogniser(config_for(shapes, tmp_path / "resumed", steps=5, adversarial={**trades, "beta": 6.0}), resume=True)
    train_recogniser(config_for(shapes, tmp_path / "mixed", adversarial={**AT, "clean_weight": 0.25}))
    mixed = json.loads((Run(tmp_path / "mixed").export_dir / "config.json").read_text())["adversarial_training"]
    assert mixed["clean_weight"] == 0.25 and mixed["description"].endswith(", clean weight 0.25")
    assert export_weights(tmp_path / "mixed") != export_weights(tmp_path / "straight")


@pytest.mark.parametrize("values, message", [
    ({"loss": "free"}, "unknown loss 'free'"),
    ({"clean_weight": 1.0}, "--adversarial-clean-weight must be below 1"),
    ({"clean_weight": -0.1}, "--adversarial-clean-weight must be at least 0"),
    ({"beta": 0.0}, "--adversarial-beta must be positive"),
    ({"beta": float("nan")}, "--adversarial-beta must be a finite number"),
    ({"loss": "trades", "clean_weight": 0.5}, "TRADES always trains on the clean loss"),
])
def test_loss_option_refusals_are_one_line(values, message):
    with pytest.raises(FaceganError, match=message) as error:
        AdversarialConfig(eps=4.0, **values).validate()
    assert "\n" not in str(error.value)
