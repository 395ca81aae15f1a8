"""Images named on a command line: image files, folders of them, or prepared dataset folders.

Files are read through `facegan.data.decode` (the one image reader); sizes may differ, nothing is resized.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from facegan.errors import FaceganError


def read_image_inputs(paths: Sequence[str | os.PathLike], channels: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """uint8 (H, W, C) images and a name for each, from files, folders (sorted, recursive) and prepared datasets.

    `channels` (1 or 3) converts decoded files (which come as RGB) with ITU-R 601 luma; a dataset's images
    are returned as stored. A missing path, an empty folder or an unreadable file is one FaceganError.
    """
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.data.decode import SkippedImage, decode_image
    from facegan.data.sources import IMAGE_EXTENSIONS, find_image_files
    from facegan.images import convert_channels

    if not paths:
        raise FaceganError("no images given; name image files, folders of images or prepared datasets")
    images: list[np.ndarray] = []
    names: list[str] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FaceganError(f"no such image, folder or dataset: {given}")
        if path.is_dir() and (path / MANIFEST_NAME).is_file():
            dataset = FaceDataset.load(path)
            if len(dataset) == 0:
                raise FaceganError(f"the dataset {given} holds no images")
            images.extend(np.asarray(dataset.images))
            names.extend(f"{given}[{index}]" for index in range(len(dataset)))
            continue
        files = [path] if path.is_file() else find_image_files(path)
        if not files:
            raise FaceganError(f"{given} holds no images ({', '.join(IMAGE_EXTENSIONS)}) and is not a prepared dataset")
        for file in files:
            try:
                rgb = decode_image(file)  # (H, W, 3) uint8
            except SkippedImage as skipped:
                raise FaceganError(f"cannot read {file} ({skipped}); remove or fix it") from None
            images.append(convert_channels(rgb, channels) if channels is not None else rgb)
            names.append(str(file))
    return images, names
