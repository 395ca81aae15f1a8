"""Private training end to end on tiny models: accounting, fakes, Poisson batches, resume, budget, saved keys."""
import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from facegan import train
from facegan.errors import FaceganError
from facegan.models import build_discriminator
from facegan.privacy.dp import clip_and_noise, per_sample_gradients
from facegan.training.loop import load_run_config
from facegan.training.losses import get_loss
from tests.privacy.helpers import build_trainer, private_config, private_part


def _stats(run):
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def _dp_block(run):
    return json.loads((run / "export" / "config.json").read_text())["dp"]


def _state(run):
    return torch.load(run / "checkpoints" / "state.pt", weights_only=True)


def _independent_epsilon(accountant, noise_multiplier, sample_rate, steps, delta):
    from opacus.accountants import PRVAccountant, RDPAccountant

    fresh = {"rdp": RDPAccountant, "prv": PRVAccountant}[accountant]()
    fresh.history = [(noise_multiplier, sample_rate, steps)]
    return fresh.get_epsilon(delta=delta)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_reported_epsilon_matches_an_independent_opacus_computation(accountant, faces16, tiny_config, tmp_path):
    run = tmp_path / "run"
    result = train(private_config(tiny_config, faces16, run, kimg=0.064, noise_multiplier=1.0, accountant=accountant), progress=False)
    dp = _dp_block(run)
    # One accountant step per D step (fakes are not charged), at q = batch / N, delta = 1 / (10 N).
    assert result.num_steps == dp["steps"] == 8
    assert dp["sample_rate"] == pytest.approx(8 / 100) and dp["delta"] == pytest.approx(1e-3)
    assert dp["noise_multiplier"] == 1.0 and dp["max_grad_norm"] == 1.0 and dp["accountant"] == accountant
    assert dp["mechanism"] == "DP-SGD on discriminator real-sample gradients"
    expected = _independent_epsilon(accountant, 1.0, 8 / 100, 8, 1e-3)
    assert dp["epsilon"] == pytest.approx(expected, rel=0.01)
    assert _stats(run)[-1]["epsilon"] == pytest.approx(expected, rel=0.01)
    epsilons = [line["epsilon"] for line in _stats(run)]
    assert epsilons == sorted(epsilons) and epsilons[0] > 0  # spent step by step, never reset
    history = _state(run)["privacy"]["history"]
    assert sum(steps for *_, steps in history) == 8 and all(rate == pytest.approx(0.08) for _, rate, _ in history)
    # Saved weights keep their plain names: no Opacus `_module.` prefix, the same keys as a non-private D.
    plain_keys = set(build_discriminator(load_run_config(run).model).state_dict())
    assert set(_state(run)["D"]) == plain_keys
    assert not [key for key in load_file(str(run / "export" / "model.safetensors")) if "_module" in key]


def test_epsilon_target_derives_the_noise_and_is_not_exceeded(faces16, tiny_config, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(faces16, run, preset="dp", kimg=0.064, privacy={"epsilon": 3.0, "accountant": "rdp"})
    result = train(config, progress=False)
    dp = _dp_block(run)
    assert result.num_steps == 8 and dp["target_epsilon"] == 3.0
    assert dp["noise_multiplier"] > 0
    assert 2.9 <= dp["epsilon"] <= 3.0  # get_noise_multiplier's tolerance is 0.01 in epsilon
    assert dp["epsilon"] == pytest.approx(_independent_epsilon("rdp", dp["noise_multiplier"], 0.08, 8, 1e-3), rel=0.01)


def test_budget_stops_training_before_the_target_is_exceeded(faces16, tiny_config, tmp_path):
    run = tmp_path / "run"
    config = private_config(tiny_config, faces16, run, kimg=2.0, noise_multiplier=1.0, privacy={"epsilon": 1.5})
    result = train(config, progress=False)
    dp = _dp_block(run)
    assert result.num_steps == dp["steps"] < 250  # stopped long before the kimg target
    assert dp["epsilon"] <= 1.5
    assert _independent_epsilon("rdp", 1.0, 0.08, dp["steps"] + 1, 1e-3) > 1.5  # one more step would exceed it
    summary = json.loads((run / "summary.json").read_text())
    assert "privacy budget reached" in summary["stopped_early"]
    # Resuming for longer cannot spend more: the very first step is refused.
    with pytest.raises(FaceganError, match="privacy budget of this run is spent"):
        train(private_config(tiny_config, faces16, run, kimg=4.0, noise_multiplier=1.0, privacy={"epsilon": 1.5}), resume=True, progress=False)
    assert _dp_block(run)["steps"] == dp["steps"]


def test_resume_keeps_the_budget_and_continues_exactly(faces16, tiny_config, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(private_config(tiny_config, faces16, straight, kimg=0.064), progress=False)
    train(private_config(tiny_config, faces16, split, kimg=0.032), progress=False)
    half = _dp_block(split)["epsilon"]
    train(private_config(tiny_config, faces16, split, kimg=0.064), resume=True, progress=False)
    a, b = _dp_block(straight), _dp_block(split)
    assert b["steps"] == 8 and b["epsilon"] == pytest.approx(a["epsilon"], rel=1e-9) and b["epsilon"] > half
    state_a, state_b = _state(straight), _state(split)
    assert state_a["privacy"]["history"] == state_b["privacy"]["history"]
    for key in state_a["D"]:  # same Poisson batches and the same noise after resume
        assert torch.equal(state_a["D"][key], state_b["D"][key]), key
    assert [line["epsilon"] for line in _stats(split)] == [line["epsilon"] for line in _stats(straight)]


def test_fake_gradient_is_added_exactly_and_unclipped(faces16, tiny_config, tmp_path):
    max_grad_norm = 1e-4  # tiny: a clipped or rescaled fake gradient could not reach the size asserted below
    config = private_config(tiny_config, faces16, tmp_path / "run", privacy={"max_grad_norm": max_grad_norm},
                            augment={"policy": ""}, runtime={"amp": False, "tensorboard": False, "num_threads": 1})
    trainer = build_trainer(config)
    private = private_part(trainer)
    private.gradients.noise_multiplier = 0.0  # a test hook: the noiseless private gradient, to compare exactly
    assert private.expected_batch_size == pytest.approx(8)  # q N, not the drawn batch size
    real = trainer.next_real_batch()
    fake = trainer.G(torch.randn(8, trainer.config.model.z_dim)).detach()
    trainer.opt_D.zero_grad(set_to_none=True)
    trainer.accumulate_discriminator_gradients(real, fake)
    total = {name: p.grad.clone() for name, p in trainer.D.named_parameters()}

    per_sample, _ = per_sample_gradients(trainer.D, real, "logistic")
    expected = clip_and_noise(per_sample, max_grad_norm, 0.0, private.expected_batch_size)
    plain = copy.deepcopy(trainer.D)
    plain.zero_grad()
    get_loss("logistic").fake_batch_loss(plain(fake)).backward()
    for name, param in plain.named_parameters():
        torch.testing.assert_close(total[name] - expected[name], param.grad, atol=1e-6, rtol=1e-4)
    fake_norm = torch.cat([p.grad.flatten() for p in plain.parameters()]).norm().item()
    private_norm = torch.cat([value.flatten() for value in expected.values()]).norm().item()
    assert private_norm <= max_grad_norm * len(real) / private.expected_batch_size * (1 + 1e-4)
    assert fake_norm > 1000 * max_grad_norm  # fakes move D far beyond any per-face bound: they are not clipped
    assert not any(hasattr(p, "grad_sample") for p in trainer.D.parameters())


def test_poisson_batches_vary_and_an_empty_batch_still_costs_a_noisy_step(faces16, tiny_config, tmp_path):
    trainer = build_trainer(private_config(tiny_config, faces16, tmp_path / "run"))
    sizes = [len(trainer.next_real_batch()) for _ in range(300)]
    assert abs(sum(sizes) / len(sizes) - 8) < 0.6 and len(set(sizes)) >= 5  # Binomial(100, 0.08)
    before = {name: p.detach().clone() for name, p in trainer.D.named_parameters()}
    fake = trainer.G(torch.randn(8, trainer.config.model.z_dim)).detach()
    stats = trainer.discriminator_step(trainer.next_real_batch()[:0], fake)
    assert "logit_real" not in stats and "loss_d" not in stats and "logit_fake" in stats
    assert private_part(trainer).ledger.num_steps == 1  # charged (by the optimizer-step hook) although no face was read
    assert any(not torch.equal(before[name], p) for name, p in trainer.D.named_parameters())


def test_dropout_discriminator_trains_privately(faces32, tiny_config, tmp_path):
    """seed-dcgan's D (dropout, no BatchNorm) is DP-compatible: dropout masks are drawn per face."""
    from facegan.images import to_model
    from facegan.privacy.validate import check_private_discriminator

    config = tiny_config(faces32, tmp_path / "unused", preset="seed-dcgan", kimg=0.016, privacy={"noise_multiplier": 1.0, "accountant": "rdp"})
    trainer = build_trainer(config)
    check_private_discriminator(trainer.D)  # accepted: no layer mixes faces
    same_face = trainer.images[:1].expand(4, -1, -1, -1)  # one face four times: only dropout can tell them apart
    faces = to_model(same_face, torch.device("cpu"))  # (4, 1, 32, 32)
    torch.manual_seed(0)
    per_sample, logits = per_sample_gradients(trainer.D, faces, "logistic")
    assert trainer.D.training and len(set(logits.tolist())) == 4  # four masks, one per face
    weight = per_sample["logit.weight"].flatten(1)  # (4, P)
    assert all(not torch.equal(weight[i], weight[j]) for i in range(4) for j in range(i))
    # Each face's mask zeroes its own features: a weight whose input was dropped gets no gradient for that face.
    zero_fraction = (weight == 0).float().mean(1)
    assert ((zero_fraction > 0.2) & (zero_fraction < 0.4)).all(), zero_fraction  # about p = 0.3 of the last layer's inputs
    trainer.D.eval()  # no dropout: the four copies are indistinguishable
    per_sample, logits = per_sample_gradients(trainer.D, faces, "logistic")
    assert len(set(logits.tolist())) == 1 and all(torch.equal(per_sample["logit.weight"][0], g) for g in per_sample["logit.weight"])
    trainer.D.train()

    run = tmp_path / "run"
    config.out = str(run)
    train(config, progress=False)
    assert _dp_block(run)["steps"] == 2


def test_the_ledger_is_charged_once_per_discriminator_optimizer_step_only(faces16, tiny_config, tmp_path):
    """The charge hangs on opt_D.step: a whole step charges once, a generator step never."""
    trainer = build_trainer(private_config(tiny_config, faces16, tmp_path / "run"))
    ledger = private_part(trainer).ledger
    trainer.step()
    assert ledger.num_steps == 1
    trainer.generator_step(trainer.G(torch.randn(8, trainer.config.model.z_dim)))
    assert ledger.num_steps == 1
    trainer.step()
    assert ledger.num_steps == 2 and trainer.num_steps == 2


def test_step_stats_are_detached_tensors_without_a_host_sync(faces16, tiny_config, tmp_path):
    """DP step stats stay on the device: 0-d detached tensors, loss_d in float64 (the float sum of its two halves)."""
    trainer = build_trainer(private_config(tiny_config, faces16, tmp_path / "run"))
    stats = trainer.step()
    assert {"loss_g", "logit_fake"} <= set(stats)
    for name, value in stats.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad, name
    if "loss_d" in stats:
        assert stats["loss_d"].dtype == torch.float64


def test_private_setup_keeps_the_plain_trainer_class(faces16, tiny_config, tmp_path):
    """Composition, not inheritance: the private trainer is a plain Trainer with its slots filled."""
    from facegan.privacy.dp import PoissonSampler, PrivateDiscriminatorGradients
    from facegan.training.loop import Trainer

    trainer = build_trainer(private_config(tiny_config, faces16, tmp_path / "run"))
    assert type(trainer) is Trainer
    assert isinstance(trainer.real_batch_sampler, PoissonSampler)
    assert isinstance(trainer.discriminator_gradients, PrivateDiscriminatorGradients)
    state = trainer.state_dict()
    assert {"privacy", "rng_sampling", "rng_privacy_noise"} <= set(state)
    with pytest.raises(FaceganError, match="make it private once"):
        from facegan.privacy import make_private

        make_private(trainer)


@pytest.mark.parametrize("private", [True, False])
def test_metric_every_never_selects_an_export_under_dp(private, faces16, tiny_config, tmp_path, monkeypatch):
    """Choosing a checkpoint by FD on the private data would spend uncharged privacy: DP runs log metrics, keep no export-best/."""
    from facegan.metrics.features import unregister_extractor
    from tests.metrics.helpers import PROJECTION_NAME, register_projection

    monkeypatch.setenv("FACEGAN_CACHE_DIR", str(tmp_path / "cache"))
    schedule = {"metric_kimg": 0.032, "metric_num": 16, "metric_features": PROJECTION_NAME,
                "log_kimg": 0.016, "checkpoint_kimg": 0.032, "snapshot_kimg": 0.032, "num_snapshot_images": 4}
    run = tmp_path / "run"
    if private:
        config = private_config(tiny_config, faces16, run, kimg=0.064, schedule=schedule)
    else:
        config = tiny_config(faces16, run, preset="dp", kimg=0.064, schedule=schedule)  # same recipe, privacy off
    register_projection()
    try:
        train(config, progress=False)
    finally:
        unregister_extractor(PROJECTION_NAME)
    measured = [line for line in _stats(run) if "fd" in line]
    assert [round(line["kimg"], 3) for line in measured] == [0.032, 0.064] and all(line["fd"] >= 0 for line in measured)
    assert ("epsilon" in measured[0]) == private
    assert (run / "export-best").exists() == (not private)
    if not private:
        assert json.loads((run / "export-best" / "config.json").read_text())["selected_by"]["fd"] == min(line["fd"] for line in measured)


def test_a_callers_setup_runs_after_the_private_pieces(faces16, tiny_config, tmp_path):
    """facegan.train(private config, setup_trainer=f): f sees a trainer that is already private (and DP still applies)."""
    seen = []
    result = train(private_config(tiny_config, faces16, tmp_path / "run", kimg=0.016),
                   setup_trainer=lambda trainer: seen.append(private_part(trainer).ledger.num_steps))
    assert seen == [0]
    assert _dp_block(tmp_path / "run")["steps"] == result.num_steps > 0
