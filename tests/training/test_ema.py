"""EMA of G: half-life semantics of ema_beta, the ramp-up cap, and update_ema's arithmetic."""
import copy

import pytest
import torch
from torch import nn

from facegan.training.config import EmaConfig
from facegan.training.ema import ema_beta, update_ema


def test_after_one_half_life_of_images_the_old_weights_keep_half_their_share():
    config = EmaConfig(half_life_kimg=0.64, rampup=0.0)
    share = 1.0
    for step in range(1, 640 // 32 + 1):  # 640 images in batches of 32
        share *= ema_beta(config, 32, step * 32)
    assert share == pytest.approx(0.5, rel=1e-9)
    assert ema_beta(config, 32, 32) ** 40 == pytest.approx(0.25, rel=1e-9)  # two half-lives: a quarter


@pytest.mark.parametrize("seen, expected_half_life", [(1_000, 50.0), (40_000, 2_000.0), (100_000, 5_000.0), (10_000_000, 5_000.0)])
def test_rampup_caps_the_half_life_at_a_fraction_of_the_images_seen(seen, expected_half_life):
    beta = ema_beta(EmaConfig(half_life_kimg=5.0, rampup=0.05), 64, seen)
    assert beta ** (expected_half_life / 64) == pytest.approx(0.5, rel=1e-9)  # half-life min(5 kimg, 0.05 * seen)


def test_update_ema_interpolates_parameters_and_copies_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(8, 3))  # moves BatchNorm's running statistics in the model only
    old = {name: t.clone() for name, t in ema.state_dict().items()}
    update_ema(ema, model, 0.9)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ema.state_dict()[name], 0.9 * old[name] + 0.1 * p.detach(), rtol=1e-6, atol=1e-7)
    for name, buffer in model.named_buffers():
        assert torch.equal(ema.state_dict()[name], buffer), name
    update_ema(ema, model, 0.0)  # beta 0: a plain copy
    assert all(torch.equal(ema.state_dict()[k], v) for k, v in model.state_dict().items())
