"""A compact residual embedding network for 32-112 px face chips (a small IResNet, as in InsightFace).

Float NCHW in [-1, 1] (channels_last preferred) -> (B, embedding_size) embeddings, not normalised:
the margin head and the exported recogniser normalise them. Four stride-2 stages take 112 px to 7x7
and 32 px to 2x2; the last feature map is flattened into a linear layer (IResNet's "fc" output),
which keeps where things are on the face, unlike global pooling.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from facegan.recognition.config import NUM_STAGES, check_architecture

class _PReLUFunction(torch.autograd.Function):
    """torch's PReLU forward kernel, and a backward of three elementwise passes and one fp32 reduction."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.prelu(x, weight.to(x.dtype))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        slope = weight.to(grad.dtype).view((1, -1) + (1,) * (x.dim() - 2)) if x.dim() > 1 else weight.to(grad.dtype)
        positive = torch.ops.aten.threshold_backward(grad, x, 0)  # grad where x > 0, else 0
        negative = grad - positive  # grad where x <= 0, else 0
        grad_x = torch.addcmul(positive, negative, slope)  # grad where x > 0, else slope * grad
        dims = [dim for dim in range(x.dim()) if dim != 1] if x.dim() > 1 else list(range(x.dim()))
        # Summed in the gradient's dtype (torch accumulates reduced-precision sums in fp32); an x of +inf gives NaN here
        # where torch gives 0, but the loss is not finite then either and training stops on it.
        grad_weight = (negative * x).sum(dims)
        return grad_x, grad_weight.reshape(weight.shape).to(weight.dtype)


class PReLU(nn.PReLU):
    """nn.PReLU with a faster backward: the same forward kernel, parameter and state-dict key.

    The forward pass is torch's own (bit-identical), and so is the input gradient (grad where x > 0, else a * grad);
    the slope's gradient is the same sum in another order. Why: torch's CPU PReLU backward kernel
    is slow — profiled in `benchmarks/recog_throughput.py` it was ~30 % of a training step of this network at 32 px;
    this backward is ~1.8x (fp32) and ~3.7x (bf16) faster on a 64x32x32x32 batch on 2 cores. Not twice differentiable
    (nothing in facegan differentiates a recogniser twice); that raises instead of giving a wrong answer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PReLUFunction.apply(x, self.weight)


def final_size(resolution: int) -> int:
    """Side of the last feature map: each stage is a stride-2 3x3 conv with padding 1 (ceil(s / 2))."""
    for _ in range(NUM_STAGES):
        resolution = (resolution + 1) // 2
    return resolution


class ResidualBlock(nn.Module):
    """IResNet's IBasicBlock: BN-conv-BN-PReLU-conv-BN plus the (projected) input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class EmbeddingNet(nn.Module):
    """Face chips (B, C, S, S) in [-1, 1] -> embeddings (B, embedding_size)."""

    def __init__(self, resolution: int, channels: int = 3, embedding_size: int = 128, width: int = 32,
                 blocks: Sequence[int] = (1, 2, 2, 1)) -> None:
        super().__init__()
        check_architecture(resolution, channels, embedding_size, width, blocks)
        self.resolution, self.channels, self.embedding_size = resolution, channels, embedding_size
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), PReLU(width))
        stages: list[nn.Module] = []
        in_channels = width
        for stage, num_blocks in enumerate(blocks):
            out_channels = width * 2**stage
            for index in range(num_blocks):
                stages.append(ResidualBlock(in_channels, out_channels, stride=2 if index == 0 else 1))
                in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        side = final_size(resolution)
        self.head = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Flatten(),
            nn.Linear(in_channels * side * side, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(images)))  # (B, embedding_size)
