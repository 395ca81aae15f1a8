"""The embedding backbone: shapes over its resolution range, determinism, channels_last, one-line refusals."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.errors import FaceganError
from facegan.recognition.backbone import EmbeddingNet, PReLU, final_size


@pytest.mark.parametrize(("resolution", "channels", "side"), [(32, 3, 2), (48, 1, 3), (112, 3, 7), (37, 3, 3)])
def test_embeddings_have_the_requested_size_at_every_resolution(resolution, channels, side):
    assert final_size(resolution) == side
    net = EmbeddingNet(resolution, channels, embedding_size=24, width=4, blocks=(1, 1, 1, 1)).eval()
    x = torch.rand(3, channels, resolution, resolution) * 2 - 1
    assert net(x).shape == (3, 24)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), channels=st.integers(1, 6), dims=st.sampled_from([2, 3, 4]),
       zeros=st.booleans())
def test_prelu_is_torch_prelu_forward_bit_for_bit_and_backward_to_rounding(seed, channels, dims, zeros):
    generator = torch.Generator().manual_seed(seed)
    shape = (3, channels, 5, 4)[:dims]
    x = torch.randn(shape, generator=generator) * 10 ** torch.randint(-3, 4, (), generator=generator).item()
    if zeros:
        x = torch.where(torch.rand(shape, generator=generator) < 0.2, 0.0, x)
    grad = torch.randn(shape, generator=generator)
    ours, theirs = PReLU(channels), torch.nn.PReLU(channels)
    with torch.no_grad():
        ours.weight.uniform_(-2, 2, generator=generator)
        theirs.weight.copy_(ours.weight)
    x_ours, x_theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    assert torch.equal(y_ours, y_theirs)
    y_ours.backward(grad)
    y_theirs.backward(grad)
    assert torch.equal(x_ours.grad, x_theirs.grad)  # zeros included: a * grad there, as torch's
    assert torch.allclose(ours.weight.grad, theirs.weight.grad, rtol=1e-5, atol=1e-5 * float(x.abs().max()) * len(x))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]


def test_prelu_under_bf16_autocast_matches_torch_prelu_in_bf16():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 6, 6)
    ours, theirs = PReLU(8), torch.nn.PReLU(8)
    with torch.no_grad():
        ours.weight.uniform_(-1, 1)
        theirs.weight.copy_(ours.weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x.bfloat16())
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, theirs.bfloat16()(x.bfloat16()))


def test_prelu_gradients_pass_gradcheck_and_a_second_derivative_is_refused():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    prelu = PReLU(4).double()
    with torch.no_grad():
        prelu.weight.uniform_(-1, 1)
    assert torch.autograd.gradcheck(prelu, (x,))
    (grad,) = torch.autograd.grad(prelu(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="twice|does not require grad"):
        grad.sum().backward()


def test_same_seed_same_network_and_output():
    def build():
        torch.manual_seed(7)
        return EmbeddingNet(32, 3, embedding_size=16, width=4).eval()

    first, second = build(), build()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert torch.equal(first(x), second(x))
    torch.manual_seed(8)
    assert not torch.equal(EmbeddingNet(32, 3, embedding_size=16, width=4).eval()(x), first(x))


def test_channels_last_gives_the_same_embeddings():
    torch.manual_seed(0)
    net = EmbeddingNet(32, 3, embedding_size=16, width=4).eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    plain = net(x)
    net = net.to(memory_format=torch.channels_last)
    assert torch.allclose(net(x.contiguous(memory_format=torch.channels_last)), plain, atol=1e-5)


def test_in_eval_mode_an_embedding_does_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    net = EmbeddingNet(32, 1, embedding_size=8, width=4).eval()
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    assert torch.allclose(net(x)[:2], net(x[:2]), atol=1e-5)


def test_training_changes_the_output():
    torch.manual_seed(0)
    net = EmbeddingNet(32, 1, embedding_size=8, width=4)
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    before = net.eval()(x).detach().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    net(x).pow(2).mean().backward()
    optimizer.step()
    assert not torch.allclose(net.eval()(x), before)


@pytest.mark.parametrize(("options", "message"), [
    ({"resolution": 16}, "32-112 px"),
    ({"resolution": 128}, "32-112 px"),
    ({"channels": 4}, "1 or 3 channels"),
    ({"embedding_size": 1}, "--embedding-size"),
    ({"blocks": (1, 2)}, "backbone.blocks"),
])
def test_impossible_networks_are_refused_in_one_line(options, message):
    arguments = {"resolution": 32, "channels": 3, **options}
    with pytest.raises(FaceganError, match=message.replace("-", r"\-")):
        EmbeddingNet(**arguments)
