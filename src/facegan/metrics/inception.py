"""The standard-FID Inception-v3 (pool3, 2048-D), written here in plain PyTorch, weights from a local file.

Every published FID number comes from the TensorFlow Inception graph of 2015-12-05. pytorch-fid
ported it to PyTorch as `pt_inception-2015-12-05-6726825d.pth`, a plain state_dict of torchvision's
Inception3 (1008 classes, no aux head) with four blocks patched to match TensorFlow:

- Mixed_5b..5d (InceptionA), Mixed_6b..6e (InceptionC), Mixed_7b (first InceptionE): the 3x3
  average pool of the pool branch ignores the zero padding (`count_include_pad=False`), as
  TensorFlow's avg_pool does;
- Mixed_7c (second InceptionE): the pool branch uses a 3x3 *max* pool, a quirk of that graph.

The network below reproduces that model layer for layer, with the same module names, so the
file loads strictly. We cannot ship or download the file: the user passes its path
(`--inception-weights PATH` or `FACEGAN_INCEPTION_WEIGHTS`). Nothing here needs torchvision.

Input protocol (`InceptionExtractor.protocol` records it with the features):
uint8 NHWC -> grayscale replicated to RGB -> each channel resized to 299x299 as a float32 PIL image
with bicubic filtering (PIL antialiases when it downsamples) and clipped to [0, 255], as clean-fid's
"clean" mode does -> x / 255 * 2 - 1, pytorch-fid's scaling to [-1, 1] -> pool3 features.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from facegan.errors import FaceganError

__all__ = [
    "INCEPTION_ENV",
    "INCEPTION_INPUT_SIZE",
    "INCEPTION_WEIGHTS_FILENAME",
    "INCEPTION_WEIGHTS_URL",
    "FIDInceptionV3",
    "InceptionExtractor",
    "load_inception_weights",
    "resize_for_inception",
    "resolve_inception_weights",
]

INCEPTION_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
"""pytorch-fid's port of the TensorFlow FID Inception; the user supplies a local copy."""

INCEPTION_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_WEIGHTS_FILENAME
)
"""Where pytorch-fid publishes the file (its FID_WEIGHTS_URL); only shown to the user, never fetched."""

INCEPTION_ENV = "FACEGAN_INCEPTION_WEIGHTS"
"""Environment variable holding the weights path when `--inception-weights` is not given."""

INCEPTION_INPUT_SIZE = 299
"""Side of the square RGB input the network was trained on."""

_NUM_CLASSES = 1008  # the TF graph's classifier has 1008 outputs (not 1000); kept so the file loads strictly
_BN_EPS = 0.001  # TensorFlow's batch-norm epsilon, not PyTorch's default 1e-5


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 0.001) -> ReLU; parameters named `conv.*` and `bn.*` as in the .pth."""

    def __init__(self, in_channels: int, out_channels: int, **conv_options: Any) -> None:
        super().__init__()
        # No conv bias: the batch norm that follows has its own shift.
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool that, like TensorFlow's, averages only the pixels inside the image."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d (35x35 grid): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | TF-avg-pool->1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)  # (N, 64, 35, 35)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))  # (N, 64, 35, 35)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))  # (N, 96, 35, 35)
        branch_pool = self.branch_pool(_tf_avg_pool_3x3(x))  # (N, pool_features, 35, 35)
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)  # (N, 224 + pool_features, 35, 35)


class InceptionB(nn.Module):
    """Mixed_6a, grid reduction 35 -> 17: 3x3/2 | 1x1->3x3->3x3/2 | max-pool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3(x)  # (N, 384, 17, 17)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))  # (N, 96, 17, 17)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 288, 17, 17)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], 1)  # (N, 768, 17, 17)


class InceptionC(nn.Module):
    """Mixed_6b..6e (17x17 grid), 7x7 factorised into 1x7 and 7x1; the pool branch uses the TF average pool."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)  # (N, 192, 17, 17)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))  # (N, 192, 17, 17)
        branch7x7dbl = self.branch7x7dbl_1(x)
        branch7x7dbl = self.branch7x7dbl_3(self.branch7x7dbl_2(branch7x7dbl))
        branch7x7dbl = self.branch7x7dbl_5(self.branch7x7dbl_4(branch7x7dbl))  # (N, 192, 17, 17)
        branch_pool = self.branch_pool(_tf_avg_pool_3x3(x))  # (N, 192, 17, 17)
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)  # (N, 768, 17, 17)


class InceptionD(nn.Module):
    """Mixed_7a, grid reduction 17 -> 8: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | max-pool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))  # (N, 320, 8, 8)
        branch7x7x3 = self.branch7x7x3_1(x)
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(branch7x7x3)))  # (N, 192, 8, 8)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 768, 8, 8)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)  # (N, 1280, 8, 8)


class InceptionE(nn.Module):
    """Mixed_7b / Mixed_7c (8x8 grid), 3x3 split into parallel 1x3 and 3x1.

    `max_pool=False` is FIDInceptionE_1 (Mixed_7b: TF average pool); `max_pool=True` is
    FIDInceptionE_2 (Mixed_7c: the TF graph max-pools here, unlike the paper; kept for parity).
    """

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)  # (N, 320, 8, 8)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)  # (N, 768, 8, 8)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))  # (N, 384, 8, 8), split again below: (N, 768, 8, 8)
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _tf_avg_pool_3x3(x)
        branch_pool = self.branch_pool(pooled)  # (N, 192, 8, 8)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)  # (N, 2048, 8, 8)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3: float (N, 3, 299, 299) RGB in [-1, 1] -> (N, 2048) pool3 features.

    Module names equal the keys of `pt_inception-2015-12-05-6726825d.pth`. `fc` (2048 -> 1008)
    is not used for FID; it exists so the file loads strictly (and for logits, if ever needed).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, _NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 299, 299) in [-1, 1] -> (N, 2048) pool3 features."""
        x = self.Conv2d_1a_3x3(x)  # (N, 32, 149, 149)
        x = self.Conv2d_2a_3x3(x)  # (N, 32, 147, 147)
        x = self.Conv2d_2b_3x3(x)  # (N, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 64, 73, 73)
        x = self.Conv2d_3b_1x1(x)  # (N, 80, 73, 73)
        x = self.Conv2d_4a_3x3(x)  # (N, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 192, 35, 35)
        x = self.Mixed_5b(x)  # (N, 256, 35, 35)
        x = self.Mixed_5c(x)  # (N, 288, 35, 35)
        x = self.Mixed_5d(x)  # (N, 288, 35, 35)
        x = self.Mixed_6a(x)  # (N, 768, 17, 17)
        x = self.Mixed_6b(x)
        x = self.Mixed_6c(x)
        x = self.Mixed_6d(x)
        x = self.Mixed_6e(x)  # (N, 768, 17, 17)
        x = self.Mixed_7a(x)  # (N, 1280, 8, 8)
        x = self.Mixed_7b(x)  # (N, 2048, 8, 8)
        x = self.Mixed_7c(x)  # (N, 2048, 8, 8)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 2048): pool3


def _is_batch_counter(key: str) -> bool:
    # BatchNorm's step counter: unused in eval mode, and present or absent depending on the PyTorch
    # version that wrote the file, so it is never required and never rejected.
    return key.endswith(".num_batches_tracked")


def _not_found_message(reason: str) -> str:
    return (
        f"the standard FID needs the Inception weights file {INCEPTION_WEIGHTS_FILENAME} ({reason}); "
        f"download it from pytorch-fid's GitHub release ({INCEPTION_WEIGHTS_URL}) and pass "
        f"--inception-weights PATH or set {INCEPTION_ENV}=PATH, or use --features face, which works offline"
    )


def resolve_inception_weights(path: str | os.PathLike[str] | None) -> Path:
    """The weights file to use: `path`, else $FACEGAN_INCEPTION_WEIGHTS; a folder means the standard file in it.

    Raises FaceganError (one line: what is needed, where to get it, how to pass it) when neither is
    set or the file does not exist.
    """
    if path is not None and str(path) != "":
        source = "--inception-weights"
    elif os.environ.get(INCEPTION_ENV):
        path, source = os.environ[INCEPTION_ENV], INCEPTION_ENV
    else:
        raise FaceganError(_not_found_message(f"neither --inception-weights nor {INCEPTION_ENV} is set"))
    resolved = Path(path).expanduser()
    if resolved.is_dir():
        resolved = resolved / INCEPTION_WEIGHTS_FILENAME
    if not resolved.is_file():
        raise FaceganError(_not_found_message(f"{resolved} from {source} does not exist"))
    return resolved


def load_inception_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read and check a FID Inception state_dict from a `.pth` (weights only, no code unpickled) or `.safetensors`.

    Raises FaceganError naming the file and the first missing, unexpected or mis-shaped key.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path), device="cpu")
        else:
            # weights_only: tensors and containers only, so a hostile file cannot run code.
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any read failure means the same thing to the user
        if isinstance(error, pickle.UnpicklingError):
            # torch's own message suggests weights_only=False, which is exactly what we must not do.
            reason = "not a weights-only checkpoint (corrupt, or it pickles objects other than tensors)"
        elif isinstance(error, EOFError):
            reason = "the file is empty or truncated"
        else:
            lines = str(error).strip().splitlines()
            # First sentence only: the rest of torch's and safetensors' messages is advice for their own users.
            reason = lines[0].split(". ")[0][:200] if lines else type(error).__name__
        raise FaceganError(
            f"cannot read Inception weights {path}: {reason}; expected pytorch-fid's {INCEPTION_WEIGHTS_FILENAME}"
        ) from error
    if not isinstance(loaded, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise FaceganError(
            f"{path} is not a state_dict of tensors (got {type(loaded).__name__}); "
            f"expected pytorch-fid's {INCEPTION_WEIGHTS_FILENAME}"
        )
    state_dict = dict(loaded)
    _check_state_dict(state_dict, str(path))
    return state_dict


def _check_state_dict(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise FaceganError unless `state_dict` has exactly FIDInceptionV3's keys and shapes."""
    with torch.device("meta"):  # shapes only: no 24M-parameter allocation just to compare keys
        expected = {key: tuple(value.shape) for key, value in FIDInceptionV3().state_dict().items()}
    hint = f"is it pytorch-fid's {INCEPTION_WEIGHTS_FILENAME}?"
    for key, shape in expected.items():
        if _is_batch_counter(key):
            continue
        if key not in state_dict:
            raise FaceganError(f"Inception weights {source} lack key {key!r}; {hint}")
        if tuple(state_dict[key].shape) != shape:
            raise FaceganError(
                f"Inception weights {source}: {key!r} has shape {tuple(state_dict[key].shape)}, expected {shape}; {hint}"
            )
    for key in state_dict:
        if key not in expected and not _is_batch_counter(key):
            raise FaceganError(f"Inception weights {source} have unexpected key {key!r}; {hint}")


def resize_for_inception(image: np.ndarray) -> np.ndarray:
    """One uint8 (H, W) or (H, W, C) image -> float32 (299, 299, C) in [0, 255], clean-fid's resize.

    Each channel becomes a float32 PIL image (mode "F") and goes through
    `Image.resize((299, 299), Image.BICUBIC)`: PIL widens the filter when it downsamples
    (antialiasing), and the result is not rounded back to uint8, so no second quantisation error
    is added. Bicubic overshoot is clipped to [0, 255]. A 299x299 image passes through unchanged.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise FaceganError(f"expected a uint8 (H, W) or (H, W, C) image, got {image.dtype} {image.shape}")
    channels = image[..., None] if image.ndim == 2 else image
    size = (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE)
    resized = [
        np.asarray(Image.fromarray(channels[..., index].astype(np.float32), mode="F").resize(size, Image.BICUBIC))
        for index in range(channels.shape[-1])
    ]  # C x (299, 299)
    return np.clip(np.stack(resized, axis=-1), 0.0, 255.0).astype(np.float32, copy=False)  # (299, 299, C)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class InceptionExtractor:
    """Feature extractor "inception-v3-fid" v1: uint8 images -> the 2048-D pool3 features every FID uses.

    `features` follows `protocol`: grayscale replicated to RGB, clean-fid's PIL-bicubic resize to
    299x299 (float, antialiased), pytorch-fid's x / 255 * 2 - 1, then the network in fp32.
    Weights come from `weights_path` (or $FACEGAN_INCEPTION_WEIGHTS); tests may pass `state_dict`.
    """

    name = "inception-v3-fid"
    version = "1"
    dim = 2048

    def __init__(
        self,
        weights_path: str | os.PathLike[str] | None = None,
        device: torch.device | str = "cpu",
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Load the weights (a file, or `state_dict` if given) into a frozen, eval-mode network on `device`."""
        self.device = torch.device(device)
        if state_dict is not None:
            _check_state_dict(state_dict, "state_dict")
            self.weights_sha256: str | None = None  # injected weights have no file to identify them by
        else:
            path = resolve_inception_weights(weights_path)
            state_dict = load_inception_weights(path)
            # Content hash, not path: caches of real-data statistics must not survive a different file.
            self.weights_sha256 = _file_sha256(path)
        model = FIDInceptionV3()
        weights = dict(state_dict)
        for key, value in model.state_dict().items():
            if _is_batch_counter(key):
                weights.setdefault(key, value)
        model.load_state_dict(weights, strict=True)
        model.requires_grad_(False)  # a fixed feature extractor
        # channels_last: NHWC convolutions are the fast path of oneDNN (CPU) and cuDNN alike.
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.protocol: dict[str, Any] = {
            "network": "Inception-v3 of the TF graph 2015-12-05 as ported by pytorch-fid "
            "(FIDInceptionA/C/E_1/E_2: TF average pools, max pool in Mixed_7c)",
            "weights_file": INCEPTION_WEIGHTS_FILENAME,
            "weights_sha256": self.weights_sha256,
            "layer": "pool3: global average pool after Mixed_7c, 2048-D",
            "input": "uint8 NHWC, 1 or 3 channels; grayscale replicated to RGB",
            "resize": "per channel: PIL Image.fromarray(float32, mode='F').resize((299, 299), Image.BICUBIC), "
            "antialiased when downsampling, clipped to [0, 255], not re-quantised (clean-fid 'clean' mode)",
            "normalize": "x / 255 * 2 - 1 (pytorch-fid), giving [-1, 1]",
            "dtype": "float32",
        }

    def _prepare(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, C), C in {1, 3} -> float32 (B, 3, 299, 299) in [-1, 1], channels_last."""
        resized = np.stack([resize_for_inception(image) for image in images])  # (B, 299, 299, C) in 0..255
        pixels = torch.from_numpy(resized).to(self.device)
        if pixels.shape[-1] == 1:
            pixels = pixels.expand(-1, -1, -1, 3)  # grayscale -> RGB after the resize: 3x less resizing, same result
        # (B, 299, 299, 3) -> (B, 3, 299, 299): the permuted view of NHWC memory is already channels_last.
        return (pixels.permute(0, 3, 1, 2) / 255.0 * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)

    def features(self, images_uint8_nhwc: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """uint8 (N, H, W, C) or (N, H, W) images, C in {1, 3}, any size -> float32 (N, 2048) pool3 features."""
        images = np.asarray(images_uint8_nhwc)
        if images.dtype != np.uint8:
            raise FaceganError(f"features expects uint8 images, got {images.dtype}; convert with facegan.images.to_uint8")
        if images.ndim == 3:
            images = images[..., None]  # (N, H, W) grayscale
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise FaceganError(f"features expects (N, H, W, C) images with C in {{1, 3}}, got shape {images.shape}")
        if batch_size < 1:
            raise FaceganError(f"batch_size must be at least 1, got {batch_size}")
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = self._prepare(images[start : start + batch_size])  # (B, 3, 299, 299)
                outputs.append(self.model(batch).float().cpu())  # (B, 2048)
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(outputs).numpy()
