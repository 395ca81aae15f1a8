"""The differentiable adapters: `embed_pixels` on float pixels is the recogniser's own `embed` on the same uint8 images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facegan.data.dataset import FaceDataset
from facegan.errors import FaceganError
from facegan.faces.match import pair_distances
from facegan.robustness.model import DifferentiableRecogniser, differentiable, torch_scores


@pytest.fixture(scope="module")
def faces(identity_dataset) -> np.ndarray:
    return np.ascontiguousarray(FaceDataset.load(identity_dataset).images[:8])  # (8, 32, 32, 1) uint8


def _variants(faces: np.ndarray) -> dict[str, np.ndarray]:
    """The dataset's grey chips, an RGB version (channel conversion) and a 48 px version (resize)."""
    from PIL import Image

    rgb = np.repeat(faces, 3, axis=3)
    rgb[..., 0] = np.clip(rgb[..., 0].astype(np.int64) + 25, 0, 255)  # not grey: the luma weights matter
    larger = np.stack([np.asarray(Image.fromarray(face[..., 0]).resize((48, 48), Image.BILINEAR)) for face in faces])[..., None]
    return {"grey": faces, "rgb": rgb, "48px": larger}


def _pixels(images: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(images)).permute(0, 3, 1, 2).float()


def test_a_trained_recogniser_embeds_float_pixels_exactly_as_its_embed(tiny_recogniser_run, faces):
    model = differentiable(str(tiny_recogniser_run))
    assert model.differentiable and model.metric == "cosine"
    for name, images in _variants(faces).items():
        np.testing.assert_array_equal(model.embed_pixels(_pixels(images)).numpy(), model.recogniser.embed(images), err_msg=name)


def test_the_pixel_recogniser_embeds_float_pixels_as_its_embed(faces):
    model = differentiable("pixel")
    for name, images in _variants(faces).items():
        np.testing.assert_allclose(model.embed_pixels(_pixels(images)).numpy(), model.recogniser.embed(images), atol=1e-6, err_msg=name)


def test_gradients_reach_the_pixels(tiny_recogniser_run, faces):
    for spec in (str(tiny_recogniser_run), "pixel"):
        model = differentiable(spec)
        x = _pixels(faces).requires_grad_(True)
        descriptors = model.embed_pixels(x)
        model.score(descriptors[:4], descriptors[4:].detach()).sum().backward()
        assert x.grad is not None and x.grad[:4].abs().sum() > 0 and x.grad[4:].abs().sum() == 0, spec


def test_lbph_is_score_only_and_reads_the_rounded_bytes(faces):
    model = differentiable("lbph")
    assert not model.differentiable and model.metric == "chi-square"
    x = _pixels(faces) + 0.3  # rounds back to the same bytes
    descriptors = model.embed_pixels(x)
    assert not descriptors.requires_grad
    np.testing.assert_array_equal(descriptors.numpy(), model.recogniser.embed(faces))


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "chi-square"])
def test_torch_scores_are_minus_the_match_rule_distance(metric):
    generator = np.random.default_rng(0)
    first, second = generator.random((6, 10)), generator.random((6, 10))
    second[0] = first[0]  # distance 0
    scores = torch_scores(torch.from_numpy(first), torch.from_numpy(second), metric).numpy()
    np.testing.assert_allclose(scores, -pair_distances(first, second, metric), atol=1e-9)


def test_an_adapter_is_returned_as_is_and_an_unknown_recogniser_is_one_line():
    model = differentiable("pixel")
    assert differentiable(model) is model and isinstance(model, DifferentiableRecogniser)

    class Other:
        name = "other"

    with pytest.raises(FaceganError, match="no differentiable adapter"):
        differentiable(Other())
    with pytest.raises(FaceganError, match="unknown recogniser"):
        differentiable("no-such-recogniser")


def test_the_domain_refuses_float_images():
    with pytest.raises(FaceganError, match="must be uint8"):
        differentiable("pixel").domain(np.zeros((1, 8, 8, 1), np.float32))


# ---- dlib's port ------------------------------------------------------------------------------------
def test_dlib_is_attacked_on_150px_rgb_chips_made_once_in_uint8(faces):
    pytest.importorskip("dlib")
    model = differentiable("dlib")
    chips = model.domain(faces[:2])
    assert chips.dtype == np.uint8 and chips.shape == (2, 150, 150, 3)
    assert np.array_equal(model.domain(chips), chips)  # already a chip: untouched
    x = _pixels(chips).requires_grad_(True)
    descriptors = model.embed_pixels(x)
    # The same network and input layer as the port's embed: equal up to float summation order.
    np.testing.assert_allclose(descriptors.detach().numpy(), model.embed(chips), atol=1e-5)
    model.score(descriptors[:1], descriptors[1:].detach()).sum().backward()
    assert x.grad[0].abs().sum() > 0
    with pytest.raises(FaceganError, match="150"):
        model.embed_pixels(_pixels(faces[:1]))
