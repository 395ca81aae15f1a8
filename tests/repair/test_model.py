"""RepairNet / PatchDiscriminator: gated-conv shapes, exact compositing, determinism, a golden slice."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.repair.model import GatedConv2d, PatchDiscriminator, RepairNet, composite, num_downsamplings


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2), (1, 4)])
def test_gated_conv_shapes(stride, dilation):
    layer = GatedConv2d(5, 7, 3, stride=stride, dilation=dilation)
    out = layer(torch.randn(2, 5, 16, 16))
    assert out.shape == (2, 7, 16 // stride, 16 // stride)


def test_gated_conv_gate_can_close_a_pixel():
    """The gate is a sigmoid of the same input: a large negative gate bias silences the output everywhere."""
    layer = GatedConv2d(1, 1, 1, activation=False)
    with torch.no_grad():
        layer.conv.weight.zero_()
        layer.conv.bias.copy_(torch.tensor([3.0, -50.0]))  # features 3, gate sigmoid(-50) ~ 0
    assert layer(torch.zeros(1, 1, 4, 4)).abs().max() < 1e-10


@pytest.mark.parametrize("resolution,channels", [(16, 1), (32, 3), (64, 1), (128, 3)])
def test_repair_net_output_shape(resolution, channels):
    net = RepairNet(resolution, channels, width=4)
    x = torch.rand(2, channels, resolution, resolution) * 2 - 1
    mask = torch.zeros(2, 1, resolution, resolution)
    assert net(x, mask).shape == x.shape
    assert net.raw(x, mask).shape == x.shape
    critic = PatchDiscriminator(resolution, channels, width=4)
    logits = critic(x, mask)
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] == max(4, resolution >> max(2, min(6, int(np.log2(resolution)) - 2)))


def test_downsamplings_keep_bottleneck_small():
    assert [num_downsamplings(size) for size in (16, 32, 64, 128, 256)] == [2, 2, 3, 4, 4]


def test_bad_resolution_is_refused():
    with pytest.raises(ValueError, match="power-of-two"):
        RepairNet(48)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), ratio=st.floats(0.01, 0.95))
def test_compositing_keeps_every_known_pixel_bit_exact(seed, ratio):
    generator = torch.Generator().manual_seed(seed)
    net = RepairNet(16, 3, width=4)
    x = torch.rand(3, 3, 16, 16, generator=generator) * 2 - 1
    mask = (torch.rand(3, 1, 16, 16, generator=generator) < ratio).float()
    mask[:, :, 0, 0] = 1.0  # every image has at least one hole (an image without one is restored whole)
    out = net(x, mask)
    known = (mask < 0.5).expand_as(x)
    assert torch.equal(out[known], x[known])
    # The holes are the network's, not the input's: changing what lies under the mask changes no known pixel.
    other = torch.where(mask.bool().expand_as(x), torch.rand_like(x), x)
    assert torch.equal(net(other, mask), out)


def test_composite_never_leaks_a_non_finite_prediction():
    x = torch.zeros(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 0, 0] = 1
    predicted = torch.full_like(x, float("nan"))
    out = composite(x, mask, predicted)
    assert torch.isnan(out[..., 0, 0]).all() and torch.equal(out.flatten()[1:], x.flatten()[1:])


def test_image_without_hole_is_restored_whole():
    net = RepairNet(16, 1, width=4)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    assert torch.equal(net(x, mask), net.raw(x, mask))
    assert not torch.equal(net(x, mask), x)


def test_same_seed_same_weights_and_golden_slice():
    """A change to init or layers shows up here (diffusers' golden-slice habit)."""
    torch.manual_seed(0)
    net = RepairNet(16, 1, width=4)
    torch.manual_seed(0)
    again = RepairNet(16, 1, width=4)
    for (name, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.linspace(-1, 1, 256).view(1, 1, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    with torch.no_grad():
        out = net(x, mask)[0, 0, 8, 4:8]
    torch.testing.assert_close(out, GOLDEN, rtol=0, atol=1e-5)


GOLDEN = torch.tensor([-0.0727301, -0.0766953, -0.0789727, -0.0777590])  # RepairNet(16, 1, width=4) at torch.manual_seed(0)
