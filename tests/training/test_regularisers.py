"""R1 penalty value and gradient on discriminators where the answer is analytic; lazy-R1 Adam rescaling."""
import pytest
import torch

from facegan.training.losses import r1_penalty
from tests.privacy.helpers import build_trainer


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    # D(x) = <W, x> + b: dD/dx = W for every image, so R1 = ||W||^2 whatever the batch.
    weight = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    bias = torch.tensor(0.3, requires_grad=True)
    images = torch.randn(5, 2, 4, 4, requires_grad=True)
    penalty = r1_penalty((images * weight).sum((1, 2, 3)) + bias, images)
    assert penalty.item() == pytest.approx(weight.detach().pow(2).sum().item(), rel=1e-6)
    penalty.backward()  # differentiable in D's weights (create_graph): d||W||^2/dW = 2W
    torch.testing.assert_close(weight.grad, 2 * weight.detach())
    assert bias.grad is None or bias.grad.item() == 0.0


def test_r1_is_the_batch_mean_of_each_image_squared_gradient_norm():
    # D(x) = 1/2 <a, x^2>: dD/dx_i = a * x_i, so R1 = mean_i ||a * x_i||^2.
    scale = torch.rand(1, 3, 2, 2, generator=torch.Generator().manual_seed(1)) + 0.5
    images = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    penalty = r1_penalty(0.5 * (scale * images.pow(2)).sum((1, 2, 3)), images)
    expected = (scale * images.detach()).pow(2).flatten(1).sum(1).mean()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("r1_gamma, interval", [(0.1, 16), (1.0, 4), (0.0, 16)])
def test_lazy_r1_rescales_the_discriminator_adam_settings(r1_gamma, interval, faces16, tiny_config, tmp_path):
    config = tiny_config(faces16, tmp_path / "run", loss={"r1_gamma": r1_gamma, "r1_interval": interval},
                         optimizer={"lr_g": 3e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.99})
    trainer = build_trainer(config)
    ratio = interval / (interval + 1) if r1_gamma > 0 else 1.0  # StyleGAN2's lazy regularisation
    (group_d,), (group_g,) = trainer.opt_D.param_groups, trainer.opt_G.param_groups
    assert group_d["lr"] == pytest.approx(2e-4 * ratio, rel=1e-12)
    assert group_d["betas"] == pytest.approx((0.5**ratio, 0.99**ratio), rel=1e-12)
    assert group_g["lr"] == pytest.approx(3e-4) and group_g["betas"] == pytest.approx((0.5, 0.99))  # G is never rescaled


def test_r1_is_applied_every_interval_steps(faces16, tiny_config, tmp_path):
    trainer = build_trainer(tiny_config(faces16, tmp_path / "run", loss={"r1_gamma": 0.5, "r1_interval": 3}))
    applied = ["r1" in trainer.step() for _ in range(7)]
    assert applied == [True, False, False, True, False, False, True]
