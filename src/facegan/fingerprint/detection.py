"""Detection: does an image carry the fingerprint's key? An exact binomial test on the matching bits.

Under the null hypothesis (the image was never marked with this key) each decoded bit matches the
key with probability 1/2, independently, so matches ~ Binomial(k, 1/2) and the p-value of m matches
is P[X >= m] = sum_{i >= m} C(k, i) / 2^k, computed with integers (exact, no underflow). An image is
called fingerprinted when m >= threshold, the smallest m with P[X >= m] <= fpr; the false-positive
rate this gives, P[X >= threshold], is reported too (it is at most fpr, usually below it).
The independence is an assumption about the decoder on unmarked images, and a trained decoder can
lean toward its key on them (a mean above k/2, measured: 3 of 100 never-encoded faces over a nominal
0.66 %). So `fingerprint train` also records the match counts on its never-encoded training images
(clean and under every evaluation transform, `null` in fingerprint.json), and the threshold is never
below the measured null's own: the smallest m that at most a fraction fpr of those counts reach
(measured for format 1's 48-bit benchmark codec: 2.0 % of 1,300 unmarked samples reach the binomial 33 of 48, 0.85 % reach 34;
for format 2's 32-bit one: 0.38 % reach the binomial 24 of 32, which it keeps;
the null is in-sample: it is measured on the codec's own training images as they were before encoding).
benchmarks/fingerprint.py measures the resulting false-positive rate on never-encoded faces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

from facegan.errors import FaceganError


def binomial_tail_fraction(bits: int, matches: int) -> Fraction:
    """P[X >= matches] for X ~ Binomial(bits, 1/2), exactly."""
    if matches <= 0:
        return Fraction(1)
    if matches > bits:
        return Fraction(0)
    return Fraction(sum(math.comb(bits, count) for count in range(matches, bits + 1)), 2**bits)


def p_value(bits: int, matches: int) -> float:
    """P[X >= matches] for X ~ Binomial(bits, 1/2), as the float nearest the exact value."""
    return float(binomial_tail_fraction(bits, matches))


def check_fpr(fpr: Any, bits: int | None = None) -> float:
    """A false-positive rate in (0, 1); with `bits`, one that k bits can reach (at least 2^-k)."""
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float, np.floating, np.integer)) or not math.isfinite(float(fpr)) \
            or not 0.0 < float(fpr) < 1.0:
        raise FaceganError(f"--fpr must be a number strictly between 0 and 1, e.g. 0.01, got {fpr!r:.40}")
    fpr = float(fpr)
    if bits is not None and Fraction(fpr) < Fraction(1, 2**bits):
        raise FaceganError(f"--fpr {fpr:g} is below 2^-{bits} = {2.0**-bits:.3g}, the smallest false-positive rate {bits} bits can give "
                           "(even all bits matching would not be significant); raise --fpr or use a fingerprint with more bits")
    return fpr


def calibrated_threshold(bits: int, fpr: float, null: Any) -> int | None:
    """The smallest m that at most a fraction `fpr` of the measured null match counts reach (`null["histogram"]`:
    how many never-encoded samples matched 0..k bits); None without a usable record.

    Only as fine as the samples: below 1/num_samples it cannot see the tail, and `detect` keeps the binomial
    threshold whenever that is higher."""
    if not isinstance(null, dict) or not isinstance(null.get("histogram"), list) or len(null["histogram"]) != bits + 1:
        return None
    histogram = null["histogram"]
    if not all(isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in histogram) or sum(histogram) == 0:
        return None
    bound, total, tail = Fraction(check_fpr(fpr, bits)), sum(histogram), 0
    for matches in range(bits, -1, -1):  # walk down: the first m whose tail exceeds fpr fixes the threshold at m + 1
        tail += histogram[matches]
        if Fraction(tail, total) > bound:
            return matches + 1
    return 0


def null_tails(bits: int, null: Any) -> np.ndarray | None:
    """Per match count m = 0..k, the fraction of the measured null samples that reach m; None without a usable record."""
    if calibrated_threshold(bits, 0.5, null) is None:
        return None
    histogram = np.asarray(null["histogram"], dtype=np.float64)
    return np.cumsum(histogram[::-1])[::-1] / histogram.sum()


def detection_threshold(bits: int, fpr: float) -> tuple[int, float]:
    """(threshold, exact FPR): the smallest m with P[X >= m] <= fpr, and P[X >= m] itself."""
    fpr = check_fpr(fpr, bits)
    bound = Fraction(fpr)  # the float's exact value: no rounding in the comparison
    tail = Fraction(0)
    # Walk down from all bits matching; the tail only grows as m falls.
    for matches in range(bits, -1, -1):
        larger = tail + Fraction(math.comb(bits, matches), 2**bits)
        if larger > bound:
            return matches + 1, float(tail)
        tail = larger
    return 0, 1.0  # unreachable for fpr < 1


@dataclass
class DetectionResult:
    """Per image: bit accuracy, matching bits, p-value and verdict; plus the rule that made the verdicts."""

    bit_accuracy: np.ndarray
    matches: np.ndarray
    p_values: np.ndarray
    detected: np.ndarray
    bits: int
    fpr: float
    threshold: int
    exact_fpr: float
    fingerprint_id: str = ""
    names: list[str] = field(default_factory=list)
    binomial_threshold: int | None = None  # the threshold of the binomial model alone (`threshold` may be higher: the measured null)

    def __len__(self) -> int:
        return len(self.matches)

    @property
    def detection_rate(self) -> float:
        return float(np.mean(self.detected)) if len(self) else 0.0

    @property
    def mean_bit_accuracy(self) -> float:
        return float(np.mean(self.bit_accuracy)) if len(self) else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable figures over all images."""
        return {
            "num_images": len(self),
            "num_detected": int(np.sum(self.detected)),
            "detection_rate": self.detection_rate,
            "mean_bit_accuracy": self.mean_bit_accuracy,
            "bits": self.bits,
            "fpr": self.fpr,
            "threshold": self.threshold,
            "binomial_threshold": self.binomial_threshold if self.binomial_threshold is not None else self.threshold,
            "exact_fpr": self.exact_fpr,
            "fingerprint_id": self.fingerprint_id,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-serialisable row per image."""
        names = self.names if len(self.names) == len(self) else [str(index) for index in range(len(self))]
        return [{"name": name, "bit_accuracy": float(accuracy), "matches": int(matches), "p_value": float(value), "detected": bool(verdict)}
                for name, accuracy, matches, value, verdict in zip(names, self.bit_accuracy, self.matches, self.p_values, self.detected)]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "rule": f"detected when at least {self.threshold} of {self.bits} bits match "
                f"(P[Binomial({self.bits}, 1/2) >= {self.threshold}] = {self.exact_fpr:.3g} <= fpr {self.fpr:g})",
                "images": self.rows()}


def detect(images: np.ndarray | Sequence[np.ndarray], fingerprint: Any, fpr: float = 0.01,
           names: Sequence[str] | None = None) -> DetectionResult:
    """Test each image for the fingerprint's key at false-positive rate `fpr`.

    images: uint8 (N, H, W, C), or a list of uint8 (H, W, C) arrays of possibly different sizes (each at
    least the fingerprint's resolution; larger ones are resized down). fingerprint: a Fingerprint or its folder.
    """
    from facegan.fingerprint.fingerprint import resolve_fingerprint

    fingerprint = resolve_fingerprint(fingerprint)
    binomial, _ = detection_threshold(fingerprint.bits, fpr)
    # Never below what the decoder's measured behaviour on unmarked images needs (see the module docstring).
    threshold = max(binomial, calibrated_threshold(fingerprint.bits, fpr, fingerprint.metadata.get("null")) or 0)
    # p-values and the stated rate: the larger of the binomial tail and the measured null's tail, so p <= fpr
    # exactly when an image is called fingerprinted, and the rate printed is never the kinder model's alone.
    measured = null_tails(fingerprint.bits, fingerprint.metadata.get("null"))
    exact_fpr = max(p_value(fingerprint.bits, threshold), float(measured[threshold]) if measured is not None and threshold <= fingerprint.bits else 0.0)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        decoded = fingerprint.decode_bits(images)
    else:
        pictures = list(images)
        if not pictures:
            raise FaceganError("no images given to detect")
        decoded = np.zeros((len(pictures), fingerprint.bits), dtype=np.uint8)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, picture in enumerate(pictures):
            by_shape.setdefault(np.asarray(picture).shape, []).append(index)  # one batch per image size
        for rows in by_shape.values():
            decoded[rows] = fingerprint.decode_bits(np.stack([np.asarray(pictures[row]) for row in rows]))
    matches = (decoded == fingerprint.key[None]).sum(axis=1).astype(np.int64)
    # One exact tail per possible count, looked up per image.
    tails = np.array([p_value(fingerprint.bits, count) for count in range(fingerprint.bits + 1)])
    if measured is not None:
        tails = np.maximum(tails, measured)
    names = [str(name) for name in names] if names is not None else []
    if names and len(names) != len(matches):
        raise ValueError(f"{len(names)} names for {len(matches)} images")
    return DetectionResult(
        bit_accuracy=matches / fingerprint.bits, matches=matches, p_values=tails[matches], detected=matches >= threshold,
        bits=fingerprint.bits, fpr=float(fpr), threshold=threshold, exact_fpr=exact_fpr, fingerprint_id=fingerprint.id, names=names,
        binomial_threshold=binomial,
    )
