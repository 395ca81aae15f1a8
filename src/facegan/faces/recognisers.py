"""Face recognisers: the protocol every recogniser follows, and a registry by name.

A recogniser turns aligned face chips into identity descriptors and says, through its match rule,
when two descriptors are the same person:

    recogniser = get_recogniser("dlib-resnet")          # dlib's ResNet, ported to PyTorch ("dlib" for short)
    descriptors = recogniser.embed(chips)               # uint8 (N, S, S, C) -> float32 (N, 128)
    recogniser.same_person(descriptors[:1], descriptors[1:2])

Metrics use a recogniser as a feature extractor (`metrics.features`, "face"), the privacy audit as its
identity check. Each name is registered once; a second registration under a taken name is refused.
Built in: "dlib-resnet" (alias "dlib"), "lbph" (OpenCV's LBPH) and "pixel" (standardised pixels).
Importing this module loads neither torch nor dlib: a factory imports its network when called.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from facegan.registry import Registry
from facegan.faces.match import MatchRule

__all__ = [
    "MatchRuleRecogniser",
    "Recogniser",
    "RecogniserFactory",
    "available_recognisers",
    "get_recogniser",
    "register_recogniser",
    "unregister_recogniser",
]


@runtime_checkable
class Recogniser(Protocol):
    """Aligned uint8 NHWC face chips -> float32 (N, dim) identity descriptors, and when two are one person.

    `name` and `version` identify the descriptor space: bump `version` whenever the same chips would
    give different descriptors. `match` is the rule (distance and threshold) the recogniser was
    calibrated for; `threshold` is `match.threshold`.
    """

    name: str
    version: str
    dim: int
    match: MatchRule

    @property
    def threshold(self) -> float: ...

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N, H, W, C) aligned chips -> float32 (N, dim)."""
        ...

    def distance(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Row-by-row distances (N,) of two (N, dim) descriptor sets; lower = more alike."""
        ...

    def same_person(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Bool (N,): whether each descriptor pair is one person under `match`."""
        ...


class MatchRuleRecogniser:
    """What every recogniser derives from its `match` rule: `threshold`, `distance`, `same_person`.

    Subclasses set `name`, `version`, `dim` and `match` and write `embed`; the protocol does not
    require this base, it only saves each recogniser the same three methods.
    """

    match: MatchRule

    @property
    def threshold(self) -> float:
        return self.match.threshold

    def distance(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Row-by-row distances (N,) in the rule's metric; lower = more alike."""
        return self.match.distance(first, second)

    def same_person(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self.match.same_person(first, second)


RecogniserFactory = Callable[..., Recogniser]
_REGISTRY: Registry[RecogniserFactory] = Registry("face recogniser", unknown="unknown face recogniser '{name}'; choose one of: {known}")


def register_recogniser(name: str, factory: RecogniserFactory) -> RecogniserFactory:
    """Make `get_recogniser(name, **options)` call `factory(**options)`; a name already registered is refused.

    `factory` must accept (and may ignore) keyword options such as `device`. Returns it unchanged.
    """
    return _REGISTRY.add(name, factory)


def unregister_recogniser(name: str) -> None:
    """Remove a registered recogniser (tests use this to clean up); unknown names are ignored."""
    _REGISTRY.remove(name)


def available_recognisers() -> list[str]:
    """Registered recogniser names, sorted."""
    return sorted(_REGISTRY.names())


def get_recogniser(name: str, **options: Any) -> Recogniser:
    """Build the recogniser registered as `name`; unknown names are a one-line FaceganError."""
    recogniser = _REGISTRY.get(name)(**options)
    for attribute in ("name", "version", "dim", "match", "embed", "distance", "same_person"):
        if not hasattr(recogniser, attribute):
            raise TypeError(f"recogniser '{name}' has no '{attribute}'; it must follow faces.recognisers.Recogniser")
    return recogniser


# ---- the built-in recognisers, imported only when asked for (each loads a network) ---------------
def _dlib_resnet(**options: Any) -> Recogniser:
    from facegan.faces.dlib_resnet import DlibResNetRecogniser

    return DlibResNetRecogniser(
        device=options.get("device") or "cpu",
        channels_last=options.get("channels_last", True),
        bfloat16=options.get("bfloat16", False),
    )


def _lbph(**options: Any) -> Recogniser:
    from facegan.faces.lbph import LBPHRecogniser

    return LBPHRecogniser()


def _pixel(**options: Any) -> Recogniser:
    from facegan.faces.pixel import PixelRecogniser

    return PixelRecogniser()


register_recogniser("dlib-resnet", _dlib_resnet)
register_recogniser("dlib", _dlib_resnet)  # the short name the CLI documents; the same network and descriptors
register_recogniser("lbph", _lbph)  # OpenCV contrib's LBPH: classical, weight-free
register_recogniser("pixel", _pixel)  # standardised grey pixels: the floor
