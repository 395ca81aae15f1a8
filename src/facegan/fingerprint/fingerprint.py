"""A saved fingerprint: one fixed key with the encoder that writes it and the decoder that reads it.

On disk (one folder, written atomically by `train_fingerprint`):
    fingerprint.json      format, version, id (sha256 of both networks' weights and the key), bits, key (hex),
                          resolution, channels, config, training dataset hash, steps, measured accuracy
    encoder.safetensors   encoder weights (the key in its metadata, so the id covers the key)
    decoder.safetensors   decoder weights
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facegan.errors import FaceganError
from facegan.fingerprint.codec import MAX_BITS, MIN_BITS, Decoder, Encoder, FingerprintConfig

FORMAT_MARKER = "facegan-fingerprint"
# 2: the key-only pattern (FingerprintConfig.pattern_grid, image_fraction). A format-1 folder still loads: its
# config lacks those keys and describes the image-conditioned codec, i.e. pattern_grid 0.
FORMAT_VERSION = 2
FORMAT_1_DEFAULTS = {"pattern_grid": 0, "image_fraction": 0.0}
CONFIG_NAME = "fingerprint.json"
ENCODER_NAME = "encoder.safetensors"
DECODER_NAME = "decoder.safetensors"
FINGERPRINT_FILES = (CONFIG_NAME, ENCODER_NAME, DECODER_NAME)
BATCH_SIZE = 64  # encode/decode in fixed chunks, so a result never depends on how many images came together
MAX_CONFIG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 1 << 30
RETRAIN_HINT = "train it again with `facegan fingerprint train`"


# ---- keys ----------------------------------------------------------------------------------------
def key_from_seed(bits: int, seed: int) -> np.ndarray:
    """k random bits (uint8 0/1) that depend only on (bits, seed)."""
    return np.random.default_rng([int(seed), 0x46505249]).integers(0, 2, size=int(bits), dtype=np.uint8)


def key_to_hex(key: np.ndarray) -> str:
    """uint8 0/1 bits, most significant first -> ceil(k / 4) hex digits (left-padded with zero bits)."""
    key = np.asarray(key, dtype=np.uint8)
    value = int("".join(str(int(bit)) for bit in key), 2) if len(key) else 0
    return f"{value:0{(len(key) + 3) // 4}x}"


def parse_key(key: Any, bits: int) -> np.ndarray:
    """A key given as hex text (ceil(bits / 4) digits) or as bits (0/1 values) -> uint8 (bits,)."""
    if isinstance(key, str):
        text = key.strip().lower().removeprefix("0x")
        digits = (bits + 3) // 4
        if not re.fullmatch(r"[0-9a-f]+", text or "-"):
            raise FaceganError(f"--key must be hexadecimal digits (0-9, a-f), got {key!r:.80}")
        if len(text) != digits:
            raise FaceganError(f"--key has {len(text)} hex digits but --bits {bits} needs exactly {digits} "
                               f"({'one digit per 4 bits' if bits % 4 == 0 else 'the first digit holding the top bits'})")
        value = int(text, 16)
        if value >> bits:
            raise FaceganError(f"--key {text} has more than {bits} bits (its first digit is too large for --bits {bits})")
        return np.array([(value >> (bits - 1 - index)) & 1 for index in range(bits)], dtype=np.uint8)
    array = np.asarray(key)
    if array.ndim != 1 or len(array) != bits or not np.isin(array, (0, 1)).all():
        raise FaceganError(f"a key must be {bits} bits (0 or 1) or {(bits + 3) // 4} hex digits, got {getattr(array, 'shape', '?')}")
    return array.astype(np.uint8)


# ---- the loaded fingerprint ----------------------------------------------------------------------
class Fingerprint:
    """A codec with its fixed key: `encode(uint8 NHWC) -> uint8 NHWC`, `decode_bits(uint8 NHWC) -> uint8 (N, k)`."""

    def __init__(self, encoder: Encoder, decoder: Decoder, key: np.ndarray, config: FingerprintConfig,
                 metadata: dict[str, Any], path: Path | None = None) -> None:
        self.encoder = encoder.eval().requires_grad_(False)
        self.decoder = decoder.eval().requires_grad_(False)
        self.key = np.asarray(key, dtype=np.uint8)
        self.config = config
        self.metadata = dict(metadata)
        self.path = path

    @property
    def id(self) -> str:
        return str(self.metadata.get("id", ""))

    @property
    def bits(self) -> int:
        return self.config.bits

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def channels(self) -> int:
        return self.config.channels

    def check_images(self, images: Any, what: str = "images") -> np.ndarray:
        """uint8 NHWC of this fingerprint's channels and at least its resolution, else one FaceganError."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.dtype != np.uint8 or images.ndim != 4:
            raise FaceganError(f"{what} must be uint8 (N, H, W, C) arrays, got {images.dtype} {images.shape}")
        if len(images) == 0:
            raise FaceganError(f"no {what} given")
        height, width, channels = images.shape[1:]
        if channels != self.channels:
            kind = {1: "grey", 3: "RGB"}.get(self.channels, f"{self.channels}-channel")
            raise FaceganError(f"{what} have {channels} channel(s) but this fingerprint reads {kind} images ({self.channels}); "
                               "convert them first")
        if min(height, width) < self.resolution:
            raise FaceganError(f"{what} are {width}x{height}, smaller than the fingerprint's {self.resolution}x{self.resolution}; "
                               "the decoder cannot read a key from fewer pixels than it was trained on (never upscale: give the original images)")
        if height != width:
            raise FaceganError(f"{what} are {width}x{height}; the fingerprint reads square images (crop them to a square first)")
        return images

    def _at_resolution(self, images: np.ndarray) -> np.ndarray:
        """Images resized (antialiased Lanczos) down to the codec's resolution when larger."""
        if images.shape[1] == self.resolution:
            return np.array(images)  # a copy: memmapped dataset rows are read-only, torch wants writable memory
        from facegan.images import resize_whole

        return np.stack([resize_whole(image, self.resolution) for image in images])

    @torch.inference_mode()
    def encode(self, images: np.ndarray) -> np.ndarray:
        """Write the key into uint8 (N, H, W, C) images -> uint8 of the same shape (deterministic).

        At the codec's resolution the residual is added directly; a larger image gets the residual
        computed on its downscaled copy and upsampled (bilinear) to its own size.
        """
        from facegan.images import to_model, to_uint8

        images = self.check_images(images)
        small = self._at_resolution(images)
        key = torch.from_numpy(self.key).float()[None]
        chunks = []
        for start in range(0, len(images), BATCH_SIZE):
            batch = to_model(small[start : start + BATCH_SIZE])  # (B, C, R, R)
            residual = self.encoder.residual(batch, key.expand(len(batch), -1))
            if images.shape[1] != self.resolution:
                residual = torch.nn.functional.interpolate(residual, size=images.shape[1:3], mode="bilinear", align_corners=False)
                batch = to_model(np.array(images[start : start + BATCH_SIZE]))
            chunks.append(to_uint8(batch + residual).numpy())
        return np.concatenate(chunks)

    @torch.inference_mode()
    def decode_logits(self, images: np.ndarray) -> np.ndarray:
        """float32 (N, k) logits read from uint8 NHWC images (positive: bit 1)."""
        from facegan.images import to_model

        small = self._at_resolution(self.check_images(images))
        return np.concatenate([self.decoder(to_model(small[start : start + BATCH_SIZE])).numpy()
                               for start in range(0, len(small), BATCH_SIZE)]).astype(np.float32)

    def decode_bits(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, k) bits read from uint8 NHWC images."""
        return (self.decode_logits(images) > 0).astype(np.uint8)

    def bit_accuracy(self, images: np.ndarray) -> np.ndarray:
        """Per image, the fraction of bits that equal the key: float (N,)."""
        return (self.decode_bits(images) == self.key[None]).mean(axis=1)

    def describe(self) -> str:
        measured = self.metadata.get("measured", {})
        return (f"fingerprint {self.id[:16]}: {self.bits} bits, {self.resolution}x{self.resolution}x{self.channels}, key {key_to_hex(self.key)}; "
                f"bit accuracy on {measured.get('num_images', '?')} {measured.get('on', '?')} images: clean {measured.get('clean_bit_accuracy', float('nan')):.3f}, "
                f"JPEG 75 {measured.get('jpeg75_bit_accuracy', float('nan')):.3f}, PSNR {measured.get('psnr', float('nan')):.1f} dB")


def measure(fingerprint: Fingerprint, images: np.ndarray) -> dict[str, float]:
    """Mean bit accuracy on the encoded images, clean and after Pillow JPEG 75, and their PSNR to the originals."""
    from facegan.fingerprint.distortions import apply_transform

    encoded = fingerprint.encode(images)
    error = (encoded.astype(np.float64) - np.asarray(images, dtype=np.float64)) ** 2
    mse = float(error.mean())
    return {
        "clean_bit_accuracy": float(fingerprint.bit_accuracy(encoded).mean()),
        "jpeg75_bit_accuracy": float(fingerprint.bit_accuracy(apply_transform(encoded, "jpeg75")).mean()),
        "never_encoded_bit_accuracy": float(fingerprint.bit_accuracy(images).mean()),
        "psnr": float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse)),
    }


def null_statistics(fingerprint: Fingerprint, images: np.ndarray) -> dict[str, Any]:
    """Matching bits on images that were never encoded, clean and under every evaluation transform:
    the measured null distribution `detect` calibrates its threshold with."""
    from facegan.fingerprint.distortions import EVAL_TRANSFORMS, apply_transform

    counts = np.concatenate([(fingerprint.decode_bits(apply_transform(images, name) if name != "clean" else images)
                              == fingerprint.key[None]).sum(axis=1) for name in EVAL_TRANSFORMS])
    return {"num_images": int(len(images)), "transforms": list(EVAL_TRANSFORMS), "num_samples": int(len(counts)),
            "mean_matches": float(counts.mean()), "sd_matches": float(counts.std(ddof=1)) if len(counts) > 1 else 0.0,
            "histogram": [int(value) for value in np.bincount(counts, minlength=fingerprint.bits + 1)]}


def fingerprint_digest(encoder: nn.Module, decoder: nn.Module, key: np.ndarray) -> str:
    """The fingerprint's id: sha256 of both networks' weights (names, dtypes, shapes, bytes, in name order) and the key.

    Computed from the tensors, not the files: safetensors orders its metadata header freely, so two saves of the
    same weights can differ in bytes but never in id.
    """
    digest = hashlib.sha256()
    for part, module in (("encoder", encoder), ("decoder", decoder)):
        state = module.state_dict()
        for name in sorted(state):
            tensor = state[name].detach().cpu().contiguous()
            digest.update(f"{part}.{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
            digest.update(tensor.numpy().tobytes())
    digest.update(f"key:{len(key)}:{key_to_hex(key)}".encode())
    return digest.hexdigest()


def weights_bytes(module: nn.Module, key: np.ndarray | None = None) -> bytes:
    """The module's weights as safetensors bytes; the encoder's file also records the key."""
    from safetensors.torch import save

    state = {name: value.detach().cpu().contiguous() for name, value in module.state_dict().items()}
    metadata = {"format": FORMAT_MARKER}
    if key is not None:
        metadata["key"] = key_to_hex(key)
        metadata["bits"] = str(len(key))
    return save(state, metadata=metadata)


# ---- folders -------------------------------------------------------------------------------------
def _read_config_quietly(path: Path) -> Any:
    from facegan.files import read_regular_file

    try:
        return json.loads(read_regular_file(path, MAX_CONFIG_BYTES))
    except (FaceganError, ValueError, RecursionError):
        return None


def check_fingerprint_output(out: str | os.PathLike) -> Path:
    """The absolute fingerprint folder to write: a new path or an empty folder; anything else is refused.

    An existing fingerprint is never replaced: images and generators marked with it could no longer be
    told apart from unmarked ones once its key and decoder are gone.
    """
    from facegan.files import check_writable_folder, output_folder_entries

    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise FaceganError(f"the fingerprint output must be a folder path, got {out!r:.60}")
    folder, entries = output_folder_entries(out, "the fingerprint")
    if entries:
        config = _read_config_quietly(folder / CONFIG_NAME)
        if isinstance(config, dict) and config.get("format") == FORMAT_MARKER:
            raise FaceganError(f"--out {out} already holds a fingerprint (id {str(config.get('id'))[:16]}); choose a new folder "
                               "(a fingerprint is never replaced: what was marked with it could no longer be detected)")
        raise FaceganError(f"--out {out} exists and is not a fingerprint (it holds {', '.join(sorted(entries)[:3])}"
                           f"{', ...' if len(entries) > 3 else ''}); choose a new or empty folder")
    check_writable_folder(folder.parent, "the fingerprint")
    return folder


def _config_from(metadata: dict[str, Any], path: Path) -> FingerprintConfig:
    stored = metadata.get("config")
    if not isinstance(stored, dict):
        raise FaceganError(f"{path} has no codec description ('config'); {RETRAIN_HINT}")
    if metadata.get("format_version") == 1:
        if set(FORMAT_1_DEFAULTS) & set(stored):
            raise FaceganError(f"{path} says format 1 but its config has format-2 keys; the fingerprint is inconsistent, {RETRAIN_HINT}")
        stored = {**stored, **FORMAT_1_DEFAULTS}
    known = {field.name for field in fields(FingerprintConfig)}
    unknown = sorted(set(stored) - known)
    if unknown:
        raise FaceganError(f"{path} has unknown config key '{unknown[0]}' (made by a newer facegan?); {RETRAIN_HINT}")
    try:
        config = FingerprintConfig(**stored).validate()
    except (FaceganError, TypeError) as error:
        raise FaceganError(f"{path} describes an impossible codec ({error}); {RETRAIN_HINT}") from None
    for name in ("bits", "resolution", "channels"):
        if metadata.get(name) != getattr(config, name):
            raise FaceganError(f"{path} says {name} {metadata.get(name)!r:.20} but its config says {getattr(config, name)}; {RETRAIN_HINT}")
    return config


def _load_weights(module: nn.Module, payload: bytes, path: Path) -> dict[str, str]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        state = load(payload)
        header_length = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8 : 8 + header_length])
    except (SafetensorError, ValueError, OSError, RecursionError) as error:
        raise FaceganError(f"{path} is corrupt ({str(error)[:100]}); {RETRAIN_HINT}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError:
        raise FaceganError(f"{path} does not match the codec described in {CONFIG_NAME}; the fingerprint is inconsistent, {RETRAIN_HINT}") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FaceganError(f"{path} holds NaN or infinite weights ('{name}'); {RETRAIN_HINT}")
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def load_fingerprint(path: str | os.PathLike) -> Fingerprint:
    """Open a fingerprint folder (or its fingerprint.json); every way it can be wrong is one FaceganError."""
    from facegan.files import ReadRefused, check_format_version, read_regular_file

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise FaceganError(f"a fingerprint must be given as a folder path, got {path!r:.60}")
    folder = Path(os.path.abspath(path))
    if folder.name == CONFIG_NAME and folder.is_file():
        folder = folder.parent
    if not folder.exists():
        raise FaceganError(f"fingerprint not found: {path} (train one with `facegan fingerprint train --data DATASET --out {path}`)")
    if not folder.is_dir():
        raise FaceganError(f"fingerprint {path} is a file; give the folder that `facegan fingerprint train` wrote")
    config_path = folder / CONFIG_NAME
    try:
        metadata = json.loads(read_regular_file(config_path, MAX_CONFIG_BYTES))
    except ReadRefused as refused:
        if refused.reason == "unreadable" and not config_path.exists():
            raise FaceganError(f"{path} is not a fingerprint (no {CONFIG_NAME}); give the folder `facegan fingerprint train` wrote") from None
        raise FaceganError(f"{refused}; {RETRAIN_HINT}") from None
    except (ValueError, RecursionError):
        raise FaceganError(f"{config_path} is damaged (not JSON); {RETRAIN_HINT}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_MARKER:
        raise FaceganError(f"{config_path} is not a facegan fingerprint (format {metadata.get('format') if isinstance(metadata, dict) else None!r:.40})")
    check_format_version(metadata, config_path, path, "fingerprint", FORMAT_VERSION, RETRAIN_HINT)
    bits = metadata.get("bits")
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise FaceganError(f"{config_path} says bits {bits!r:.20}, not a whole number from {MIN_BITS} to {MAX_BITS}; {RETRAIN_HINT}")
    config = _config_from(metadata, config_path)
    key_text = metadata.get("key")
    if not isinstance(key_text, str):
        raise FaceganError(f"{config_path} has no key; {RETRAIN_HINT}")
    try:
        key = parse_key(key_text, bits)
    except FaceganError as error:
        raise FaceganError(f"{config_path}: its key does not fit its {bits} bits ({error}); {RETRAIN_HINT}") from None
    payloads = {}
    for name in (ENCODER_NAME, DECODER_NAME):
        try:
            payloads[name] = read_regular_file(folder / name, MAX_WEIGHTS_BYTES)
        except ReadRefused as refused:
            raise FaceganError(f"{refused}; the fingerprint is incomplete, {RETRAIN_HINT}") from None
    encoder, decoder = Encoder(config), Decoder(config)
    encoder_metadata = _load_weights(encoder, payloads[ENCODER_NAME], folder / ENCODER_NAME)
    _load_weights(decoder, payloads[DECODER_NAME], folder / DECODER_NAME)
    if encoder_metadata.get("key") != key_to_hex(key):
        raise FaceganError(f"{folder / ENCODER_NAME} was saved with another key than {CONFIG_NAME} states; the fingerprint is inconsistent, {RETRAIN_HINT}")
    if metadata.get("id") != fingerprint_digest(encoder, decoder, key):
        raise FaceganError(f"{path}: the weights do not match the fingerprint's id (changed or damaged files); {RETRAIN_HINT}")
    return Fingerprint(encoder, decoder, key, config, metadata, folder)


def resolve_fingerprint(fingerprint: Any) -> Fingerprint:
    """A loaded Fingerprint, or a path to one."""
    return fingerprint if isinstance(fingerprint, Fingerprint) else load_fingerprint(fingerprint)


def fingerprint_dataset(dataset: Any, fingerprint: Any, out: str | os.PathLike) -> "FaceDataset":  # noqa: F821
    """Encode every image of a prepared dataset with `fingerprint` and save the result as a new dataset at `out`.

    Labels, identities, paths and every other manifest field are kept; the manifest gains
    {"fingerprint": {"id", "bits", "path"}} and "parent_hash" (the unmarked dataset's content hash).
    """
    from facegan.data.dataset import FaceDataset, check_output_folder, paths_overlap

    fingerprint = resolve_fingerprint(fingerprint)
    if not isinstance(dataset, FaceDataset):
        dataset = FaceDataset.load(dataset)
    folder = check_output_folder(out)
    if dataset.path is not None and paths_overlap(folder, dataset.path):
        raise FaceganError(f"the output {out} is the input dataset {dataset.path} or inside/around it; give a separate folder")
    if fingerprint.path is not None and paths_overlap(folder, fingerprint.path):
        raise FaceganError(f"the output {out} is the fingerprint folder {fingerprint.path} or inside/around it; give a separate folder")
    if len(dataset) == 0:
        raise FaceganError("the dataset holds no images; nothing to fingerprint")
    encoded = np.concatenate([fingerprint.encode(np.asarray(dataset.images[start : start + 1024]))
                              for start in range(0, len(dataset), 1024)])
    manifest = {key: value for key, value in dataset.manifest.items() if key not in ("content_hash", "images_stat")}
    manifest["parent_hash"] = dataset.content_hash
    manifest["fingerprint"] = {"id": fingerprint.id, "bits": fingerprint.bits,
                               "path": None if fingerprint.path is None else str(fingerprint.path)}
    marked = FaceDataset(images=encoded, manifest=manifest, identity=dataset.identity, attributes=dataset.attributes,
                         partition=dataset.partition)
    return FaceDataset.load(marked.save(folder))
