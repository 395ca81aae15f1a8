"""Adversarial robustness of face recognisers: verification attacks on pairs, defences, adaptive evaluation.

    from facegan.robustness import attack_pairs
    record = attack_pairs("dlib", "data/lfw", "pairs.txt", "results/dlib-pgd", mode="dodging", attack="pgd", eps=[2, 4, 8])

The attack algorithms live in `facegan.attacks`; here are the pipeline (`evaluate`), the differentiable
views of recognisers (`model`) and the defences (`defences`). Names are re-exported lazily (module
`__getattr__`), so importing this package loads no torch.
"""
from __future__ import annotations

from facegan.lazy import lazy_exports


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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
