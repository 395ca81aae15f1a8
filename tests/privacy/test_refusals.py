"""Options and layers that would break the guarantee are refused before any work, in one line with the fix."""
import json

import pytest
import torch
from torch import nn

from facegan import train
from facegan.cli.main import main
from facegan.errors import FaceganError
from facegan.models import ModelConfig, build_discriminator, never_dp_safe, register_architecture, unregister_architecture
from facegan.privacy.accounting import PrivacyLedger
from facegan.privacy.validate import check_private_config, check_private_discriminator
from facegan.training.distributed import DistributedContext
from tests.privacy.helpers import build_trainer, private_config

PRIVATE = {"noise_multiplier": 1.0, "accountant": "rdp"}


@pytest.mark.parametrize("preset, updates, message", [
    ("default", {}, r"spectral norm.*--preset dp.*model\.spectral_norm=false"),
    ("dp", {"model": {"minibatch_std": True}}, r"minibatch-std.*--preset dp.*model\.minibatch_std=false"),
    # R1 is refused, not silently disabled: it is a real-image gradient that would bypass clipping.
    ("dp", {"loss": {"r1_gamma": 0.1}}, r"R1 penalty.*--preset dp.*loss\.r1_gamma=0"),
])
def test_incompatible_recipes_are_refused_before_anything_is_written(preset, updates, message, faces16, tiny_config, tmp_path):
    config = tiny_config(faces16, tmp_path / "run", preset=preset, privacy=PRIVATE, **updates)
    with pytest.raises(FaceganError, match=message):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("privacy, batch_size, message", [
    ({"delta": 0.02}, 8, r"dp-delta 0.02 is not below 1/N"),
    ({}, 128, r"batch_size 128 is larger than the dataset"),
    ({"epsilon": 0.01, "noise_multiplier": 0.5}, 8, r"does not cover even one step"),
    ({"max_grad_norm": 0.0}, 8, r"max_grad_norm.*must be positive"),
])
def test_impossible_privacy_settings_are_refused(privacy, batch_size, message, faces16, tiny_config, tmp_path):
    config = private_config(tiny_config, faces16, tmp_path / "run", privacy=privacy, batch_size=batch_size)
    with pytest.raises(FaceganError, match=message):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_multi_process_training_is_refused(faces16, tiny_config, tmp_path, monkeypatch):
    from facegan.privacy import make_private

    config = private_config(tiny_config, faces16, tmp_path / "run")
    trainer = build_trainer(tiny_config(faces16, tmp_path / "run", preset="dp"))
    trainer.context = DistributedContext(rank=0, world_size=2)
    with pytest.raises(FaceganError, match="one process"):
        make_private(trainer, config.privacy)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: refused before any work
    with pytest.raises(FaceganError, match="one process.*without torchrun"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_privacy_asks_the_architecture_whether_it_is_dp_safe(faces16, tiny_config, tmp_path):
    """A registered architecture's own DP declaration decides, with its reason and fix in the refusal."""
    from facegan.models import get_architecture

    register_architecture("toy-unsafe", generator=get_architecture("stable").generator, discriminator=get_architecture("stable").discriminator,
                          dp_safe=never_dp_safe("the toy's batch-coupled layer (it mixes samples)", "--set model.architecture=stable"))
    try:
        config = private_config(tiny_config, faces16, tmp_path / "run")
        check_private_config(config)  # the dp preset on `stable`: declared safe
        config.model.architecture = "toy-unsafe"  # the same settings, another declaration
        with pytest.raises(FaceganError, match=r"cannot use the toy's batch-coupled layer \(it mixes samples\); use --preset dp or --set model.architecture=stable"):
            check_private_config(config)
        with pytest.raises(FaceganError, match="toy's batch-coupled layer"):
            train(config, progress=False)
        assert not (tmp_path / "run").exists()
        config.privacy.noise_multiplier = 0.0  # without DP the declaration is not asked
        check_private_config(config)
    finally:
        unregister_architecture("toy-unsafe")


def test_layer_check_names_the_layer_and_the_fix():
    spectral = build_discriminator(ModelConfig(resolution=8, channels=1, d_channels=8, min_channels=8, minibatch_std=False))
    with pytest.raises(FaceganError, match=r"layer 'from_image.0'.*spectral norm.*--preset dp"):
        check_private_discriminator(spectral)
    with pytest.raises(FaceganError, match=r"layer '1' \(BatchNorm2d\).*GroupNorm"):
        check_private_discriminator(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    check_private_discriminator(build_discriminator(ModelConfig(resolution=8, channels=1, d_channels=8, min_channels=8,
                                                                spectral_norm=False, d_norm="group", minibatch_std=False)))


def test_ledger_budget_matches_a_brute_force_search():
    ledger = PrivacyLedger("rdp", noise_multiplier=1.0, sample_rate=0.08, delta=1e-3, target_epsilon=2.0)
    from opacus.accountants import RDPAccountant

    def epsilon(steps):
        accountant = RDPAccountant()
        accountant.history = [(1.0, 0.08, steps)]
        return accountant.get_epsilon(delta=1e-3)

    exact = max(steps for steps in range(1, 40) if epsilon(steps) <= 2.0)
    assert ledger.max_steps() == exact
    for _ in range(exact):
        assert ledger.can_step()
        ledger.step()
    assert not ledger.can_step() and ledger.epsilon() <= 2.0
    restored = PrivacyLedger("rdp", 1.0, 0.08, 1e-3, 2.0)
    restored.load_state_dict(ledger.state_dict())
    assert restored.num_steps == exact and restored.epsilon() == ledger.epsilon() and not restored.can_step()


def test_cli_dp_flags_pick_the_dp_preset_and_map_to_privacy(tmp_path, capsys):
    assert main(["train", "--data", "d", "--out", str(tmp_path / "x"), "--dry-run", "--dp-epsilon", "5", "--dp-delta", "1e-6",
                 "--dp-max-grad-norm", "0.5", "--dp-accountant", "rdp"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["preset"] == "dp" and config["model"]["spectral_norm"] is False and config["loss"]["r1_gamma"] == 0
    assert config["privacy"] == {"epsilon": 5.0, "delta": 1e-6, "noise_multiplier": 0.0, "max_grad_norm": 0.5, "accountant": "rdp"}
    # --set still wins over the flags, as everywhere else.
    assert main(["train", "--data", "d", "--out", str(tmp_path / "x"), "--dry-run", "--dp-noise-multiplier", "2",
                 "--set", "privacy.noise_multiplier=3"]) == 0
    assert json.loads(capsys.readouterr().out)["privacy"]["noise_multiplier"] == 3


@pytest.mark.parametrize("argv, message", [
    (["--preset", "default", "--dp-epsilon", "5"], "spectral norm"),
    (["--dp-delta", "1e-6"], "need --dp-epsilon or --dp-noise-multiplier"),
])
def test_cli_refusals_are_one_line(argv, message, tmp_path, capsys):
    assert main(["train", "--data", "d", "--out", str(tmp_path / "x"), "--dry-run", *argv]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0]


def test_cli_trains_privately(faces16, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(faces16), "--out", str(run), "--kimg", "0.016", "--batch-size", "8", "--no-progress",
                 "--dp-noise-multiplier", "1.5", "--dp-accountant", "rdp", "--set", "model.g_channels=16", "--set", "model.d_channels=16",
                 "--set", "model.min_channels=8", "--set", "runtime.tensorboard=false", "--set", "runtime.num_threads=1"]) == 0
    exported = json.loads((run / "export" / "config.json").read_text())
    assert exported["preset"] == "dp" and exported["dp"]["noise_multiplier"] == 1.5 and exported["dp"]["steps"] == 2
    assert torch.load(run / "checkpoints" / "state.pt", weights_only=True)["privacy"]["accountant"] == "rdp"
