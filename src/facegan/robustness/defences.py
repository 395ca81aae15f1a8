"""Input-transformation defences of a face recogniser and their adaptive (BPDA / EOT) evaluation.

A defence maps the uint8 image a client sends to the image the recogniser reads: JPEG re-encoding, a median
blur, or purification by a generator (Defense-GAN, Samangouei et al. 2018: project the input onto the
generator's face manifold by GAN inversion and verify the reconstruction). None of them is differentiable
in a useful way (JPEG and the median quantise; the projection is an optimisation), so an attacker who
differentiates the undefended recogniser only (`adaptive=False`) is fooled into thinking the defence works.
Athalye et al. 2018 showed that BPDA — the defence in the forward pass, the identity in the backward pass
(`bpda`) — and EOT (averaging the margin over the defence's randomness, `eot`) break such defences; every
figure facegan reports for a defence therefore names whether the attack was adaptive.

    from facegan.robustness import DefendedRecogniser, differentiable, make_defence
    defence = make_defence("purify", generator="runs/lfw32", steps=50, seed=0)
    defended = DefendedRecogniser(differentiable("dlib"), defence, adaptive=True, eot=4)

Cost of purification (`facegan.inversion.project`, z only, no identity term): 16 x starts candidate renders, then
starts x K/4 start-phase steps when starts > 1, then K Adam steps through the generator, per image. Measured CPU
time, one thread, batch of 16, K = 50 (random-init generators: the cost depends on the architecture only):
    tiny test DCGAN 32 px grey (z 16, 32 channels)   0.25 ms per image-step + 6 ms   -> 0.018 s/image
    stable 32 px RGB (z 128, 64 channels)           4.0 ms per image-step + 27 ms   -> 0.23 s/image
    stable 64 px RGB (z 128, 64 channels)           17 ms per image-step + 120 ms   -> 0.99 s/image
An adaptive attack pays one purification of its batch per attack step per EOT draw (steps x eot calls), the
deployed check one more per scored image: PGD 20 steps, EOT 4 on 100 pairs at 32 px is ~20 x 4 x 100 x 0.23 s
= 30 CPU minutes. A non-adaptive attack pays only the deployed check. Torch's default thread count on a busy
machine can be far slower than one thread (measured 30x on 2 cores shared by 5 processes).
"""
from __future__ import annotations

import numbers
import os
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from facegan.errors import FaceganError
from facegan.robustness.model import DifferentiableRecogniser

DEFENCES = ("none", "jpeg", "blur", "purify")
DEFAULT_QUALITY = 75
MAX_QUALITY = 95  # Pillow: "values above 95 should be avoided; 100 disables portions of the JPEG compression"
DEFAULT_KERNEL = 3
MAX_KERNEL = 31
DEFAULT_PURIFY_STEPS = 50
DEFAULT_PURIFY_STARTS = 1
PURIFY_BATCH_SIZE = 64
# Measured CPU cost (module docstring): seconds per image per projection step, and per call, of the test generator and a
# stable 32 px one; kept here so the benchmark and the note quote one figure.
PURIFY_COST = {"tiny-dcgan-32-grey": {"per_image_step_s": 0.00025, "per_image_fixed_s": 0.006},
               "stable-32-rgb": {"per_image_step_s": 0.0040, "per_image_fixed_s": 0.027},
               "stable-64-rgb": {"per_image_step_s": 0.017, "per_image_fixed_s": 0.12}}
# Median blur works on chunks of images so the unfolded windows (k*k values per pixel) stay small in memory.
_BLUR_CHUNK_VALUES = 8_000_000


@runtime_checkable
class Defence(Protocol):
    """An input transformation applied before the recogniser."""

    name: str
    randomised: bool

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC -> uint8 NHWC: the defence as deployed."""

    def tensor(self, x: torch.Tensor) -> torch.Tensor:
        """float NCHW in 0..255 -> float NCHW in 0..255 equal to the deployed defence of round(x); no gradient."""


# ---- conversions --------------------------------------------------------------------------------------------
def _check_images(images: Any) -> np.ndarray:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise FaceganError(f"a defence takes uint8 images (N, H, W, C), got {getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 4 or images.shape[3] not in (1, 3) or 0 in images.shape[1:3]:
        raise FaceganError(f"a defence takes uint8 images (N, H, W, C) with 1 or 3 channels, got shape {images.shape}")
    return images


def _to_uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    """float NCHW 0..255 -> the uint8 NHWC image a client would send (round to the nearest grey level, clip)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise FaceganError(f"a defence's tensor() takes float images (N, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    return x.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _from_uint8_nhwc(images: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device=like.device, dtype=like.dtype)


class _ArrayDefence:
    """A defence written on uint8 arrays: tensor() rounds, runs the deployed path and converts back."""

    name: str
    randomised = False

    def tensor(self, x: torch.Tensor) -> torch.Tensor:
        return _from_uint8_nhwc(self(_to_uint8_nhwc(x)), x)

    def __repr__(self) -> str:
        return f"<defence {self.name}>"


# ---- JPEG -------------------------------------------------------------------------------------------------
class JpegDefence(_ArrayDefence):
    """Re-encode as JPEG at `quality` with Pillow (its default 4:2:0 chroma subsampling for colour), in memory."""

    def __init__(self, quality: int = DEFAULT_QUALITY) -> None:
        self.quality = _check_int("the JPEG quality", quality, 1, MAX_QUALITY)
        self.name = f"jpeg-q{self.quality}"
        self.settings = {"defence": "jpeg", "quality": self.quality}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import io

        from PIL import Image

        images = _check_images(images)
        out = np.empty_like(images)
        for index, image in enumerate(images):
            buffer = io.BytesIO()
            pil = Image.fromarray(image[:, :, 0], mode="L") if image.shape[2] == 1 else Image.fromarray(image)
            pil.save(buffer, format="JPEG", quality=self.quality)
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                out[index] = np.asarray(decoded.convert(pil.mode)).reshape(image.shape)
        return out


# ---- median blur ------------------------------------------------------------------------------------------
def median_blur(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Median over kernel x kernel windows with replicated borders (OpenCV's medianBlur rule), per channel."""
    pad = kernel // 2
    count, channels, height, width = x.shape
    rows = max(1, _BLUR_CHUNK_VALUES // max(1, channels * height * width * kernel * kernel))
    out = []
    for begin in range(0, count, rows):
        chunk = x[begin : begin + rows]
        padded = torch.nn.functional.pad(chunk, (pad, pad, pad, pad), mode="replicate")
        windows = padded.unfold(2, kernel, 1).unfold(3, kernel, 1)  # (n, C, H, W, k, k)
        # An odd number of values: the median is one of them, exactly (no averaging of two middles).
        out.append(windows.reshape(*windows.shape[:4], -1).median(dim=-1).values)
    return torch.cat(out)


class MedianBlurDefence(_ArrayDefence):
    """A kernel x kernel median filter per channel (equal to cv2.medianBlur on uint8, borders replicated)."""

    def __init__(self, kernel: int = DEFAULT_KERNEL) -> None:
        if isinstance(kernel, bool) or not isinstance(kernel, numbers.Integral) or not 3 <= kernel <= MAX_KERNEL or kernel % 2 == 0:
            raise FaceganError(f"the median kernel must be an odd whole number of pixels from 3 to {MAX_KERNEL} (3, 5, 7, ...), got {kernel!r:.40}")
        self.kernel = int(kernel)
        self.name = f"median-{self.kernel}"
        self.settings = {"defence": "blur", "kernel": self.kernel}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = _check_images(images)
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        return median_blur(x, self.kernel).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    def tensor(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:  # (a shape check only: this runs at every attack step, so no copy to the host)
            raise FaceganError(f"the median defence takes (N, C, H, W) images, got shape {tuple(x.shape)}")
        return median_blur(x.detach().round().clamp(0, 255), self.kernel)


# ---- purification by the generator (Defense-GAN) ----------------------------------------------------------
class _NoFaceDistance:
    """Stands in for the dlib recogniser `project` builds to report face distances, which purification never reads.

    With identity_weight 0 `project` only calls `embed` for its report; dlib's ResNet at 150 px would cost
    more than the whole projection of a small generator.
    """

    def embed(self, images: np.ndarray) -> np.ndarray:
        return np.zeros((len(images), 1), dtype=np.float32)


def _convert(images: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """uint8 NHWC -> (height, width, channels) per image, as facegan converts data (Lanczos resize, ITU-R 601 luma)."""
    from PIL import Image

    from facegan.images import PHOTO_RESAMPLE, convert_channels

    if images.shape[1:] == (height, width, channels):
        return images
    out = np.empty((len(images), height, width, channels), dtype=np.uint8)
    for index, image in enumerate(images):
        if image.shape[:2] != (height, width):
            # The whole image, aspect not kept (as facegan.images.resize_whole), so nothing is cropped away.
            pil = Image.fromarray(np.ascontiguousarray(image[:, :, 0] if image.shape[2] == 1 else image))
            image = np.asarray(pil.resize((width, height), PHOTO_RESAMPLE), dtype=np.uint8).reshape(height, width, image.shape[2])
        out[index] = convert_channels(image, channels)
    return out


class PurifyDefence(_ArrayDefence):
    """Replace each face by its projection onto the generator: G(z*) with z* = argmin ||G(z) - x|| (Defense-GAN).

    z only (no extended latent, no identity term): the output is exactly an image the generator makes, which is
    what removes an off-manifold perturbation. Randomised: every call projects from new random starts, drawn
    from this defence's own RNG (seeded), so a run is reproducible and EOT sees a fresh draw per call.
    """

    randomised = True

    def __init__(self, generator: Any, steps: int = DEFAULT_PURIFY_STEPS, starts: int = DEFAULT_PURIFY_STARTS, seed: int = 0,
                 label: str | None = None) -> None:
        self.generator = generator
        self.steps = _check_int("the purification steps", steps, 1, 100_000)
        self.starts = _check_int("the purification starts", starts, 1, 256)
        self.seed = _check_int("the defence seed", seed, 0, 2**63 - 1)
        self._rng = np.random.default_rng(self.seed)
        label = label or "generator"
        self.name = f"purify-{label}"
        self.settings = {"defence": "purify", "generator": label, "steps": self.steps, "starts": self.starts, "seed": self.seed,
                         "resolution": generator.resolution, "channels": generator.channels}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        from facegan.inversion import project

        images = _check_images(images)
        size, channels = self.generator.resolution, self.generator.channels
        call_seed = int(self._rng.integers(0, 2**63 - 1))
        targets = _convert(images, size, size, channels)
        # The projection is an optimisation with its own autograd graph: it must run even when the caller (bpda,
        # an evaluation loop) has switched gradients off.
        with torch.enable_grad():
            result = project(self.generator, targets, steps=self.steps, starts=self.starts, seed=call_seed, identity_weight=0.0,
                             extended=False, batch_size=PURIFY_BATCH_SIZE, recogniser=_NoFaceDistance())
        return _convert(np.asarray(result.images), *images.shape[1:])


# ---- BPDA and the defended recogniser ---------------------------------------------------------------------
def bpda(defence: Defence, x: torch.Tensor) -> torch.Tensor:
    """The defence's output in the forward pass, the identity's gradient in the backward pass (straight-through)."""
    with torch.no_grad():
        defended = defence.tensor(x)
    return x + (defended - x).detach()


class DefendedRecogniser(DifferentiableRecogniser):
    """A differentiable recogniser behind a defence: `embed` is the deployed pipeline (what success is judged on),
    `embed_pixels` what the attacker differentiates: through BPDA when adaptive, the bare recogniser when not.
    `eot`: how many draws of a randomised defence the attack pipeline averages the margin over (1 for a deterministic one)."""

    def __init__(self, base: DifferentiableRecogniser, defence: Defence, adaptive: bool = True, eot: int = 1) -> None:
        if not isinstance(defence, Defence):
            raise FaceganError(f"expected a defence (from make_defence), got {type(defence).__name__}")
        # Not DifferentiableRecogniser.__init__: every attribute comes from the base, which may be any adapter.
        self.base = base
        self.defence = defence
        self.adaptive = bool(adaptive)
        self.eot = _check_int("--eot", eot, 1, 10_000)
        if self.eot > 1 and (not defence.randomised or not self.adaptive):
            # A deterministic defence, or a non-adaptive attack (which never runs the defence), gives the same margin on
            # every call: averaging would only cost time, and the record says no averaging happened.
            self.eot = 1
        self.recogniser = base.recogniser
        self.metric = base.metric
        self.differentiable = base.differentiable
        self.device = getattr(base, "device", torch.device("cpu"))
        self.name = f"{base.name}+{defence.name}"

    def domain(self, images: np.ndarray) -> np.ndarray:
        return self.base.domain(images)

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return self.base.embed(self.defence(images), batch_size=batch_size)

    def embed_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.embed_pixels(bpda(self.defence, x) if self.adaptive else x)

    def score(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.base.score(first, second)

    def scores(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self.base.scores(first, second)

    def __getattr__(self, name: str) -> Any:
        # Anything else the base adapter offers stays reachable; "base" itself is never looked up on the base.
        if name == "base" or "base" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.base, name)


# ---- construction -----------------------------------------------------------------------------------------
def _check_int(what: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise FaceganError(f"{what} must be a whole number from {low} to {high:,}, got {value!r:.40}")
    return int(value)


def _load_generator(generator: Any, device: str) -> tuple[Any, str]:
    """A loaded generator and a short label for names: the run folder's name, else the export folder's."""
    if isinstance(generator, (str, os.PathLike)):
        from facegan.models.export import load_generator
        from facegan.run import Run

        located = Run.locate(generator)
        label = (located.run.path if located.run is not None else located.export_dir).resolve().name
        return load_generator(located.export_dir, device=device), label
    if not all(hasattr(generator, name) for name in ("module", "resolution", "channels", "z_dim", "device")):
        raise FaceganError(f"the purification generator must be a run or export path or a loaded generator, got {type(generator).__name__}")
    return generator, "generator"


def make_defence(name: str, *, quality: int = DEFAULT_QUALITY, kernel: int = DEFAULT_KERNEL, generator: Any = None,
                 steps: int = DEFAULT_PURIFY_STEPS, starts: int = DEFAULT_PURIFY_STARTS, seed: int = 0,
                 device: str = "cpu") -> Defence | None:
    """The defence `name` (one of DEFENCES) with its options; "none" -> None. Bad options -> one FaceganError line."""
    if name not in DEFENCES:
        raise FaceganError(f"unknown defence {name!r:.40}; choose one of {', '.join(DEFENCES)}")
    if generator is not None and name != "purify":
        raise FaceganError(f"a generator is used only by the purify defence, not {name}; drop --generator or use --defence purify")
    if name == "none":
        return None
    if name == "jpeg":
        return JpegDefence(quality)
    if name == "blur":
        return MedianBlurDefence(kernel)
    if generator is None:
        raise FaceganError("the purify defence needs a generator; pass --generator RUN (a run or export folder of `facegan train`)")
    # Options first, so a bad number is refused before a model is loaded.
    _check_int("the purification steps", steps, 1, 100_000)
    _check_int("the purification starts", starts, 1, 256)
    _check_int("the defence seed", seed, 0, 2**63 - 1)
    loaded, label = _load_generator(generator, device)
    return PurifyDefence(loaded, steps=steps, starts=starts, seed=seed, label=label)


__all__ = [
    "DEFENCES", "Defence", "DefendedRecogniser", "JpegDefence", "MedianBlurDefence", "PurifyDefence", "bpda", "make_defence",
    "median_blur",
]
