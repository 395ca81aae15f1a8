"""Face data: reading sources, alignment, the prepared FaceDataset, splits and built-in data."""
from facegan.data.dataset import FaceDataset, compute_content_hash

__all__ = ["FaceDataset", "compute_content_hash", "prepare"]


def prepare(*args, **kwargs):
    """Prepare a face dataset (see facegan.data.prepare.prepare_dataset)."""
    from facegan.data.prepare import prepare_dataset

    return prepare_dataset(*args, **kwargs)
