"""Feature extractors: the protocol every metric's input space follows, and a registry by name.

A metric never knows which network made its features; it receives float32 (N, D) arrays. Extractors
are looked up by a short name ("face", "inception") so a CLI flag, a config value or a test can pick
one, and a test can register a tiny random extractor in one line (each name once: a duplicate is refused):

    register_extractor("tiny", lambda **options: TinyExtractor())
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, runtime_checkable

import numpy as np

from facegan.errors import FaceganError
from facegan.registry import Registry


@runtime_checkable
class FeatureExtractor(Protocol):
    """uint8 NHWC images -> float32 (N, dim) features, identified by (name, version).

    `name` and `version` key the real-feature cache: bump `version` whenever the same images would
    give different features (new weights, new resize), so stale caches are never reused.
    An extractor loaded from a weights file may also expose `weights_sha256: str | None`; the cache
    key includes it, so a different file never reuses features of another.
    """

    name: str
    version: str
    dim: int

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, dim)."""
        ...


ExtractorFactory = Callable[..., FeatureExtractor]


class _Entry:
    """A registered factory and the one-line input convention shown in a result's protocol."""

    def __init__(self, factory: ExtractorFactory, input_convention: str) -> None:
        self.factory = factory
        self.input_convention = input_convention


# Replacing a name silently would let a plug-in change what "face" means under the same cache keys.
_REGISTRY: Registry[_Entry] = Registry("feature extractor", unknown="unknown features '{name}'; choose one of: {known}")


def register_extractor(name: str, factory: ExtractorFactory, input_convention: str = "") -> ExtractorFactory:
    """Make `get_extractor(name, **options)` call `factory(**options)`; a name already registered is refused.

    `factory` must accept (and may ignore) any keyword options, because one option set (e.g.
    `inception_weights`) is passed to whichever extractor the user picked. `input_convention`
    says how images are resized/normalised before the network, for the result's protocol.
    Returns `factory` unchanged.
    """
    _REGISTRY.add(name, _Entry(factory, input_convention))
    return factory


def unregister_extractor(name: str) -> None:
    """Remove a registered extractor (tests use this to clean up); unknown names are ignored."""
    _REGISTRY.remove(name)


def available_extractors() -> list[str]:
    """Registered extractor names, sorted."""
    return sorted(_REGISTRY.names())


def check_extractor_name(name: str) -> None:
    """Raise FaceganError (one line, listing the choices) if `name` is not registered."""
    _REGISTRY.check(name)


def input_convention(name: str) -> str:
    """How the named extractor resizes/normalises its input (for protocols); '' if not stated."""
    return _REGISTRY.get(name).input_convention


def get_extractor(name: str, **options: Any) -> FeatureExtractor:
    """Build the extractor registered as `name`; unknown names are a one-line FaceganError."""
    extractor = _REGISTRY.get(name).factory(**options)
    for attribute in ("name", "version", "dim", "features"):
        if not hasattr(extractor, attribute):
            raise TypeError(f"extractor '{name}' has no '{attribute}'; it must follow metrics.features.FeatureExtractor")
    return extractor


def check_device(device: Any) -> str:
    """A --device value that torch can use here ('cpu', 'cuda', 'cuda:1', ...), or a one-line FaceganError."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise FaceganError(f"unknown --device {device!r}; use cpu or cuda (cuda:N for the N-th GPU)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise FaceganError(f"--device {device} was asked for, but no CUDA device is available here; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise FaceganError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type != "cpu":
        raise FaceganError(f"--device {device} is not supported here; use cpu or cuda")
    return str(device)


def extractor_identity(extractor: FeatureExtractor) -> dict[str, Any]:
    """What identifies an extractor's output space: name, version, dim, and its weights hash if it has one."""
    identity: dict[str, Any] = {"name": str(extractor.name), "version": str(extractor.version), "dim": int(extractor.dim)}
    weights_sha256 = getattr(extractor, "weights_sha256", None)
    if weights_sha256:
        identity["weights_sha256"] = str(weights_sha256)
    return identity


def checked_features(extractor: FeatureExtractor, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Run the extractor on one uint8 (B, H, W, C) chunk and check what comes back: float32 (B, dim)."""
    features = np.asarray(extractor.features(images, batch_size=batch_size))
    expected = (len(images), int(extractor.dim))
    if features.shape != expected:
        raise RuntimeError(f"extractor '{extractor.name}' returned shape {features.shape} for {len(images)} images, expected {expected}")
    if not np.all(np.isfinite(features)):
        raise RuntimeError(f"extractor '{extractor.name}' returned non-finite features")
    return features.astype(np.float32, copy=False)


def extract_features(
    extractor: FeatureExtractor,
    batches: Iterable[np.ndarray],
    batch_size: int = 64,
    total: int | None = None,
    progress: bool = False,
    description: str = "features",
) -> np.ndarray:
    """Features of a stream of uint8 NHWC chunks, concatenated: float32 (N, dim). Shows tqdm if `progress`."""
    outputs: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=description, unit="img", dynamic_ncols=True, leave=False)
    try:
        for images in batches:
            outputs.append(checked_features(extractor, images, batch_size))  # (B, D)
            if bar is not None:
                bar.update(len(images))
    finally:
        if bar is not None:
            bar.close()
    if not outputs:
        return np.zeros((0, int(extractor.dim)), dtype=np.float32)
    return np.concatenate(outputs)


class RecogniserFeatures:
    """A face recogniser (`faces.recognisers`) as a feature extractor: its identity descriptors are the features.

    `name` and `version` are the feature space's, given explicitly: they key the real-feature cache,
    so renaming a recogniser must not silently invalidate (or alias) cached features.
    """

    def __init__(self, recogniser: Any, name: str, version: str) -> None:
        self.recogniser = recogniser
        self.name = name
        self.version = version
        self.dim = int(recogniser.dim)

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, S, S, C) face chips -> float32 (N, dim) descriptors."""
        return self.recogniser.embed(images, batch_size=batch_size)


# ---- the built-in extractors, imported only when asked for (each loads a network) ---------------
FACE_FEATURES_NAME = "dlib-resnet-face"
"""The "face" feature space: dlib-resnet descriptors (the name every cached real feature set carries)."""


def _face_extractor(**options: Any) -> FeatureExtractor:
    from facegan.faces.recognisers import get_recogniser

    recogniser = get_recogniser("dlib-resnet", device=options.get("device") or "cpu")
    return RecogniserFeatures(recogniser, FACE_FEATURES_NAME, recogniser.version)


def _inception_extractor(**options: Any) -> FeatureExtractor:
    from facegan.metrics.inception import InceptionExtractor

    return InceptionExtractor(weights_path=options.get("inception_weights"), device=options.get("device") or "cpu")


register_extractor(
    "face",
    _face_extractor,
    "dlib-resnet-face: resized to a 150x150 chip (bilinear, antialiased, float), grayscale replicated to RGB, (x - mean) / 256",
)
register_extractor(
    "inception",
    _inception_extractor,
    "inception-v3-fid: PIL bicubic to 299x299 (float, antialiased; clean-fid), grayscale replicated to RGB, x / 255 * 2 - 1",
)
