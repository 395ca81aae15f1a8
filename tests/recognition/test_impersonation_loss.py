"""`--adversarial-loss trades-impersonation`: TRADES-cosine with half of each batch attacked toward another identity."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from facegan.cli.main import main
from facegan.errors import FaceganError
from facegan.recognition.config import AdversarialConfig
from facegan.recognition.training import RecogTrainer, load_identity_data, train_recogniser
from facegan.run import Run
from tests.recognition.identities import save_identity_dataset
from tests.recognition.tiny import config_for, export_weights

IMPERSONATION = {"eps": 4.0, "steps": 2, "loss": "trades-impersonation", "beta": 2.0}
FP32 = {"tensorboard": False, "device": "cpu", "amp": False}  # no bf16 autocast, so recomputations are the same arithmetic


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return save_identity_dataset(tmp_path_factory.mktemp("recog_impersonation") / "shapes", num_identities=6, per_identity=5)


def _trainer(shapes, **adversarial) -> RecogTrainer:
    config = config_for(shapes, "unused", adversarial={**IMPERSONATION, **adversarial}, runtime=FP32)
    trainer = RecogTrainer(config, load_identity_data(config), torch.device("cpu"))
    trainer.net.train()
    return trainer


def test_targets_are_the_partner_half_a_batch_on_and_only_other_identities_are_targeted():
    classes = torch.tensor([0, 1, 2, 3, 0, 5, 6, 7])
    targets, targeted = RecogTrainer.impersonation_targets(classes)
    assert targets.tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    # Sample 0's partner (4) is the same person: it is attacked away from itself instead; the second half always is.
    assert targeted.tolist() == [False, True, True, True, False, False, False, False]
    targets, targeted = RecogTrainer.impersonation_targets(torch.arange(5))
    assert targets.tolist() == [2, 3, 4, 0, 1] and targeted.tolist() == [True, True, False, False, False]


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0])
def test_the_loss_is_clean_loss_plus_beta_times_drift_and_weighted_similarity_rise(shapes, weight):
    trainer = _trainer(shapes, impersonation_weight=weight)
    x, classes = trainer.next_batch()
    generator_state = trainer.adversarial_rng.get_state()
    loss, _, extra = trainer._clean_and_adversarial_loss(x, classes)
    trainer.adversarial_rng.set_state(generator_state)  # the same random start again
    x_adv, _ = trainer.adversarial_batch(x, classes)
    assert (x_adv - x).abs().max().item() * 127.5 <= IMPERSONATION["eps"] * (1 + 1e-5)
    targets, targeted = trainer.impersonation_targets(classes)
    assert targeted.any()
    with torch.no_grad():
        clean, perturbed = trainer.net(torch.cat([x, x_adv])).chunk(2)
        drift = (1 - F.cosine_similarity(clean, perturbed)).mean()
        rise = (F.cosine_similarity(perturbed, clean[targets]) - F.cosine_similarity(clean, clean[targets])).clamp(min=0)
        rise = rise[targeted].mean()
        expected = F.cross_entropy(trainer.head(clean, classes), classes) + 2.0 * (drift + weight * rise)
    assert extra["drift"].item() == pytest.approx(drift.item(), rel=1e-5)
    assert extra["similarity_rise"].item() == pytest.approx(rise.item(), rel=1e-5, abs=1e-7) and rise.item() > 0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_attack_pulls_the_targeted_half_toward_its_targets_and_pushes_the_rest_away(shapes):
    trainer = _trainer(shapes, eps=8.0, steps=5)
    x, classes = trainer.next_batch()
    targets, targeted = trainer.impersonation_targets(classes)
    impersonating = trainer.adversarial_batch(x, classes)[0]
    trades = _trainer(shapes, eps=8.0, steps=5, loss="trades")
    trades.net.load_state_dict(trainer.net.state_dict())
    dodging = trades.adversarial_batch(x, classes)[0]
    with torch.no_grad():
        for module in trainer.batch_norms:
            module.track_running_stats = False  # batch statistics, as the attack saw them
        clean, pulled, pushed = (trainer.net(batch) for batch in (x, impersonating, dodging))
    toward = F.cosine_similarity(pulled, clean[targets])[targeted]
    # The targeted half moves toward the other person more than plain TRADES's attack moves it, and more than it was.
    assert (toward > F.cosine_similarity(clean, clean[targets])[targeted]).all()
    assert toward.mean() > F.cosine_similarity(pushed, clean[targets])[targeted].mean()
    rest = ~targeted
    assert (F.cosine_similarity(pulled, clean)[rest] < 1 - 1e-4).all()


def test_it_trains_records_its_method_and_resumes_bit_for_bit(shapes, tmp_path):
    train_recogniser(config_for(shapes, tmp_path / "straight", adversarial=IMPERSONATION))
    train_recogniser(config_for(shapes, tmp_path / "resumed", steps=2, adversarial=IMPERSONATION))
    train_recogniser(config_for(shapes, tmp_path / "resumed", adversarial=IMPERSONATION), resume=True)
    assert export_weights(tmp_path / "straight") == export_weights(tmp_path / "resumed")
    assert {"loss", "drift", "similarity_rise", "clean_loss"} <= set(Run(tmp_path / "straight").read_stats()[0])
    record = json.loads((Run(tmp_path / "straight").export_dir / "config.json").read_text())["adversarial_training"]
    assert record["method"] == "trades-cosine-impersonation" and record["beta"] == 2.0 and record["impersonation_weight"] == 1.0
    assert record["description"] == "TRADES-cosine + impersonation (beta 2, rise weight 1) linf eps 4 (0..255), 2 steps"
    train_recogniser(config_for(shapes, tmp_path / "trades", adversarial={**IMPERSONATION, "loss": "trades"}))
    assert export_weights(tmp_path / "trades") != export_weights(tmp_path / "straight")


@pytest.mark.parametrize("values, message", [
    ({"loss": "trades-impersonation", "clean_weight": 0.5}, "TRADES always trains on the clean loss"),
    ({"loss": "trades", "impersonation_weight": 0.5}, "weighs the similarity-rise term of --adversarial-loss trades-impersonation"),
    ({"loss": "madry", "impersonation_weight": 0.0}, "weighs the similarity-rise term"),
    ({"loss": "trades-impersonation", "impersonation_weight": -1.0}, "--adversarial-impersonation-weight must be at least 0"),
    ({"loss": "trades-impersonation", "impersonation_weight": float("nan")}, "--adversarial-impersonation-weight must be a finite"),
])
def test_option_refusals_are_one_line(values, message):
    with pytest.raises(FaceganError, match=message) as error:
        AdversarialConfig(eps=4.0, **values).validate()
    assert "\n" not in str(error.value)


def test_the_cli_takes_it(shapes, tmp_path, capsys):
    assert main(["recog", "train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--adversarial-eps", "4",
                 "--adversarial-loss", "trades-impersonation", "--adversarial-beta", "50", "--adversarial-impersonation-weight", "0.25", "--steps", "2",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"loss": "trades-impersonation"' in out and '"beta": 50.0' in out and '"impersonation_weight": 0.25' in out


def test_the_cli_refuses_the_weight_without_adversarial_training(shapes, tmp_path, capsys):
    assert main(["recog", "train", "--data", str(shapes), "--out", str(tmp_path / "run"), "--steps", "2",
                 "--adversarial-impersonation-weight", "0.5"]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: --adversarial-impersonation-weight is an option of adversarial training, which is off "
                     "(no --adversarial-eps); give --adversarial-eps, e.g. 4/255, or drop --adversarial-impersonation-weight"]
