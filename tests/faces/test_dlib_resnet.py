"""The PyTorch port of dlib's face recogniser must give dlib's own descriptors.

Both networks get byte-identical 150x150 uint8 chips, so only the networks are compared.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

dlib = pytest.importorskip("dlib")
skimage_data = pytest.importorskip("skimage.data")

from PIL import Image  # noqa: E402

from facegan.faces.align import dlib_model_path  # noqa: E402
from facegan.errors import FaceganError  # noqa: E402
from facegan.faces.dlib_format import (  # noqa: E402
    DlibFormatError,
    DlibReader,
    parse_dlib_network,
    read_face_recognizer_dat,
)
from facegan.faces.dlib_resnet import (  # noqa: E402
    MATCH_THRESHOLD,
    DlibResNetRecogniser,
)

NUM_PARITY_FACES = 20  # of the 100 LFW faces; all 100 are measured by benchmarks/feature_throughput.py


def _cosine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return (first * second).sum(1) / (np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1))


def _dlib_descriptors(recognizer, chips: np.ndarray) -> np.ndarray:
    # The batch overload for aligned 150x150 chips; num_jitters defaults to 0 (no jitter).
    return np.array([np.array(v) for v in recognizer.compute_face_descriptor(list(chips))], dtype=np.float32)


@pytest.fixture(scope="module")
def recognizer_path() -> str:
    return str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))


@pytest.fixture(scope="module")
def dlib_recognizer(recognizer_path):
    return dlib.face_recognition_model_v1(recognizer_path)


@pytest.fixture(scope="module")
def recogniser() -> DlibResNetRecogniser:
    return DlibResNetRecogniser()


@pytest.fixture(scope="module")
def lfw_chips() -> np.ndarray:
    """(20, 150, 150, 3) uint8: LFW faces (25x25 gray floats) upsampled once with PIL, gray -> RGB."""
    faces = (skimage_data.lfw_subset()[:NUM_PARITY_FACES] * 255).round().astype(np.uint8)
    chips = np.stack([np.asarray(Image.fromarray(face).resize((150, 150), Image.BILINEAR)) for face in faces])
    return np.ascontiguousarray(np.repeat(chips[..., None], 3, axis=3))


@pytest.fixture(scope="module")
def astronaut_chip() -> np.ndarray:
    """(150, 150, 3) uint8 chip aligned by dlib itself: detector + 5-point landmarks + get_face_chip."""
    image = skimage_data.astronaut()
    detections, scores, _ = dlib.get_frontal_face_detector().run(image, 1)
    face = detections[int(np.argmax(scores))]
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
    return dlib.get_face_chip(image, predictor(image, face), size=150, padding=0.25)


# --- the file format ------------------------------------------------------------------------


def test_reader_decodes_dlib_primitives():
    # Bytes as dlib's serialize() writes them: 0, -28, 0xa3d70a, the float 0.04f, '1', "ab".
    reader = DlibReader(bytes.fromhex("0100" "811c" "030ad7a3" "030ad7a3811c") + b"1" + bytes.fromhex("0102") + b"ab")
    assert reader.read_int() == 0
    assert reader.read_int() == -28
    assert reader.read_int() == 0xA3D70A
    assert reader.read_float() == pytest.approx(0.04, rel=1e-7)
    assert reader.read_bool() is True
    assert reader.read_string() == "ab"
    assert reader.offset == len(reader.payload)


def test_parse_reads_every_byte_of_the_model(recognizer_path):
    arrays, network = read_face_recognizer_dat(recognizer_path)
    assert network.num_bytes == len(open(recognizer_path, "rb").read())
    assert network.loss["distance_threshold"] == pytest.approx(MATCH_THRESHOLD)
    assert sum(layer.kind == "con" for layer in network.layers) == 29
    np.testing.assert_allclose(arrays["input.mean_rgb"], [122.782, 117.001, 104.298], atol=1e-4)
    assert arrays["stem.conv.weight"].shape == (32, 3, 7, 7)
    assert arrays["blocks.13.conv2.weight"].shape == (256, 256, 3, 3)
    assert arrays["fc.weight"].shape == (128, 256)
    assert all(array.dtype == np.float32 and np.isfinite(array).all() for array in arrays.values())


def test_parse_rejects_truncated_or_padded_files(recognizer_path):
    payload = open(recognizer_path, "rb").read()
    with pytest.raises(DlibFormatError):
        parse_dlib_network(payload[:-1])
    with pytest.raises(DlibFormatError):
        parse_dlib_network(payload + b"\x00")


# --- parity with dlib -----------------------------------------------------------------------


def test_descriptors_match_dlib_on_real_faces(recogniser, dlib_recognizer, lfw_chips, astronaut_chip):
    chips = np.concatenate([lfw_chips, astronaut_chip[None]])
    ours = recogniser.embed(chips)
    reference = _dlib_descriptors(dlib_recognizer, chips)
    assert ours.shape == (len(chips), 128) and ours.dtype == np.float32
    assert _cosine(ours, reference).min() >= 0.999
    # Stronger than the cosine: distances to dlib are negligible next to the 0.6 match threshold,
    # and the norms match too (dlib's descriptors are not unit vectors; neither are ours).
    assert np.linalg.norm(ours - reference, axis=1).max() < 1e-3


def test_batch_size_does_not_change_descriptors(recogniser, lfw_chips):
    chips = lfw_chips[:7]
    np.testing.assert_allclose(recogniser.embed(chips, batch_size=3), recogniser.embed(chips), atol=1e-5)


def test_grayscale_chips_equal_their_rgb_copies(recogniser, lfw_chips):
    gray = lfw_chips[:4, :, :, :1]
    np.testing.assert_allclose(recogniser.embed(gray), recogniser.embed(lfw_chips[:4]), atol=1e-6)


def test_other_sizes_are_resized_to_150(recogniser, astronaut_chip):
    large = np.asarray(Image.fromarray(astronaut_chip).resize((300, 300), Image.BICUBIC))[None]
    distance = np.linalg.norm(recogniser.embed(large) - recogniser.embed(astronaut_chip[None]))
    assert distance < 0.1 * MATCH_THRESHOLD


def test_bad_inputs_raise_one_line_errors(recogniser):
    with pytest.raises(FaceganError, match="square"):
        recogniser.embed(np.zeros((1, 150, 120, 3), dtype=np.uint8))
    with pytest.raises(FaceganError, match="uint8"):
        recogniser.embed(np.zeros((1, 150, 150, 3), dtype=np.float32))


# --- the differentiable path ------------------------------------------------------------------


def test_embed_tensor_matches_embed_and_passes_gradients(recogniser, lfw_chips, astronaut_chip):
    chips = np.concatenate([lfw_chips[:3], astronaut_chip[None]])
    images = torch.from_numpy(chips).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (4, 3, 150, 150) in [-1, 1]
    images.requires_grad_(True)
    embedded = recogniser.embed_tensor(images)  # (4, 128)
    np.testing.assert_allclose(embedded.detach().numpy(), recogniser.embed(chips), atol=1e-4)

    # An identity loss: pull face 0 towards face 3. Its gradient must reach face 0's pixels only.
    loss = (embedded[0] - embedded[3].detach()).pow(2).sum()
    loss.backward()
    assert images.grad is not None
    assert images.grad[0].abs().sum() > 0
    assert images.grad[1:].abs().sum() == 0
    assert all(parameter.grad is None for parameter in recogniser.model.parameters())
