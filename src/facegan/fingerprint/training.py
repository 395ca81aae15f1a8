"""Training a fingerprint codec: random keys per image, distortions per batch, one fixed key saved.

The loop keeps the whole dataset as one float tensor (tiny face sets fit), draws a fresh random key
for every image of every batch (so the decoder must really read bits, not recognise one pattern),
passes the encoded images through a uint8 rounding and one random differentiable distortion, and
minimises the bits' binary cross-entropy. The residual's energy is fixed by the encoder, so there is
no image-loss weight to tune. Nothing syncs with the host between log ticks.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from facegan.errors import FaceganError
from facegan.fingerprint.codec import Decoder, Encoder, FingerprintConfig
from facegan.fingerprint.distortions import random_distortion, round_straight_through
from facegan.fingerprint.fingerprint import (
    CONFIG_NAME, DECODER_NAME, ENCODER_NAME, FORMAT_MARKER, FORMAT_VERSION, Fingerprint,
    check_fingerprint_output, fingerprint_digest, key_from_seed, key_to_hex, load_fingerprint, measure, null_statistics, parse_key,
    weights_bytes,
)

logger = logging.getLogger("facegan.fingerprint")

ProgressCallback = Callable[[int, int], None]
LogCallback = Callable[[dict[str, Any]], None]


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, shifts of up to 2 px and contrast/brightness jitter: 80 faces look like many more."""
    batch = images.shape[0]
    flip = torch.rand(batch, 1, 1, 1, generator=generator) < 0.5
    images = torch.where(flip, images.flip(3), images)
    shift_y, shift_x = (int(value) for value in torch.randint(-2, 3, (2,), generator=generator))
    padded = F.pad(images, (2, 2, 2, 2), mode="reflect")
    side_y, side_x = images.shape[2], images.shape[3]
    images = padded[:, :, 2 + shift_y : 2 + shift_y + side_y, 2 + shift_x : 2 + shift_x + side_x]
    contrast = 0.8 + 0.4 * torch.rand(batch, 1, 1, 1, generator=generator)
    brightness = 0.2 * torch.rand(batch, 1, 1, 1, generator=generator) - 0.1
    return (images * contrast + brightness).clamp(-1.0, 1.0)


def _to_uint8_levels(images: torch.Tensor) -> torch.Tensor:
    """Clip to [-1, 1] and round to the 256 grey levels a saved image has (straight-through)."""
    return round_straight_through(((images + 1.0) * 127.5).clamp(0, 255)) / 127.5 - 1.0


def train_codec(train_images: np.ndarray, config: FingerprintConfig, seed: int = 0,
                progress: ProgressCallback | None = None, on_log: LogCallback | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[Encoder, Decoder, dict[str, Any]]:
    """Train an encoder/decoder pair on uint8 NHWC images; returns them (eval mode) and the last stats."""
    from facegan.images import to_model

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = to_model(np.array(train_images))  # (N, C, R, R) in [-1, 1], preloaded once
    encoder, decoder = Encoder(config), Decoder(config)
    parameters = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.lr, fused=True)
    # Warm up over 10 % of the steps, then cosine down: the bits lock in early and sharpen late.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    loss_sum = torch.zeros(())
    correct_sum = torch.zeros(())
    count = 0
    started = time.perf_counter()
    stats: dict[str, Any] = {}
    for step in range(1, config.steps + 1):
        indices = torch.randint(0, len(data), (config.batch_size,), generator=generator)
        images = _augment(data[indices], generator)  # (B, C, R, R)
        bits = torch.randint(0, 2, (config.batch_size, config.bits), generator=generator).float()  # (B, k)
        residual = encoder.residual(images, bits)  # (B, C, R, R)
        if config.min_strength < 1.0:
            # Full strength for the first half of the batch, a random fraction of it for the second (see min_strength).
            strength = torch.ones(config.batch_size, 1, 1, 1)
            weak = config.batch_size // 2
            strength[weak:] = config.min_strength + (1.0 - config.min_strength) * torch.rand(config.batch_size - weak, 1, 1, 1, generator=generator)
            residual = strength * residual
        encoded = _to_uint8_levels(images + residual)
        logits = decoder(random_distortion(encoded, generator))  # (B, k)
        bits_loss = F.binary_cross_entropy_with_logits(logits, bits)
        loss = bits_loss
        if config.null_weight > 0:
            # Half a batch of unmarked images, distorted the same way: their logits are pulled to 0 (target 1/2).
            unmarked = _to_uint8_levels(images[: max(1, config.batch_size // 2)])
            null_logits = decoder(random_distortion(unmarked, generator))
            loss = loss + config.null_weight * F.binary_cross_entropy_with_logits(null_logits, torch.full_like(null_logits, 0.5))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        # Accumulate on the tensor side; .item() only at log time.
        loss_sum += bits_loss.detach()
        correct_sum += ((logits.detach() > 0).float() == bits).float().mean()
        count += 1
        if step % config.log_every == 0 or step == config.steps:
            stats = {"step": step, "loss": float(loss_sum) / count, "bit_accuracy": float(correct_sum) / count,
                     "seconds": time.perf_counter() - started, "lr": schedule.get_last_lr()[0]}
            loss_sum.zero_(), correct_sum.zero_()
            count = 0
            if on_log is not None:
                on_log(dict(stats))
        if progress is not None:
            progress(step, config.steps)
        if should_stop is not None and step % config.log_every == 0 and should_stop():
            raise FaceganError("fingerprint training was stopped before the end; nothing was written (run it again)")
    return encoder.eval().requires_grad_(False), decoder.eval().requires_grad_(False), stats


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise FaceganError(f"--seed must be a whole number from 0 to 2**63 - 1, got {seed!r:.40}")
    return int(seed)


def train_fingerprint(dataset: Any, out: str | os.PathLike, config: FingerprintConfig | None = None, *,
                      key: np.ndarray | str | None = None, seed: int = 0, progress: ProgressCallback | None = None,
                      on_log: LogCallback | None = None, should_stop: Callable[[], bool] | None = None) -> Fingerprint:
    """Train a codec on `dataset` (a FaceDataset or its folder) and write the fingerprint folder `out` atomically.

    `config.resolution`/`channels` are taken from the dataset. The saved fingerprint carries ONE key:
    `key` (k bits as uint8 0/1, or hex) or, when None, k random bits drawn from `seed`. A fraction
    `config.holdout` of the images is kept out of training and used to measure the bit accuracy
    (clean and after Pillow's JPEG at quality 75) and the PSNR written in fingerprint.json.
    The folder is staged beside `out` and renamed into place: a killed run leaves nothing half-written.
    """
    from facegan.data.dataset import FaceDataset
    from facegan.version import __version__

    config = replace(config) if config is not None else FingerprintConfig()
    seed = _check_seed(seed)
    if not isinstance(dataset, FaceDataset):
        dataset = FaceDataset.load(dataset)
    config = replace(config, resolution=dataset.resolution, channels=dataset.channels)
    try:
        config.validate()
    except FaceganError as error:
        raise FaceganError(f"{error} (dataset {dataset.path or '(in memory)'} holds {dataset.resolution}x{dataset.resolution} images)") from None
    folder = check_fingerprint_output(out)
    bits = key_from_seed(config.bits, seed) if key is None else parse_key(key, config.bits)
    images = np.asarray(dataset.images)
    num_holdout = int(round(config.holdout * len(images))) if config.holdout > 0 else 0
    if len(images) - num_holdout < 2:
        raise FaceganError(f"the dataset has {len(images)} images; a fingerprint needs at least 2 to train on (after the {config.holdout:g} holdout)")
    order = np.random.default_rng(seed).permutation(len(images))
    train_images, holdout_images = images[np.sort(order[num_holdout:])], images[np.sort(order[:num_holdout])]

    started = time.perf_counter()
    encoder, decoder, stats = train_codec(train_images, config, seed, progress, on_log, should_stop)
    seconds = time.perf_counter() - started
    fingerprint = Fingerprint(encoder, decoder, bits, config, metadata={})
    measured_on = "holdout" if num_holdout else "train"
    measured = measure(fingerprint, holdout_images if num_holdout else train_images)
    null = null_statistics(fingerprint, images)  # every image of the dataset as it is: none of them was encoded
    encoder_bytes, decoder_bytes = weights_bytes(encoder, bits), weights_bytes(decoder)
    fingerprint_id = fingerprint_digest(encoder, decoder, bits)
    metadata = {
        "format": FORMAT_MARKER,
        "format_version": FORMAT_VERSION,
        "facegan_version": __version__,
        "id": fingerprint_id,
        "bits": config.bits,
        "key": key_to_hex(bits),
        "resolution": config.resolution,
        "channels": config.channels,
        "config": asdict(config),
        "seed": seed,
        "steps": config.steps,
        "seconds": round(seconds, 1),
        "dataset": {"hash": dataset.content_hash, "path": None if dataset.path is None else str(dataset.path),
                    "num_images": len(images), "num_train": len(train_images), "num_holdout": num_holdout},
        "measured": {"on": measured_on, "num_images": int(len(holdout_images) if num_holdout else len(train_images)), **measured},
        "null": null,
        "final_training": stats,
    }
    _write_folder(folder, {ENCODER_NAME: encoder_bytes, DECODER_NAME: decoder_bytes}, metadata)
    return load_fingerprint(folder)


def _write_folder(folder: Path, weights: dict[str, bytes], metadata: dict[str, Any]) -> None:
    """Stage the three files in a hidden sibling folder, then rename it to `folder` (never over other files)."""
    import json

    from facegan.files import FOLDER_MODE, remove_stale_siblings, staging_sibling

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FaceganError(f"cannot create {folder.parent}: {error.strerror}") from None
    remove_stale_siblings(folder, "tmp")  # what a killed earlier write of this folder left
    staging = staging_sibling(folder, "tmp")
    try:
        os.mkdir(staging, FOLDER_MODE)
        for name, payload in weights.items():
            with open(staging / name, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        (staging / CONFIG_NAME).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        if folder.exists():  # an empty folder (checked before training): replace it, still atomically
            if any(folder.iterdir()):
                raise FaceganError(f"{folder} was filled by someone else while the fingerprint trained; nothing was written, choose another folder")
            os.rmdir(folder)
        os.rename(staging, folder)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise FaceganError(f"cannot write the fingerprint {folder}: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
