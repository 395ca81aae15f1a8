"""The seed-dcgan preset has exactly the classic layer shapes."""
import pytest
import torch
from torch import nn

from facegan.models import build_discriminator, build_generator
from facegan.models.layers import Dropout
from facegan.training.config import resolve_config


def _seed_model(resolution: int, channels: int = 3):
    model = resolve_config("seed-dcgan").model
    model.resolution, model.channels = resolution, channels
    return model


def test_seed_dcgan_generator_layers_at_32px():
    generator = build_generator(_seed_model(32))
    # z (100) -> Dense to 4x4x256 (no bias) -> BatchNorm -> LeakyReLU
    assert generator.dense.in_features == 100 and generator.dense.out_features == 4 * 4 * 256
    assert generator.dense.bias is None
    assert isinstance(generator.dense_norm, nn.BatchNorm1d) and generator.dense_norm.num_features == 4096
    convs = [m for m in generator.upsample if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(256, 128), (128, 64), (64, 3)]
    assert all(c.kernel_size == (5, 5) and c.stride == (2, 2) for c in convs)
    norms = [m.num_features for m in generator.upsample if isinstance(m, nn.BatchNorm2d)]
    assert norms == [128, 64]  # every transposed conv but the last is followed by BatchNorm
    acts = [m for m in generator.upsample if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 2 and acts[0].negative_slope == pytest.approx(0.3)
    out = generator(torch.randn(2, 100))
    assert out.shape == (2, 3, 32, 32)
    assert out.abs().max() <= 1.0  # tanh


@pytest.mark.parametrize("resolution, expected", [
    (64, [(256, 256), (256, 128), (128, 64), (64, 1)]),
    (128, [(256, 256), (256, 256), (256, 128), (128, 64), (64, 1)]),
])
def test_seed_dcgan_resolution_adds_upsampling_stages(resolution, expected):
    generator = build_generator(_seed_model(resolution, channels=1))
    convs = [m for m in generator.upsample if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == expected
    with torch.no_grad():
        assert generator.eval()(torch.randn(1, 100)).shape == (1, 1, resolution, resolution)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_seed_dcgan_discriminator_goes_down_to_one_logit(resolution):
    discriminator = build_discriminator(_seed_model(resolution))
    convs = [m for m in discriminator.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256][: len(convs)]
    assert all(c.stride == (2, 2) and c.kernel_size == (5, 5) for c in convs)
    assert sum(isinstance(m, Dropout) and m.p == pytest.approx(0.3) for m in discriminator.features) == len(convs)
    assert discriminator.logit.out_features == 1
    assert discriminator(torch.randn(4, 3, resolution, resolution)).shape == (4,)


def test_seed_dcgan_recipe_is_bce_adam_1e4(faces32, tiny_config, tmp_path):
    """The trainer built from the preset: BCE losses, Adam 1e-4 steps, no augmentation, no EMA, no R1."""
    import copy

    import torch.nn.functional as F

    from facegan.images import to_model
    from tests.privacy.helpers import build_trainer

    trainer = build_trainer(tiny_config(faces32, tmp_path / "run", preset="seed-dcgan"))
    assert trainer.G_ema is None and trainer.export_module is trainer.G
    real = to_model(trainer.images[:8], torch.device("cpu"))  # (8, 1, 32, 32)
    assert trainer.augment(real) is real
    fake = trainer.G(torch.randn(8, 100, generator=torch.Generator().manual_seed(0)))

    # D's loss is BCE (real -> 1, fake -> 0); the same dropout masks are drawn from the same global seed.
    reference_D = copy.deepcopy(trainer.D)
    torch.manual_seed(1)
    with trainer.autocast():  # bf16 where the CPU has it natively, as the trainer runs
        real_logits, fake_logits = reference_D(real).float(), reference_D(fake.detach()).float()
    expected_d = (F.binary_cross_entropy_with_logits(real_logits, torch.ones(8)) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros(8))).item()
    before = {name: p.detach().clone() for name, p in trainer.D.named_parameters()}
    torch.manual_seed(1)
    stats = trainer.discriminator_step(real, fake.detach())
    assert stats["loss_d"] == pytest.approx(expected_d, rel=1e-5) and "r1" not in stats
    # A first Adam step moves every weight with a gradient by lr = 1e-4 (m/sqrt(v) = sign(g)).
    steps = torch.cat([(p.detach() - before[name]).abs().flatten() for name, p in trainer.D.named_parameters()])
    assert steps.max().item() == pytest.approx(1e-4, rel=1e-3) and (steps > 0.99e-4).float().mean() > 0.9
    assert [group["betas"] for group in trainer.opt_D.param_groups + trainer.opt_G.param_groups] == [(0.9, 0.999)] * 2

    # G's loss is the non-saturating BCE -log sigmoid(D(fake)).
    reference_D = copy.deepcopy(trainer.D)
    torch.manual_seed(2)
    with trainer.autocast():
        expected_g = F.binary_cross_entropy_with_logits(reference_D(fake.detach()).float(), torch.ones(8)).item()
    torch.manual_seed(2)
    assert trainer.generator_step(fake)["loss_g"] == pytest.approx(expected_g, rel=1e-5)
    assert max(p.grad.abs().max().item() for p in trainer.G.parameters()) > 0 and trainer.opt_G.param_groups[0]["lr"] == 1e-4


def test_dcgan_rejects_unsupported_resolution():
    from facegan.errors import FaceganError

    with pytest.raises(FaceganError, match="32, 64 or 128"):
        build_generator(_seed_model(16))


def test_fast_dropout_matches_nn_dropout_in_distribution():
    torch.manual_seed(0)
    layer = Dropout(0.3)
    x = torch.ones(200_000)
    y = layer(x)
    kept = (y != 0).float()
    assert abs(kept.mean().item() - 0.7) < 0.005  # Bernoulli(0.7) mask
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))  # inverted scaling, as nn.Dropout
    assert abs(y.mean().item() - 1.0) < 0.01  # expectation preserved
    assert torch.equal(layer.eval()(x), x)  # identity at eval
