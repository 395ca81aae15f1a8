"""A tiny identity-labelled dataset and LFW-format pairs for verification tests (CPU, seeded, seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_IDENTITIES = 12
PER_IDENTITY = 6


def identity_faces(size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, size, size, 1), identity (N,)): each identity one real LFW face, jittered per image (shift, light, noise)."""
    from PIL import Image
    from skimage import data

    generator = np.random.default_rng(seed)
    bases = (data.lfw_subset()[:NUM_IDENTITIES] * 255).round().astype(np.uint8)
    images, identity = [], []
    for person, base in enumerate(bases):
        face = np.asarray(Image.fromarray(base).resize((size, size), Image.BICUBIC), dtype=np.float32)
        for _ in range(PER_IDENTITY):
            shifted = np.roll(face, tuple(generator.integers(-1, 2, size=2)), axis=(0, 1))
            lit = shifted * generator.uniform(0.8, 1.2) + generator.uniform(-15, 15) + generator.normal(0, 6, face.shape)
            images.append(np.clip(lit, 0, 255).round().astype(np.uint8))
            identity.append(person)
    return np.stack(images)[..., None], np.array(identity, dtype=np.int64)


def save_identity_dataset(path: Path, with_paths: bool = False) -> Path:
    from facegan.data.dataset import FaceDataset

    images, identity = identity_faces()
    names = [f"p{person:02d}" for person in range(NUM_IDENTITIES)]
    manifest = {"source": "test:identities", "source_kind": "folder", "identity_names": names}
    if with_paths:  # LFW-style file names: Name/Name_0001.png
        counts: dict[int, int] = {}
        paths = []
        for person in identity:
            counts[int(person)] = counts.get(int(person), 0) + 1
            paths.append(f"{names[person]}/{names[person]}_{counts[int(person)]:04d}.png")
        manifest["paths"] = paths
    FaceDataset(images, manifest, identity=identity).save(path)
    return path


def write_pairs(path: Path, num_folds: int = 3, per_fold: int = 4, seed: int = 0) -> Path:
    """LFW view-2 pairs.txt over the test identities: per fold `per_fold` same then `per_fold` different pairs."""
    generator = np.random.default_rng(seed)
    lines = [f"{num_folds}\t{per_fold}"]
    people = np.arange(NUM_IDENTITIES).reshape(num_folds, -1)  # identities of different folds disjoint, like LFW
    for fold in range(num_folds):
        members = people[fold]
        for _ in range(per_fold):
            person = generator.choice(members)
            first, second = generator.choice(PER_IDENTITY, size=2, replace=False) + 1
            lines.append(f"p{person:02d}\t{first}\t{second}")
        for _ in range(per_fold):
            one, other = generator.choice(members, size=2, replace=False)
            lines.append(f"p{one:02d}\t{generator.integers(1, PER_IDENTITY + 1)}\tp{other:02d}\t{generator.integers(1, PER_IDENTITY + 1)}")
    path.write_text("\n".join(lines) + "\n")
    return path
