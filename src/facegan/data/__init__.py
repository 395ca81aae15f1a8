"""Face data: reading sources, alignment, the prepared FaceDataset, splits and built-in data."""
from facegan.data.dataset import FaceDataset, compute_content_hash

__all__ = ["FaceDataset", "compute_content_hash", "prepare", "prepare_dataset", "PrepareConfig"]


def prepare(*args, **kwargs) -> FaceDataset:
    """Prepare a face dataset: `prepare(SOURCE, OUT, size=64, align="center", ...)`.

    See `facegan.data.pipeline.prepare_dataset` for every option.
    """
    from facegan.data.pipeline import prepare_dataset

    return prepare_dataset(*args, **kwargs)


def __getattr__(name: str):
    # Lazy, so `import facegan.data` does not pull in Pillow, dlib or the pool machinery.
    if name in ("prepare_dataset", "PrepareConfig"):
        import importlib

        return getattr(importlib.import_module("facegan.data.pipeline"), name)
    raise AttributeError(f"module 'facegan.data' has no attribute {name!r}")
