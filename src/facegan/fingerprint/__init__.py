"""Learned image fingerprints (Yu et al., ICCV 2021): a key written into training images, read back from a GAN's.

    train_fingerprint(dataset, out)      -> Fingerprint   codec trained on a dataset, saved with one fixed key
    load_fingerprint(path)               -> Fingerprint   .encode(uint8 NHWC), .decode_bits(uint8 NHWC)
    fingerprint_dataset(dataset, fp, out) -> FaceDataset  the dataset with every image encoded
    detect(images, fp, fpr=0.01)         -> DetectionResult  exact binomial test per image
"""
from __future__ import annotations

# Key lengths a codec may have (here, not in codec.py, so `facegan --help` can name them without importing torch):
# beyond 256 bits a 32 px image has no room, and 2**-k p-values lose meaning.
MIN_BITS, MAX_BITS = 1, 256

_EXPORTS = {
    "FingerprintConfig": "facegan.fingerprint.codec",
    "Fingerprint": "facegan.fingerprint.fingerprint",
    "load_fingerprint": "facegan.fingerprint.fingerprint",
    "fingerprint_dataset": "facegan.fingerprint.fingerprint",
    "train_fingerprint": "facegan.fingerprint.training",
    "detect": "facegan.fingerprint.detection",
    "DetectionResult": "facegan.fingerprint.detection",
    "detection_threshold": "facegan.fingerprint.detection",
    "EVAL_TRANSFORMS": "facegan.fingerprint.distortions",
    "apply_transform": "facegan.fingerprint.distortions",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Lazy, so `import facegan.fingerprint` does not pull in torch until a function is used.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'facegan.fingerprint' has no attribute {name!r}")
