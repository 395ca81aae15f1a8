"""A tiny identity-labelled dataset for recogniser tests: coloured shapes, varied per image."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def shape_identities(num_identities: int, per_identity: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, size, size, 3) and int64 identities: identity = shape, colour and a second mark; images vary in
    position, scale, brightness, background and noise, so that raw pixels alone do not tell identities apart."""
    rng = np.random.default_rng(seed)
    looks = [(int(rng.integers(3)), rng.integers(40, 256, 3), rng.integers(40, 256, 3), int(rng.integers(4))) for _ in range(num_identities)]
    images, labels = [], []
    for identity, (shape, colour, mark_colour, corner) in enumerate(looks):
        for _ in range(per_identity):
            background = tuple(int(v) for v in rng.integers(0, 90, 3))
            image = Image.new("RGB", (size, size), background)
            draw = ImageDraw.Draw(image)
            centre = size / 2 + rng.uniform(-2, 2, 2)
            radius = size * rng.uniform(0.25, 0.32)
            box = [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]
            fill = tuple(int(v) for v in np.clip(colour * rng.uniform(0.8, 1.2), 0, 255))
            if shape == 0:
                draw.ellipse(box, fill=fill)
            elif shape == 1:
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(centre[0], centre[1] - radius), (centre[0] - radius, centre[1] + radius), (centre[0] + radius, centre[1] + radius)], fill=fill)
            mark = (np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]])[corner] * radius * 0.45 + centre)
            draw.ellipse([mark[0] - 3, mark[1] - 3, mark[0] + 3, mark[1] + 3], fill=tuple(int(v) for v in mark_colour))
            pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 8, (size, size, 3))
            images.append(np.clip(pixels, 0, 255).astype(np.uint8))
            labels.append(identity)
    return np.stack(images), np.array(labels, dtype=np.int64)


def save_identity_dataset(path, num_identities: int, per_identity: int, size: int = 32, seed: int = 0):
    from facegan.data.dataset import FaceDataset

    images, identity = shape_identities(num_identities, per_identity, size, seed)
    names = [f"id{index:03d}" for index in range(num_identities)]
    FaceDataset(images, {"source": "test:shapes", "source_kind": "builtin", "identity_names": names}, identity=identity).save(path)
    return path
