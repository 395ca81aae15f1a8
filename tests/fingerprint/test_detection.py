"""The binomial test: exact p-values, the threshold's false-positive rate, option checks, keys."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from facegan.errors import FaceganError
from facegan.fingerprint.detection import binomial_tail_fraction, check_fpr, detection_threshold, p_value
from facegan.fingerprint.fingerprint import key_from_seed, key_to_hex, parse_key


@pytest.mark.parametrize("bits", [1, 8, 16, 48, 64, 256])
def test_p_value_matches_scipy(bits):
    for matches in range(bits + 1):
        expected = binom.sf(matches - 1, bits, 0.5)  # P[X >= m] = P[X > m - 1]
        assert p_value(bits, matches) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert p_value(bits, 0) == 1.0
    assert p_value(bits, bits) == 2.0**-bits  # exact, no underflow even at 256 bits
    assert p_value(bits, bits + 1) == 0.0


def test_p_value_is_exact_in_integers():
    assert binomial_tail_fraction(4, 3) == Fraction(5, 16)
    assert binomial_tail_fraction(48, 33) == Fraction(sum(math.comb(48, i) for i in range(33, 49)), 2**48)


def test_threshold_at_48_bits():
    threshold, exact = detection_threshold(48, 0.01)
    assert threshold == 33
    assert exact == pytest.approx(binom.sf(32, 48, 0.5), rel=1e-12)
    assert exact <= 0.01 < binom.sf(31, 48, 0.5)


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 256), fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_threshold_gives_at_most_the_stated_fpr_and_is_the_smallest(bits, fraction):
    # fpr spread log-uniformly between 2^-bits (the smallest reachable) and 1
    fpr = min(max(2.0 ** (-bits * (1.0 - fraction)), 2.0**-bits), 0.999999)
    threshold, exact = detection_threshold(bits, fpr)
    assert 0 <= threshold <= bits
    assert exact == float(binomial_tail_fraction(bits, threshold))  # the float nearest the exact tail
    assert binomial_tail_fraction(bits, threshold) <= Fraction(fpr)
    assert binomial_tail_fraction(bits, threshold - 1) > Fraction(fpr)  # one match fewer would exceed it


@pytest.mark.parametrize("fpr", [float("nan"), float("inf"), -0.1, 0.0, 1.0, 1.5, "0.01", True, None])
def test_bad_fpr_is_refused(fpr):
    with pytest.raises(FaceganError, match="--fpr"):
        check_fpr(fpr)


def test_fpr_below_what_the_bits_can_reach_is_refused():
    assert check_fpr(2.0**-16, 16) == 2.0**-16
    with pytest.raises(FaceganError, match="below 2\\^-16"):
        check_fpr(1e-6, 16)


def test_keys_round_trip_and_wrong_lengths_are_refused():
    key = key_from_seed(48, 7)
    assert key.dtype == np.uint8 and key.shape == (48,) and set(np.unique(key)) <= {0, 1}
    assert np.array_equal(key, key_from_seed(48, 7)) and not np.array_equal(key, key_from_seed(48, 8))
    assert np.array_equal(parse_key(key_to_hex(key), 48), key)
    assert key_to_hex(parse_key("0badc0de", 32)) == "0badc0de"
    assert parse_key("5", 3).tolist() == [1, 0, 1]
    with pytest.raises(FaceganError, match="hex digits"):
        parse_key("abc", 16)
    with pytest.raises(FaceganError, match="hexadecimal"):
        parse_key("zz", 8)
    with pytest.raises(FaceganError, match="more than 3 bits"):
        parse_key("9", 3)


def test_the_measured_null_raises_the_threshold_only_when_the_decoder_leans():
    """A decoder that matches its key on unmarked images more often than chance would flag them above the stated rate:
    the threshold is then the measured null's (the smallest m at most fpr of the samples reach), never below the binomial."""
    from scipy.stats import binom as scipy_binom

    from facegan.fingerprint.detection import calibrated_threshold

    assert calibrated_threshold(48, 0.01, None) is None and calibrated_threshold(48, 0.01, {"histogram": [1, 2]}) is None
    fair = [int(round(scipy_binom.pmf(m, 48, 0.5) * 1e6)) for m in range(49)]  # a huge, exactly binomial null
    assert calibrated_threshold(48, 0.01, {"histogram": fair}) == detection_threshold(48, 0.01)[0] == 33
    leaning = [int(round(scipy_binom.pmf(m, 48, 0.55) * 1e6)) for m in range(49)]  # each bit matches with 0.55
    expected = next(m for m in range(49) if sum(leaning[m:]) / sum(leaning) <= 0.01)
    assert calibrated_threshold(48, 0.01, {"histogram": leaning}) == expected > 33
    everything = [0] * 48 + [10]  # every unmarked sample matched all bits: nothing can be called marked
    assert calibrated_threshold(48, 0.01, {"histogram": everything}) == 49


def test_detect_uses_the_fingerprints_null_and_says_so(tiny_fingerprint, faces16_images):
    from facegan.fingerprint.detection import detect

    null = tiny_fingerprint.metadata["null"]
    assert null["num_images"] == 100 and null["num_samples"] == 100 * len(null["transforms"]) == sum(null["histogram"])
    assert abs(null["mean_matches"] - tiny_fingerprint.bits / 2) < 3  # an unmarked face matches about half the bits
    encoded = tiny_fingerprint.encode(faces16_images[:8])
    plain = detect(encoded, tiny_fingerprint)
    leaning = type(tiny_fingerprint).__new__(type(tiny_fingerprint))
    leaning.__dict__.update(tiny_fingerprint.__dict__)
    leaning.metadata = {**tiny_fingerprint.metadata, "null": {"histogram": [0] * 15 + [98, 2]}}  # 16 bits: 2 % of unmarked samples match all 16
    strict = detect(encoded, leaning)
    assert strict.threshold == 17 and strict.summary()["binomial_threshold"] == plain.binomial_threshold == 14
    assert not strict.detected.any()  # 16 bits cannot reach 17
    # The stated rate and the p-values are never the binomial's alone when the measured null is heavier.
    assert strict.exact_fpr == 0.0 and strict.p_values.min() >= 0.02 - 1e-12  # 2 % of the null reach even 16
    assert np.array_equal(plain.p_values <= plain.fpr, plain.detected)
    marked = detect(tiny_fingerprint.encode(faces16_images), tiny_fingerprint)
    assert np.array_equal(marked.p_values <= marked.fpr, marked.detected) and marked.detected.mean() > 0.5
