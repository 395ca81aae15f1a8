"""ScaledSpectralNorm: effective spectral norm equals the fixed gain, output formula, saved gain, eval freezes u."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facegan.models.stable import ScaledSpectralNorm


def _wrapped(layer_seed=0, conv=False):
    torch.manual_seed(layer_seed)
    layer = nn.Conv2d(3, 5, 3, padding=1) if conv else nn.Linear(6, 4)
    nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu")
    nn.init.normal_(layer.bias)
    initial_norm = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
    return ScaledSpectralNorm(layer), initial_norm


def _effective_weight(module):
    return module.layer.weight.flatten(1) * module.gain  # (out, in * k * k), what the layer multiplies by


def _power_iteration_vectors(module):
    parametrization = module.layer.parametrizations.weight[0]
    return parametrization._u, parametrization._v


@pytest.mark.parametrize("conv", [False, True])
def test_gain_is_the_initial_spectral_norm_and_stays_the_effective_norm(conv):
    module, initial_norm = _wrapped(conv=conv)
    assert module.gain.item() == pytest.approx(initial_norm.item(), rel=1e-6)
    assert "gain" in dict(module.named_buffers()) and all(p is not module.gain for p in module.parameters())  # fixed, not learned
    with torch.no_grad():
        module.layer.parametrizations.weight.original.mul_(3.0).add_(0.5 * torch.randn_like(module.layer.parametrizations.weight.original))
    x = torch.randn(2, 3, 4, 4) if conv else torch.randn(2, 6)
    module.train()
    for _ in range(30):  # power iterations, one per training forward
        module(x)
    with torch.no_grad():
        assert torch.linalg.matrix_norm(_effective_weight(module), ord=2).item() == pytest.approx(module.gain.item(), rel=1e-4)


def test_output_is_gain_times_the_spectrally_normalised_layer():
    module, _ = _wrapped()
    module.eval()
    u, v = _power_iteration_vectors(module)
    original = module.layer.parametrizations.weight.original.detach()  # (4, 6)
    sigma = u @ original @ v  # torch's estimate of the largest singular value
    x = torch.randn(3, 6)
    expected = module.gain * F.linear(x, original / sigma, module.layer.bias)  # the bias is scaled by the gain too
    torch.testing.assert_close(module(x), expected, rtol=1e-6, atol=1e-6)
    assert sigma.item() == pytest.approx(torch.linalg.matrix_norm(original, ord=2).item(), rel=1e-4)


def test_gain_is_saved_and_loaded_with_the_state_dict():
    module, _ = _wrapped(0)
    other, _ = _wrapped(1)
    assert module.gain.item() != other.gain.item()
    state = module.state_dict()
    assert torch.equal(state["gain"], module.gain)
    other.load_state_dict(state)
    assert torch.equal(other.gain, module.gain)
    x = torch.randn(3, 6)
    assert torch.equal(other.eval()(x), module.eval()(x))


def test_eval_mode_does_not_update_the_power_iteration():
    module, _ = _wrapped(conv=True)
    with torch.no_grad():
        module.layer.parametrizations.weight.original.add_(torch.randn_like(module.layer.parametrizations.weight.original))
    before = [t.clone() for t in _power_iteration_vectors(module)]
    x = torch.randn(2, 3, 4, 4)
    module.eval()
    first, second = module(x), module(x)
    assert all(torch.equal(a, b) for a, b in zip(before, _power_iteration_vectors(module)))
    assert torch.equal(first, second)
    module.train()
    module(x)
    assert not torch.equal(before[0], _power_iteration_vectors(module)[0])  # training forwards do iterate
