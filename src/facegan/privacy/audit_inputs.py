"""Inputs of the privacy audit that need more than a dataset: folders of generated images from any
generator, and a run's discriminator with batch-independent scores."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facegan.errors import FaceganError

__all__ = ["check_samples_folder", "load_sample_images", "load_run_discriminator", "discriminator_scores"]


def check_samples_folder(folder: str | os.PathLike) -> Path:
    """The --samples folder, or a one-line FaceganError when it is missing or a file."""
    folder = Path(folder)
    if not folder.exists():
        raise FaceganError(f"samples folder not found: {folder} (write images there, e.g. `facegan sample RUN --seeds 0-1999 --out-dir {folder}`)")
    if not folder.is_dir():
        raise FaceganError(f"--samples must be a folder of images, but {folder} is a file")
    return folder


def load_sample_images(folder: str | os.PathLike, size: int, channels: int, max_images: int | None = None) -> tuple[np.ndarray, Counter[str]]:
    """Every image under `folder` (sorted by path) as uint8 (N, size, size, channels), and skip counts by reason.

    Files come through `facegan.data.decode` (the one image reader); each is centre-cropped to a square
    and resized to the training set's size, then converted to its channels, so faces from any generator
    can be compared pixel for pixel.
    """
    from facegan.images import center_crop, convert_channels
    from facegan.data.decode import SkippedImage, decode_image
    from facegan.data.sources import IMAGE_EXTENSIONS, find_image_files

    folder = check_samples_folder(folder)
    files = find_image_files(folder)
    if not files:
        raise FaceganError(f"no images in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)}); generate some first, e.g. `facegan sample RUN --seeds 0-1999 --out-dir {folder}`")
    if max_images is not None:
        files = files[:max_images]
    images, skipped = [], Counter()
    for path in files:
        try:
            rgb = decode_image(path)  # (H, W, 3) uint8
        except SkippedImage as skip:
            skipped[skip.reason] += 1
            continue
        images.append(convert_channels(center_crop(rgb, size), channels))
    if not images:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items()))
        raise FaceganError(f"none of the {len(files)} files in {folder} could be read as an image ({reasons})")
    return np.stack(images), skipped


def load_run_discriminator(run_dir: str | os.PathLike) -> nn.Module:
    """The discriminator of a run, from its resume state (`Run.state_path`, read weights-only)."""
    from facegan.models import build_discriminator
    from facegan.run import Run
    from facegan.training.checkpoint import load_state
    from facegan.training.loop import load_run_config

    run_dir = Path(run_dir)
    state_path = Run(run_dir).state_path
    if not state_path.is_file():
        raise FaceganError(f"no {state_path.relative_to(run_dir)} in {run_dir}: the discriminator lives only in the resume state")
    config = load_run_config(run_dir)
    state = load_state(state_path)
    weights = state.get("D")
    if not isinstance(weights, dict):
        raise FaceganError(f"{state_path} holds no discriminator weights (key 'D')")
    # Tolerate wrappers that prefix parameter names (Opacus' GradSampleModule, torch.compile).
    weights = {key.removeprefix("_module.").removeprefix("_orig_mod."): value for key, value in weights.items()}
    discriminator = build_discriminator(config.model)
    try:
        discriminator.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise FaceganError(f"the discriminator in {state_path} does not match the run's config ({str(error).splitlines()[0]})") from None
    return discriminator.eval().requires_grad_(False)


@torch.inference_mode()
def discriminator_scores(discriminator: nn.Module, images: np.ndarray, batch_size: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """D's logit for each uint8 NHWC face (N,), in eval mode; a face's score depends on that face alone.

    Minibatch-stddev layers would mix the faces of a batch (a member's score would depend on which
    non-members share its batch), so they are set to groups of one while scoring, then restored.
    """
    from facegan.images import to_model
    from facegan.models.stable import MinibatchStd

    device = torch.device(device)
    group_sizes = {module: module.group_size for module in discriminator.modules() if isinstance(module, MinibatchStd)}
    was_training = discriminator.training
    discriminator.eval().to(device)
    try:
        for module in group_sizes:
            module.group_size = 1
        # np.array copies: a read-only memmap slice would make torch warn about non-writable memory.
        scores = [discriminator(to_model(np.array(images[start : start + batch_size]), device)).float().reshape(-1).cpu()
                  for start in range(0, len(images), batch_size)]
    finally:
        for module, size in group_sizes.items():
            module.group_size = size
        discriminator.train(was_training)
    return torch.cat(scores).numpy().astype(np.float64)


