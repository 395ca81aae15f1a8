"""The trained codec: it reads its key from encoded images, not from others; loading and bad inputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.fingerprint import EVAL_TRANSFORMS, FingerprintConfig, apply_transform, detect, fingerprint_dataset, load_fingerprint, train_fingerprint
from facegan.fingerprint.fingerprint import CONFIG_NAME, DECODER_NAME, ENCODER_NAME, key_to_hex


def test_fingerprint_folder_and_metadata(tiny_fingerprint_path, tiny_fingerprint, faces16):
    from facegan.data.dataset import FaceDataset

    assert sorted(path.name for path in tiny_fingerprint_path.iterdir()) == sorted([CONFIG_NAME, ENCODER_NAME, DECODER_NAME])
    metadata = json.loads((tiny_fingerprint_path / CONFIG_NAME).read_text())
    assert metadata["format"] == "facegan-fingerprint" and metadata["format_version"] == 2
    assert (metadata["bits"], metadata["resolution"], metadata["channels"], metadata["steps"]) == (16, 16, 1, 300)
    assert metadata["key"] == key_to_hex(tiny_fingerprint.key) and len(metadata["key"]) == 4
    assert metadata["dataset"]["hash"] == FaceDataset.load(faces16).content_hash
    assert (metadata["dataset"]["num_train"], metadata["dataset"]["num_holdout"]) == (80, 20)
    assert len(metadata["id"]) == 64 and tiny_fingerprint.id == metadata["id"]
    measured = metadata["measured"]
    assert measured["on"] == "holdout" and measured["num_images"] == 20
    assert measured["clean_bit_accuracy"] > 0.7  # 16 bits, 300 steps: far above the 0.5 of chance
    assert measured["psnr"] == pytest.approx(26.0, abs=0.5)  # the residual's energy is fixed by construction


def test_clean_encoded_images_are_read_well_above_chance(tiny_fingerprint, faces16_images):
    encoded = tiny_fingerprint.encode(faces16_images)
    assert encoded.dtype == np.uint8 and encoded.shape == faces16_images.shape
    accuracy = tiny_fingerprint.bit_accuracy(encoded)
    assert accuracy.mean() > 0.75
    result = detect(encoded, tiny_fingerprint, fpr=0.05)
    assert result.detection_rate > 0.6


def test_never_encoded_images_are_near_chance_and_not_significant(tiny_fingerprint, faces16_images):
    result = detect(faces16_images, tiny_fingerprint, fpr=0.01)
    assert abs(result.mean_bit_accuracy - 0.5) < 0.1
    assert result.detection_rate <= 0.05  # the nominal 0.2 % (exact FPR at 16 bits), with room for 100 images' noise
    assert np.mean(result.p_values > 0.05) > 0.85  # and mostly not even significant at 5 %


def test_encoding_is_deterministic_and_batch_independent(tiny_fingerprint, faces16_images):
    whole = tiny_fingerprint.encode(faces16_images)
    assert np.array_equal(whole, tiny_fingerprint.encode(faces16_images))
    assert np.array_equal(whole[:5], tiny_fingerprint.encode(faces16_images[:5]))
    assert np.array_equal(tiny_fingerprint.decode_bits(whole)[7:9], tiny_fingerprint.decode_bits(whole[7:9]))
    # the residual is small: on average below its RMS (26 dB PSNR: 12.8 grey levels), but not nothing
    assert 1.0 < np.abs(whole.astype(int) - faces16_images).mean() < 255 / 10 ** (26 / 20)


@pytest.mark.parametrize("name", list(EVAL_TRANSFORMS))
def test_detection_after_every_transform_returns_valid_values(tiny_fingerprint, faces16_images, name):
    distorted = apply_transform(tiny_fingerprint.encode(faces16_images[:20]), name)
    result = detect(distorted, tiny_fingerprint, fpr=0.01)
    assert len(result) == 20 and result.threshold == 14
    assert ((0 <= result.bit_accuracy) & (result.bit_accuracy <= 1)).all()
    assert ((0 < result.p_values) & (result.p_values <= 1)).all()
    assert np.array_equal(result.detected, result.matches >= 14)
    summary = result.summary()
    json.dumps(summary)
    assert 0.0 <= summary["detection_rate"] <= 1.0 and summary["mean_bit_accuracy"] == pytest.approx(result.bit_accuracy.mean())


def test_larger_images_are_encoded_at_their_size_and_read_after_downscaling(tiny_fingerprint, faces32):
    from facegan.data.dataset import FaceDataset

    large = np.array(FaceDataset.load(faces32).images[:30])
    encoded = tiny_fingerprint.encode(large)
    assert encoded.shape == large.shape
    assert tiny_fingerprint.bit_accuracy(encoded).mean() > 0.7
    assert detect([image for image in encoded], tiny_fingerprint).bits == 16  # a list of HWC arrays works too


def test_small_or_wrong_channel_images_are_refused(tiny_fingerprint, faces16_images):
    with pytest.raises(FaceganError, match="smaller than the fingerprint's 16x16"):
        tiny_fingerprint.decode_bits(faces16_images[:, :8, :8])
    with pytest.raises(FaceganError, match="3 channel"):
        detect(np.repeat(faces16_images[:2], 3, axis=3), tiny_fingerprint)
    with pytest.raises(FaceganError, match="uint8"):
        tiny_fingerprint.encode(faces16_images.astype(np.float32))
    with pytest.raises(FaceganError, match="--fpr"):
        detect(faces16_images[:2], tiny_fingerprint, fpr=float("nan"))


def test_load_round_trip(tiny_fingerprint_path, tiny_fingerprint, faces16_images):
    again = load_fingerprint(tiny_fingerprint_path / CONFIG_NAME)
    assert again.id == tiny_fingerprint.id and np.array_equal(again.key, tiny_fingerprint.key)
    assert np.array_equal(again.decode_bits(faces16_images[:8]), tiny_fingerprint.decode_bits(faces16_images[:8]))


def _damaged_copy(source, tmp_path, name="fp"):
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def test_damaged_fingerprints_are_one_clear_error(tiny_fingerprint_path, tmp_path):
    with pytest.raises(FaceganError, match="fingerprint not found"):
        load_fingerprint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceganError, match="not a fingerprint"):
        load_fingerprint(tmp_path / "empty")

    broken = _damaged_copy(tiny_fingerprint_path, tmp_path, "json")
    (broken / CONFIG_NAME).write_text("{not json")
    with pytest.raises(FaceganError, match="damaged"):
        load_fingerprint(broken)

    other_bits = _damaged_copy(tiny_fingerprint_path, tmp_path, "bits")
    metadata = json.loads((other_bits / CONFIG_NAME).read_text())
    metadata["bits"] = 32
    (other_bits / CONFIG_NAME).write_text(json.dumps(metadata))
    with pytest.raises(FaceganError, match="bits"):
        load_fingerprint(other_bits)

    other_key = _damaged_copy(tiny_fingerprint_path, tmp_path, "key")
    metadata = json.loads((other_key / CONFIG_NAME).read_text())
    metadata["key"] = metadata["key"] + "0"  # 5 hex digits for 16 bits
    (other_key / CONFIG_NAME).write_text(json.dumps(metadata))
    with pytest.raises(FaceganError, match="key"):
        load_fingerprint(other_key)

    swapped_key = _damaged_copy(tiny_fingerprint_path, tmp_path, "swapped")
    metadata = json.loads((swapped_key / CONFIG_NAME).read_text())
    metadata["key"] = f"{int(metadata['key'], 16) ^ 1:04x}"  # a valid key, but not the one the weights were saved with
    (swapped_key / CONFIG_NAME).write_text(json.dumps(metadata))
    with pytest.raises(FaceganError, match="another key"):
        load_fingerprint(swapped_key)

    truncated = _damaged_copy(tiny_fingerprint_path, tmp_path, "weights")
    payload = (truncated / DECODER_NAME).read_bytes()
    (truncated / DECODER_NAME).write_bytes(payload[: len(payload) // 2])
    with pytest.raises(FaceganError, match="corrupt"):
        load_fingerprint(truncated)

    flipped = _damaged_copy(tiny_fingerprint_path, tmp_path, "flipped")
    payload = bytearray((flipped / DECODER_NAME).read_bytes())
    payload[-3] ^= 0x10  # one weight changed: still loads as safetensors, but no longer matches the id
    (flipped / DECODER_NAME).write_bytes(bytes(payload))
    with pytest.raises(FaceganError, match="id"):
        load_fingerprint(flipped)

    missing = _damaged_copy(tiny_fingerprint_path, tmp_path, "missing-weights")
    (missing / ENCODER_NAME).unlink()
    with pytest.raises(FaceganError, match="incomplete"):
        load_fingerprint(missing)


def test_training_refuses_bad_outputs_and_options(faces16, tmp_path, tiny_fingerprint_path):
    tiny = FingerprintConfig(bits=8, steps=2, batch_size=4, encoder_width=4, decoder_width=4, key_channels=1)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FaceganError, match="is a file"):
        train_fingerprint(faces16, a_file, tiny)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FaceganError, match="not a fingerprint"):
        train_fingerprint(faces16, other, tiny)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(FaceganError, match="already holds a fingerprint"):
        train_fingerprint(faces16, tiny_fingerprint_path, tiny)
    for bits in (0, -3, 257):
        with pytest.raises(FaceganError, match="bits"):
            train_fingerprint(faces16, tmp_path / "new", FingerprintConfig(bits=bits, steps=2))
    with pytest.raises(FaceganError, match="hex digits"):
        train_fingerprint(faces16, tmp_path / "new", tiny, key="abc")
    assert not (tmp_path / "new").exists()
    made = train_fingerprint(faces16, tmp_path / "new", tiny, key="a5")
    assert made.metadata["key"] == "a5" and made.key.tolist() == [1, 0, 1, 0, 0, 1, 0, 1]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging folder left behind


def test_fingerprint_dataset_keeps_labels_and_records_the_id(tiny_fingerprint, faces16, tmp_path):
    from facegan.data.dataset import FaceDataset

    source = FaceDataset.load(faces16)
    labelled = FaceDataset(np.array(source.images), {**source.manifest, "identity_names": [f"p{i}" for i in range(10)],
                                                      "paths": [f"img/{i}.png" for i in range(len(source))]},
                           identity=np.arange(len(source)) % 10, partition=(np.arange(len(source)) % 3).astype(np.int8))
    labelled_path = labelled.save(tmp_path / "labelled")
    marked = fingerprint_dataset(labelled_path, tiny_fingerprint, tmp_path / "marked")
    assert marked.path == tmp_path / "marked"
    assert marked.manifest["fingerprint"] == {"id": tiny_fingerprint.id, "bits": 16, "path": str(tiny_fingerprint.path)}
    assert marked.manifest["parent_hash"] == labelled.content_hash != marked.content_hash
    assert marked.manifest["identity_names"] == labelled.manifest["identity_names"] and marked.source_paths[3] == "img/3.png"
    assert marked.manifest["source"] == "test:lfw16"
    assert np.array_equal(marked.identity, labelled.identity) and np.array_equal(marked.partition, labelled.partition)
    assert np.array_equal(np.asarray(marked.images), tiny_fingerprint.encode(np.array(labelled.images)))
    with pytest.raises(FaceganError, match="input dataset"):
        fingerprint_dataset(labelled_path, tiny_fingerprint, labelled_path)
