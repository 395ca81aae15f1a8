"""Face repair: masks, degradations, OpenCV baselines, a masked-completion network, per-band evaluation.

    from facegan.repair import load_repairer, make_masks
    repairer = load_repairer("runs/repair32")
    masks = make_masks(len(faces), 32, "eyes", 0.2, seed=0)
    repaired = repairer.repair(faces, masks)           # known pixels exactly as given

Names are re-exported lazily (module `__getattr__`), so importing this package loads no torch.
"""
from __future__ import annotations

from facegan.lazy import lazy_exports


_EXPORTS = {
    "MASK_KINDS": "masks", "BANDS": "masks", "make_masks": "masks", "training_masks": "masks",
    "DEGRADATIONS": "degrade", "random_degradation": "degrade",  # not `degrade` itself: that name is the submodule
    "INPAINTERS": "baselines", "RESTORERS": "baselines", "inpaint": "baselines",
    "evaluate_inpainting": "evaluate", "evaluate_restoration": "evaluate", "repair_strip": "evaluate",
    "RepairConfig": "config", "train_repair": "training",
    "Repairer": "export", "load_repairer": "export", "is_repair_export": "export", "evaluate_repairer": "export",
    "repair_images": "export", "REPAIR_METHODS": "export",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
