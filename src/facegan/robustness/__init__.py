"""Adversarial robustness of face recognisers: verification attacks on pairs, defences, adaptive evaluation.

    from facegan.robustness import attack_pairs
    record = attack_pairs("dlib", "data/lfw", "pairs.txt", "results/dlib-pgd", mode="dodging", attack="pgd", eps=[2, 4, 8])

The attack algorithms live in `facegan.attacks`; here are the pipeline (`evaluate`), the differentiable
views of recognisers (`model`) and the defences (`defences`). Names are re-exported lazily (module
`__getattr__`), so importing this package loads no torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ATTACK_FORMAT": "evaluate",
    "MODES": "evaluate",
    "attack_pairs": "evaluate",
    "check_attack_out": "evaluate",
    "load_attack": "evaluate",
    "DifferentiableRecogniser": "model",
    "differentiable": "model",
    # written by the defences part
    "DEFENCES": "defences",
    "DefendedRecogniser": "defences",
    "bpda": "defences",
    "make_defence": "defences",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facegan.robustness' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"facegan.robustness.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
