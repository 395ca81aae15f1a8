"""Quality metrics: images -> features (registered extractors) -> statistics -> FD, KID, PRDC, face rate.

    from facegan.metrics import evaluate
    result = evaluate("runs/lfw32", "data/lfw32", num=2000, features="face")
    print(result.format_table()); result.save("runs/lfw32/metrics.json")

Names are imported on first use, so `import facegan.metrics` loads neither torch nor dlib.
"""
from __future__ import annotations

from facegan.lazy import lazy_exports


# public name -> module that defines it. No module shares a name with a function it exports
# (evaluation.py, not evaluate.py): importing a submodule sets it as a package attribute, which would
# silently replace the lazily exported function of the same name.
_EXPORTS = {
    "evaluate": "facegan.metrics.evaluation",
    "EvalResult": "facegan.metrics.evaluation",
    "compute_fd_kid": "facegan.metrics.evaluation",
    "default_metrics_path": "facegan.metrics.evaluation",
    "METRIC_NAMES": "facegan.metrics.evaluation",
    "frechet_distance": "facegan.metrics.frechet",
    "frechet_distance_from_features": "facegan.metrics.frechet",
    "feature_statistics": "facegan.metrics.frechet",
    "kernel_inception_distance": "facegan.metrics.kid",
    "precision_recall_density_coverage": "facegan.metrics.prdc",
    "face_rate": "facegan.faces.detection",
    "FeatureExtractor": "facegan.metrics.features",
    "register_extractor": "facegan.metrics.features",
    "unregister_extractor": "facegan.metrics.features",
    "get_extractor": "facegan.metrics.features",
    "available_extractors": "facegan.metrics.features",
    "compute_real_features": "facegan.metrics.cache",
    "RealFeatures": "facegan.metrics.cache",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
