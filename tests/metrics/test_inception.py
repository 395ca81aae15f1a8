"""The FID Inception-v3: pytorch-fid's key names and shapes, its TF pooling quirks, loading, and the input protocol.

The real `pt_inception-2015-12-05-6726825d.pth` is not available offline, so the network runs on
seeded random weights; numeric parity with pytorch-fid needs the real file and is not tested here.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.errors import FaceganError
from facegan.metrics.inception import (
    INCEPTION_ENV,
    INCEPTION_WEIGHTS_FILENAME,
    FIDInceptionV3,
    InceptionA,
    InceptionC,
    InceptionE,
    InceptionExtractor,
    load_inception_weights,
    resize_for_inception,
    resolve_inception_weights,
)

# Key -> shape pairs of pytorch-fid's checkpoint: torchvision's Inception3(num_classes=1008,
# aux_logits=False), which pytorch-fid's fid_inception_v3() loads the file into strictly.
KNOWN_SHAPES: dict[str, tuple[int, ...]] = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.weight": (32,),
    "Conv2d_1a_3x3.bn.bias": (32,),
    "Conv2d_1a_3x3.bn.running_mean": (32,),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_2a_3x3.conv.weight": (32, 32, 3, 3),
    "Conv2d_2b_3x3.conv.weight": (64, 32, 3, 3),
    "Conv2d_3b_1x1.conv.weight": (80, 64, 1, 1),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch5x5_1.conv.weight": (48, 192, 1, 1),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch3x3dbl_1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch3x3dbl_3.conv.weight": (96, 96, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5c.branch_pool.conv.weight": (64, 256, 1, 1),
    "Mixed_5d.branch1x1.conv.weight": (64, 288, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6a.branch3x3dbl_3.conv.weight": (96, 96, 3, 3),
    "Mixed_6b.branch7x7_1.conv.weight": (128, 768, 1, 1),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6b.branch7x7_3.conv.weight": (192, 128, 7, 1),
    "Mixed_6b.branch7x7dbl_2.conv.weight": (128, 128, 7, 1),
    "Mixed_6c.branch7x7dbl_3.conv.weight": (160, 160, 1, 7),
    "Mixed_6d.branch7x7_1.conv.weight": (160, 768, 1, 1),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_6e.branch_pool.conv.weight": (192, 768, 1, 1),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch1x1.conv.weight": (320, 1280, 1, 1),
    "Mixed_7b.branch3x3_2a.conv.weight": (384, 384, 1, 3),
    "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7b.branch3x3dbl_2.conv.weight": (384, 448, 3, 3),
    "Mixed_7c.branch1x1.conv.weight": (320, 2048, 1, 1),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch3x3dbl_3b.bn.running_var": (384,),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "Mixed_7c.branch_pool.bn.running_mean": (192,),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}
NUM_BASIC_CONVS = 94  # stem 5 + 3 x InceptionA 7 + InceptionB 4 + 4 x InceptionC 10 + InceptionD 6 + 2 x InceptionE 9
NUM_PARAMETERS = 23_850_960  # torchvision's inception_v3 (27,161,264) minus the aux head, with a 1008-way fc
NUM_CHECKPOINT_VALUES = 23_885_392  # + BN running means and variances (num_batches_tracked not counted)


def _random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded weights that keep activations O(1) through all 94 conv layers (He init, mild BN stats)."""
    torch.manual_seed(seed)
    model = FIDInceptionV3()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    # Like pytorch-fid's file as far as we know: no BatchNorm step counters.
    return {key: value for key, value in model.state_dict().items() if not key.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return _random_state_dict()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, state_dict):
    path = tmp_path_factory.mktemp("weights") / INCEPTION_WEIGHTS_FILENAME
    torch.save(state_dict, path)
    return path


@pytest.fixture(scope="module")
def extractor(state_dict) -> InceptionExtractor:
    return InceptionExtractor(state_dict=state_dict)


@pytest.fixture(autouse=True)
def _no_weights_env(monkeypatch):
    # A developer's own FACEGAN_INCEPTION_WEIGHTS must not change what these tests see.
    monkeypatch.delenv(INCEPTION_ENV, raising=False)


def _faces(count: int, size: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images (low-frequency noise upsampled), so the bicubic resize has structure to keep."""
    coarse = np.random.default_rng(seed).integers(0, 256, (count, 8, 8, channels), dtype=np.uint8)

    def upsample(plane: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(plane).resize((size, size), Image.BILINEAR))

    return np.stack([np.stack([upsample(image[..., c]) for c in range(channels)], -1) for image in coarse])


# --- the network ---------------------------------------------------------------------------------


def test_state_dict_matches_pytorch_fid_checkpoint_layout():
    with torch.device("meta"):
        state = FIDInceptionV3().state_dict()
    for key, shape in KNOWN_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    checkpoint_keys = [key for key in state if not key.endswith("num_batches_tracked")]
    assert len(checkpoint_keys) == NUM_BASIC_CONVS * 5 + 2  # conv.weight, bn.{weight,bias,running_mean,running_var}; fc
    assert not any(key.startswith("AuxLogits") for key in state)  # pytorch-fid builds it with aux_logits=False
    assert not any(key.endswith("conv.bias") for key in state)  # the batch norm carries the shift
    parameter_keys = [key for key in checkpoint_keys if "running" not in key]
    assert sum(state[key].numel() for key in parameter_keys) == NUM_PARAMETERS
    assert sum(state[key].numel() for key in checkpoint_keys) == NUM_CHECKPOINT_VALUES


def test_batch_norm_uses_tensorflow_epsilon():
    model = FIDInceptionV3()
    epsilons = {module.eps for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)}
    assert epsilons == {0.001}


def _identity_pool_branch(block: torch.nn.Module, channels: int) -> torch.nn.Module:
    """Make the block's pool branch pass the pooled input through: 1x1 identity conv, neutral batch norm."""
    with torch.no_grad():
        block.branch_pool.conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    return block.eval()


@pytest.mark.parametrize(
    "block",
    [InceptionA(16, pool_features=16), InceptionC(192, channels_7x7=8), InceptionE(192, max_pool=False)],
    ids=["A", "C", "E_1"],
)
def test_average_pools_ignore_padding_like_tensorflow(block):
    channels = block.branch_pool.conv.in_channels
    block = _identity_pool_branch(block, channels)
    with torch.no_grad():
        pooled = block(torch.ones(1, channels, 5, 5))[:, -channels:]  # the pool branch is concatenated last
    # count_include_pad=False: the corners average 4 ones, not 4 ones and 5 padded zeros (4/9).
    torch.testing.assert_close(pooled, torch.full_like(pooled, 1 / math.sqrt(1 + 0.001)))


def test_last_block_max_pools_like_the_tf_graph():
    block = _identity_pool_branch(InceptionE(192, max_pool=True), 192)
    spike = torch.zeros(1, 192, 5, 5)
    spike[:, :, 2, 2] = 1.0
    with torch.no_grad():
        pooled = block(spike)[0, -192:]  # (192, 5, 5)
    expected = torch.zeros(5, 5)
    expected[1:4, 1:4] = 1 / math.sqrt(1 + 0.001)  # max pool copies the spike; an average would give 1/9
    torch.testing.assert_close(pooled, expected.expand(192, 5, 5))
    assert FIDInceptionV3().Mixed_7c.max_pool and not FIDInceptionV3().Mixed_7b.max_pool


# --- weights: finding, reading, checking --------------------------------------------------------


def test_pth_file_loads_and_gives_the_same_features_as_the_state_dict(weights_file, extractor):
    from_file = InceptionExtractor(weights_path=weights_file)
    images = _faces(2)
    features = from_file.features(images)
    assert features.shape == (2, 2048) and features.dtype == np.float32
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(features, extractor.features(images))
    assert from_file.weights_sha256 == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert from_file.protocol["weights_sha256"] == from_file.weights_sha256


def test_safetensors_file_loads(tmp_path, state_dict):
    from safetensors.torch import save_file

    path = tmp_path / "inception.safetensors"
    save_file(state_dict, str(path))
    loaded = load_inception_weights(path)
    assert loaded.keys() == state_dict.keys()
    key = "Mixed_7c.branch_pool.conv.weight"
    torch.testing.assert_close(loaded[key], state_dict[key])


def test_batch_norm_step_counters_are_optional(state_dict):
    with_counters = dict(state_dict, **{"Conv2d_1a_3x3.bn.num_batches_tracked": torch.tensor(7)})
    images = _faces(1)
    features = InceptionExtractor(state_dict=with_counters).features(images)
    np.testing.assert_array_equal(features, InceptionExtractor(state_dict=state_dict).features(images))


def test_env_var_and_folder_resolve_to_the_file(monkeypatch, weights_file):
    monkeypatch.setenv(INCEPTION_ENV, str(weights_file))
    assert resolve_inception_weights(None) == weights_file
    assert resolve_inception_weights(weights_file.parent) == weights_file  # a folder holding the standard file
    assert resolve_inception_weights(str(weights_file)) == weights_file


@pytest.mark.parametrize("given", [None, "missing"], ids=["nothing-set", "missing-file"])
def test_missing_weights_say_where_to_get_them_and_how_to_pass_them(tmp_path, given):
    with pytest.raises(FaceganError) as error:
        InceptionExtractor(weights_path=None if given is None else tmp_path / "nope.pth")
    message = str(error.value)
    assert "\n" not in message
    for needed in ("--inception-weights", INCEPTION_ENV, INCEPTION_WEIGHTS_FILENAME, "pytorch-fid", "--features face"):
        assert needed in message
    if given is not None:
        assert "nope.pth" in message


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all" * 100, b"PK\x03\x04 truncated zip"], ids=["empty", "garbage", "zip"]
)
def test_corrupt_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / INCEPTION_WEIGHTS_FILENAME
    path.write_bytes(content)
    with pytest.raises(FaceganError, match="cannot read Inception weights") as error:
        load_inception_weights(path)
    assert "\n" not in str(error.value)


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "inception.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(FaceganError, match="cannot read Inception weights"):
        load_inception_weights(path)


_CODE_RAN: list[str] = []


def _record_code_ran() -> None:
    _CODE_RAN.append("ran")


class _Payload:
    def __reduce__(self):
        return (_record_code_ran, ())


def test_pickled_code_is_refused_not_run(tmp_path):
    path = tmp_path / "hostile.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(FaceganError, match="cannot read Inception weights"):
        load_inception_weights(path)
    assert _CODE_RAN == []


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda sd: sd.pop("Mixed_6c.branch7x7dbl_3.bn.running_var"), "lack key 'Mixed_6c.branch7x7dbl_3.bn.running_var"),
        (lambda sd: sd.update({"AuxLogits.fc.weight": torch.zeros(1008, 768)}), "unexpected key 'AuxLogits.fc.weight'"),
        (lambda sd: sd.update({"fc.weight": torch.zeros(1000, 2048)}), r"'fc.weight' has shape \(1000, 2048\)"),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_wrong_state_dict_names_the_first_bad_key(tmp_path, state_dict, edit, named):
    wrong = dict(state_dict)
    edit(wrong)
    path = tmp_path / "wrong.pth"
    torch.save(wrong, path)
    with pytest.raises(FaceganError, match=named):
        load_inception_weights(path)
    with pytest.raises(FaceganError, match=named):
        InceptionExtractor(state_dict=wrong)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(FaceganError, match="not a state_dict"):
        load_inception_weights(path)


# --- input protocol ------------------------------------------------------------------------------


def test_resize_is_pil_bicubic_on_float_channels():
    image = _faces(1, size=32)[0]  # (32, 32, 3) uint8
    resized = resize_for_inception(image)
    assert resized.shape == (299, 299, 3) and resized.dtype == np.float32
    for channel in range(3):
        reference = Image.fromarray(image[..., channel].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC)
        np.testing.assert_array_equal(resized[..., channel], np.clip(np.asarray(reference), 0, 255))
    assert resized.min() >= 0 and resized.max() <= 255
    # Not re-quantised: values between integers survive (a uint8 resize would round them all).
    assert np.any(resized != np.round(resized))
    # ...yet it is the same filter as PIL's uint8 bicubic, which differs only by rounding: uint8 PIL
    # rounds after each of its two 1-D passes, so a pixel may move by a little more than 0.5.
    uint8_resized = np.asarray(Image.fromarray(image).resize((299, 299), Image.BICUBIC)).astype(np.float32)
    difference = np.abs(resized - uint8_resized)
    assert difference.max() <= 1.5 and difference.mean() < 0.5


def test_resize_antialiases_when_downsampling_and_keeps_299_untouched():
    checkerboard = ((np.indices((598, 598)).sum(0) % 2) * 255).astype(np.uint8)  # 1-pixel checks
    resized = resize_for_inception(checkerboard)  # (299, 299, 1)
    # Antialiased: the checks blur to mid-grey; point sampling would keep 0/255 or alias.
    assert abs(float(resized.mean()) - 127.5) < 1.0 and float(resized.std()) < 5.0
    image = _faces(1, size=299)[0]
    np.testing.assert_array_equal(resize_for_inception(image), image.astype(np.float32))


def test_pixels_are_scaled_to_minus_one_one(extractor):
    images = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    images[1] = 255
    batch = extractor._prepare(images)  # (2, 3, 299, 299)
    assert batch.shape == (2, 3, 299, 299) and batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.all(batch[0] == -1.0) and torch.all(batch[1] == 1.0)


def test_grayscale_is_replicated_to_rgb(extractor):
    gray = _faces(2, channels=1)  # (2, 32, 32, 1)
    rgb = np.repeat(gray, 3, axis=-1)
    from_rgb = extractor.features(rgb)
    np.testing.assert_allclose(extractor.features(gray), from_rgb, rtol=0, atol=1e-6)
    np.testing.assert_allclose(extractor.features(gray[..., 0]), from_rgb, rtol=0, atol=1e-6)  # (N, H, W)


def test_features_do_not_depend_on_batch_size(extractor):
    images = _faces(5, seed=1)
    one_by_one = extractor.features(images, batch_size=1)
    together = extractor.features(images, batch_size=5)
    assert together.shape == (5, 2048) and np.isfinite(together).all()
    np.testing.assert_allclose(one_by_one, together, rtol=0, atol=1e-5)
    # ...and different images give clearly different features, so the comparison above means something.
    assert np.abs(together[0] - together[1]).max() > 1e-2


def test_bad_input_is_a_clear_error(extractor):
    with pytest.raises(FaceganError, match="uint8"):
        extractor.features(np.zeros((1, 32, 32, 3), dtype=np.float32))
    with pytest.raises(FaceganError, match="C in"):
        extractor.features(np.zeros((1, 32, 32, 4), dtype=np.uint8))
    assert extractor.features(np.zeros((0, 32, 32, 3), dtype=np.uint8)).shape == (0, 2048)


def test_identity_and_protocol_are_recorded(extractor):
    assert (extractor.name, extractor.version, extractor.dim) == ("inception-v3-fid", "1", 2048)
    assert extractor.protocol["weights_file"] == INCEPTION_WEIGHTS_FILENAME
    assert "BICUBIC" in extractor.protocol["resize"] and "x / 255 * 2 - 1" in extractor.protocol["normalize"]
    assert extractor.weights_sha256 is None  # injected weights have no file hash
    assert not any(parameter.requires_grad for parameter in extractor.model.parameters())
