"""dlib's ResNet face recogniser (dlib_face_recognition_resnet_model_v1) ported to PyTorch.

The weights are read straight from dlib's .dat file (`dlib_format`), and the network reproduces
dlib's `anet_type` (examples/dnn_face_recognition_ex.cpp) layer for layer, including its quirks:
strided convolutions have no padding, a residual sum whose branches differ in size is zero-padded
to the larger one (dlib's `add_prev`), and the 128-D descriptor is *not* L2-normalised (dlib's
`loss_metric` returns the fc output as is; the vectors have norms near 1.4). Tests prove equality
with dlib's own `compute_face_descriptor` on identical chips.

Inputs are face chips aligned as dlib expects: `dlib.get_face_chip(image, shape, size=150,
padding=0.25)`. Nothing here detects or aligns faces. Registered in `faces.recognisers` as
"dlib-resnet"; its match rule is dlib's: Euclidean distance below 0.6.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facegan.errors import FaceganError
from facegan.faces.align import dlib_model_path
from facegan.faces.dlib_format import read_face_recognizer_dat
from facegan.faces.match import MatchRule
from facegan.faces.recognisers import MatchRuleRecogniser

__all__ = [
    "CHIP_SIZE",
    "MATCH_RULE",
    "MATCH_THRESHOLD",
    "DlibFaceRecognizer",
    "DlibResNetRecogniser",
    "dlib_cpp_descriptors",
    "load_dlib_face_recognizer",
]

MATCH_THRESHOLD = 0.6
"""Euclidean distance between two descriptors below which dlib calls them the same person.

The network was trained (loss_metric, distance_threshold=0.6) so that same-identity pairs fall
below 0.6 and different identities above it; dlib reports 99.38% LFW accuracy at this threshold.
Applies to the raw, unnormalised descriptors that `DlibResNetRecogniser.embed` returns.
"""
MATCH_RULE = MatchRule("euclidean", MATCH_THRESHOLD)

CHIP_SIZE = 150
"""Side of the square RGB face chip the network was trained on (dlib's input_rgb_image_sized<150>)."""

_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@functools.lru_cache(maxsize=4)
def _parsed_arrays(path: str) -> dict[str, np.ndarray]:
    # Parsing takes ~0.1 s, so an in-process cache is enough; no on-disk cache is kept.
    arrays, _ = read_face_recognizer_dat(path)
    return arrays


def _fuse_affine(weight: np.ndarray, bias: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """affine(conv(x)) = gamma*(W*x + b) + beta = (gamma*W)*x + (gamma*b + beta): one conv, no extra pass."""
    fused_weight = weight * gamma[:, None, None, None]
    fused_bias = bias * gamma + beta
    return torch.from_numpy(np.ascontiguousarray(fused_weight)), torch.from_numpy(np.ascontiguousarray(fused_bias))


def _add_zero_padded(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum has the larger size in every dimension, missing values count as 0.

    It matters twice in this network: a downsampling block's skip path may have fewer channels than
    its residual branch, and an avg-pooled skip may be one pixel larger (8 -> 4 vs conv 8 -> 3).
    """
    if first.shape == second.shape:
        return first + second
    channels = max(first.shape[1], second.shape[1])
    height = max(first.shape[2], second.shape[2])
    width = max(first.shape[3], second.shape[3])

    def pad(tensor: torch.Tensor) -> torch.Tensor:
        # F.pad lists (left, right) pairs from the last dim: width, height, then channels.
        return F.pad(tensor, (0, width - tensor.shape[3], 0, height - tensor.shape[2], 0, channels - tensor.shape[1]))

    return pad(first) + pad(second)


class _ResidualBlock(nn.Module):
    """dlib's ares / ares_down: relu(affine(conv(relu(affine(conv(x))))) + skip(x)), affines fused."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        # dlib's con_ pads size/2 only when the stride is 1; a strided conv has no padding.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2 if downsample else 1, padding=0 if downsample else 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(F.relu(self.conv1(x)))  # (N, C_out, H', W')
        skip = F.avg_pool2d(x, 2, 2) if self.downsample else x  # (N, C_in, H/2, W/2) when downsampling
        return F.relu(_add_zero_padded(residual, skip))


# (out_channels, first block downsamples, number of blocks), input side first: alevel4 .. alevel0.
_STAGES = ((32, False, 3), (64, True, 4), (128, True, 3), (256, True, 3), (256, True, 1))


class DlibFaceRecognizer(nn.Module):
    """dlib's 29-conv ResNet face recogniser: RGB 150x150 chip -> 128-D descriptor.

    `forward` takes float NCHW in [-1, 1] (the project's model convention) and is differentiable;
    `forward_dlib_input` takes dlib's own normalisation, (pixel - mean_rgb) / 256.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.zeros(1, 3, 1, 1))  # dlib's avg_red/green/blue, in pixels
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        blocks = []
        in_channels = 32
        for out_channels, downsample, num_blocks in _STAGES:
            for index in range(num_blocks):
                blocks.append(_ResidualBlock(in_channels, out_channels, downsample and index == 0))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward_dlib_input(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 150, 150) already normalised as (pixel - mean_rgb) / 256 -> (N, 128)."""
        x = F.relu(self.stem(x))  # (N, 32, 72, 72)
        x = F.max_pool2d(x, 3, 2)  # (N, 32, 35, 35)
        x = self.blocks(x)  # (N, 256, 2, 2): 35 -> 17 -> 8 -> 4 -> 2 (dlib's size quirks included)
        x = x.mean(dim=(2, 3))  # (N, 256): avg_pool_everything
        return self.fc(x)  # (N, 128), not normalised, like dlib

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 150, 150) float RGB in [-1, 1] -> (N, 128) descriptors; differentiable."""
        pixels = (images + 1.0) * 127.5  # back to dlib's 0..255 scale
        return self.forward_dlib_input((pixels - self.mean_rgb) / 256.0)

    def load_dlib_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy weights parsed by `dlib_format.face_recognizer_arrays`, fusing each affine into its conv."""
        state: dict[str, torch.Tensor] = {"mean_rgb": torch.from_numpy(arrays["input.mean_rgb"]).view(1, 3, 1, 1)}
        state["stem.weight"], state["stem.bias"] = _fuse_affine(
            arrays["stem.conv.weight"], arrays["stem.conv.bias"], arrays["stem.affine.gamma"], arrays["stem.affine.beta"]
        )
        for index in range(len(self.blocks)):
            for position in (1, 2):
                prefix = f"blocks.{index}"
                weight, bias = _fuse_affine(
                    arrays[f"{prefix}.conv{position}.weight"], arrays[f"{prefix}.conv{position}.bias"],
                    arrays[f"{prefix}.affine{position}.gamma"], arrays[f"{prefix}.affine{position}.beta"],
                )
                state[f"{prefix}.conv{position}.weight"], state[f"{prefix}.conv{position}.bias"] = weight, bias
        state["fc.weight"] = torch.from_numpy(arrays["fc.weight"])
        self.load_state_dict(state, strict=True)


def load_dlib_face_recognizer(device: torch.device | str = "cpu", model_path: str | Path | None = None) -> DlibFaceRecognizer:
    """Build the recogniser with dlib's weights, frozen, in eval mode, on `device`.

    Weights come from `model_path` or the face_recognition_models package; the parse is cached
    in-process, and each call returns a fresh module.
    """
    path = Path(model_path) if model_path is not None else dlib_model_path(_MODEL_FILE)
    model = DlibFaceRecognizer()
    model.load_dlib_arrays(_parsed_arrays(str(path.resolve())))
    model.requires_grad_(False)  # a fixed feature extractor: gradients flow to inputs only
    return model.eval().to(device)


def _as_nchw_rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) with C in {1, 3} and H == W -> (N, 3, H, W); grayscale is replicated."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise FaceganError(f"face chips must be (N, C, H, W) with 1 or 3 channels, got shape {tuple(images.shape)}")
    if images.shape[2] != images.shape[3]:
        raise FaceganError(
            f"face chips must be square (as dlib.get_face_chip makes them), got {images.shape[2]}x{images.shape[3]}"
        )
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _resize_to_chip(images: torch.Tensor) -> torch.Tensor:
    """Square (N, 3, S, S) float -> (N, 3, 150, 150), bilinear with antialiasing; no re-detection.

    Values stay float (no rounding back to uint8), so a resized chip differs slightly from one that
    dlib would resample itself; chips already 150x150 pass through untouched.
    """
    if images.shape[-1] == CHIP_SIZE:
        return images
    return F.interpolate(images, size=(CHIP_SIZE, CHIP_SIZE), mode="bilinear", align_corners=False, antialias=True)


class DlibResNetRecogniser(MatchRuleRecogniser):
    """Recogniser "dlib-resnet" v1: aligned face chips -> dlib's 128-D identity descriptors, and dlib's match rule.

    `embed` takes uint8 NHWC chips (any square size, 1 or 3 channels) and returns what
    `dlib.face_recognition_model_v1.compute_face_descriptor` returns for them (float32, N x 128).
    `embed_tensor` is the same network on float NCHW in [-1, 1], differentiable, for identity losses.
    Two descriptors are one person when their Euclidean distance is below 0.6 (`match`).
    Runs on all CPU threads torch is allowed (torch.get_num_threads()).
    """

    name = "dlib-resnet"
    version = "1"
    dim = 128
    match = MATCH_RULE

    def __init__(self, device: torch.device | str = "cpu", channels_last: bool = True, bfloat16: bool = False) -> None:
        """The defaults are exact (fp32, cosine to dlib >= 0.9999999 on the test faces).

        channels_last: NHWC memory layout; 1.2x (fp32) to 1.45x (bf16) faster on a 2-core CPU.
        bfloat16: bf16 autocast; 2x faster on CPUs with bf16 units (AVX512-BF16/AMX), cosine to
            dlib stays >= 0.9999 but descriptors move by up to ~0.015 (vs the 0.6 match threshold),
            so it is opt-in. (torch.compile was measured too: no gain on CPU, ~30 s of warm-up.)
        """
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.bfloat16 = bfloat16
        try:
            self.device = torch.device(device)
            model = load_dlib_face_recognizer(self.device)
        except (RuntimeError, TypeError, ValueError, AssertionError) as error:
            # torch says "Torch not compiled with CUDA enabled" as an AssertionError: one line, not a traceback.
            raise FaceganError(f"cannot use device {device!r:.40} ({str(error).splitlines()[0]}); pass --device cpu") from None
        self.model = model.to(memory_format=self.memory_format)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16)




    def embed(self, images_uint8_nhwc: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, S, S, C) face chips, C in {1, 3} -> float32 (N, 128) descriptors."""
        images = np.asarray(images_uint8_nhwc)
        if images.dtype != np.uint8:
            raise FaceganError(f"the face recogniser expects uint8 images, got {images.dtype}; convert with facegan.images.to_uint8")
        if images.ndim == 3:
            images = images[..., None]  # (N, H, W) grayscale
        if images.ndim != 4:
            raise FaceganError(f"the face recogniser expects (N, H, W, C) images, got shape {images.shape}")
        outputs = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(images), batch_size):
                batch = torch.tensor(images[start : start + batch_size], device=self.device)  # a copy: input may be read-only
                pixels = _as_nchw_rgb(batch.permute(0, 3, 1, 2).float())  # (B, 3, S, S) in 0..255
                pixels = _resize_to_chip(pixels)  # (B, 3, 150, 150)
                # dlib's input layer: (pixel - mean) / 256 straight from the bytes, so no rounding
                # differs from dlib's own input_rgb_image_sized.
                normalised = ((pixels - self.model.mean_rgb) / 256.0).contiguous(memory_format=self.memory_format)
                outputs.append(self.model.forward_dlib_input(normalised).float().cpu())  # (B, 128)
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(outputs).numpy()

    def embed_tensor(self, images_float_nchw_minus1_1: torch.Tensor) -> torch.Tensor:
        """Float (N, C, S, S) in [-1, 1], C in {1, 3} -> (N, 128); gradients flow back to the images."""
        images = _as_nchw_rgb(images_float_nchw_minus1_1.to(self.device))
        images = _resize_to_chip(images).contiguous(memory_format=self.memory_format)
        with self._autocast():
            return self.model(images).float()


def dlib_cpp_descriptors(chips: "list[np.ndarray] | np.ndarray") -> np.ndarray:
    """dlib's own C++ `compute_face_descriptor` (batch overload, no jitter) on 150 px RGB uint8 chips -> float32 (N, 128).

    The reference the port is held to (attacks re-verify their saved images with it); ImportError without dlib.
    """
    import dlib

    recognizer = dlib.face_recognition_model_v1(str(dlib_model_path(_MODEL_FILE)))
    descriptors = []
    for start in range(0, len(chips), 64):
        batch = [np.ascontiguousarray(chip) for chip in chips[start : start + 64]]
        descriptors.extend(np.array(vector, dtype=np.float32) for vector in recognizer.compute_face_descriptor(batch))
    return np.stack(descriptors) if descriptors else np.zeros((0, 128), dtype=np.float32)
