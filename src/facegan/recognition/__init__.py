"""Face recognition with facegan: the verification protocol, recognisers by name or export, evaluation.

    from facegan.recognition import resolve_recogniser, verify
    result = verify(resolve_recogniser("lbph"), "data/lfw", "pairs.txt", out_dir="results/lbph")

Names are re-exported lazily (module `__getattr__`), so importing this package loads no torch: each
name imports its module on first use.
"""
from __future__ import annotations

from facegan.lazy import lazy_exports


_EXPORTS = {
    "FARS": "protocol",
    "ProtocolResult": "protocol",
    "best_threshold": "protocol",
    "evaluate_protocol": "protocol",
    "roc_figure_png": "protocol",
    "resolve_recogniser": "resolve",
    "load_verification": "verification",
    "verify": "verification",
    # written by the recogniser-training part
    "RecogConfig": "config",
    "train_recogniser": "training",
    "save_recogniser_export": "export",
    "load_recogniser_export": "export",
    "is_recogniser_export": "export",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
