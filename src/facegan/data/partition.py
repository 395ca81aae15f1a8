"""Split one prepared dataset into N client datasets for federated training (`facegan data partition`).

Three ways to split, each writing N ordinary prepared datasets plus a manifest, `partitions.json`:

- `iid`: images shuffled and dealt out in equal shares;
- `identity`: every person on exactly one client (identities dealt out so clients get similar image counts);
- `dirichlet`: non-IID, as in Hsu et al. 2019: for each label value (an identity, or an attribute's 0/1),
  client shares are drawn from Dirichlet(alpha); small alpha = strongly skewed clients.

Clients never share an image (the manifest records overlap = 0, counted from content hashes).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from facegan.data.dataset import FaceDataset, absolute_path, check_output_folder, paths_overlap
from facegan.errors import FaceganError
from facegan.files import write_bytes_atomic

PARTITIONS_NAME = "partitions.json"
PARTITIONS_FORMAT = "facegan-partitions"
PARTITIONS_VERSION = 1
METHODS = ("iid", "identity", "dirichlet")
MAX_CLIENTS = 10_000


def client_name(index: int) -> str:
    return f"client-{index:03d}"


def _check_options(clients: Any, by: Any, alpha: Any, seed: Any) -> tuple[int, str, float, int]:
    if isinstance(clients, bool) or not isinstance(clients, numbers.Integral) or not 1 <= clients <= MAX_CLIENTS:
        raise FaceganError(f"--clients must be a whole number from 1 to {MAX_CLIENTS}, got {clients!r}")
    if by not in METHODS:
        raise FaceganError(f"--by must be one of {', '.join(METHODS)}, got {by!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or not 1e-3 <= alpha <= 1e6:
        raise FaceganError(f"--alpha must be a finite number from 0.001 to 1e6 (small = more skewed), got {alpha!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise FaceganError(f"--seed must be a whole number from 0 to 2^32-1, got {seed!r}")
    return int(clients), str(by), float(alpha), int(seed)


def _image_hashes(images: np.ndarray) -> list[str]:
    return [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]


def _labels_for(dataset: FaceDataset, by: str, attribute: str | None) -> np.ndarray:
    """One integer label per image for identity/dirichlet splits (identity, or an attribute's value)."""
    if attribute is not None:
        names = dataset.attribute_names
        if dataset.attributes is None or attribute not in names:
            known = ", ".join(names[:8]) or "none"
            raise FaceganError(f"--attribute {attribute!r} is not in this dataset (its attributes: {known})")
        return (np.asarray(dataset.attributes)[:, names.index(attribute)] > 0).astype(np.int64)
    if not dataset.has_identities:
        raise FaceganError(f"--by {by} needs identity labels (or --attribute NAME for dirichlet), and this dataset has none; "
                           "use --by iid")
    identity = np.asarray(dataset.identity, dtype=np.int64)
    if np.any(identity < 0):
        raise FaceganError(f"--by {by}: {int(np.sum(identity < 0))} images have no identity label; "
                           "a person could straddle clients, so label them or use --by iid")
    return identity


def assign_clients(dataset: FaceDataset, clients: int, by: str = "iid", alpha: float = 0.5, attribute: str | None = None,
                   seed: int = 0) -> np.ndarray:
    """The client index of every image (int64 array of len(dataset)); every client gets at least one image."""
    clients, by, alpha, seed = _check_options(clients, by, alpha, seed)
    if attribute is not None and by != "dirichlet":
        raise FaceganError("--attribute applies to --by dirichlet only")
    num = len(dataset)
    if clients > num:
        raise FaceganError(f"--clients {clients} is more than the dataset's {num} images; every client needs at least one")
    rng = np.random.default_rng(seed)
    assignment = np.full(num, -1, dtype=np.int64)
    if by == "iid":
        order = rng.permutation(num)
        for client, share in enumerate(np.array_split(order, clients)):
            assignment[share] = client
    elif by == "identity":
        labels = _labels_for(dataset, by, None)
        identities, counts = np.unique(labels, return_counts=True)
        if clients > len(identities):
            raise FaceganError(f"--clients {clients} is more than the dataset's {len(identities)} identities; "
                               "every client needs at least one person")
        # Largest identities first, each to the client holding the fewest images (greedy balancing).
        order = rng.permutation(len(identities))
        order = order[np.argsort(-counts[order], kind="stable")]
        totals = np.zeros(clients, dtype=np.int64)
        for index in order:
            client = int(np.argmin(totals))
            assignment[labels == identities[index]] = client
            totals[client] += counts[index]
    else:
        labels = _labels_for(dataset, by, attribute)
        for value in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == value))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for client, part in enumerate(np.split(members, cuts)):
                assignment[part] = client
        # Dirichlet draws can leave a client empty: give it one image from the largest client.
        for client in range(clients):
            if not np.any(assignment == client):
                largest = int(np.argmax(np.bincount(assignment, minlength=clients)))
                donor = rng.choice(np.flatnonzero(assignment == largest))
                assignment[donor] = client
    return assignment


def partition_dataset(dataset: str | os.PathLike | FaceDataset, out: str | os.PathLike, clients: int, by: str = "iid",
                      alpha: float = 0.5, attribute: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Write `clients` prepared datasets OUT/client-000 ... and OUT/partitions.json; returns the manifest."""
    source = dataset if isinstance(dataset, FaceDataset) else FaceDataset.load(dataset)
    out_dir = _check_out(out, source)
    assignment = assign_clients(source, clients, by=by, alpha=alpha, attribute=attribute, seed=seed)
    hashes = _image_hashes(source.images)
    seen: dict[str, int] = {}
    overlap = 0
    for index, digest in enumerate(hashes):
        owner = seen.setdefault(digest, int(assignment[index]))
        overlap += owner != assignment[index]
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for client in range(int(clients)):
        indices = np.flatnonzero(assignment == client)
        part = source.subset(indices, partition_of={"by": by, "client": client, "clients": int(clients), "seed": int(seed)})
        path = out_dir / client_name(client)
        check_output_folder(path)
        part.save(path)
        identities = int(len(np.unique(part.identity[part.identity >= 0]))) if part.identity is not None else 0
        entries.append({"name": client_name(client), "path": client_name(client), "size": int(len(indices)),
                        "identities": identities, "hash": part.content_hash})
    manifest = {"format": PARTITIONS_FORMAT, "version": PARTITIONS_VERSION, "source": str(source.path or "(in memory)"),
                "source_hash": source.content_hash, "by": by, "alpha": float(alpha) if by == "dirichlet" else None,
                "attribute": attribute, "seed": int(seed), "clients": entries,
                "overlap": int(overlap), "duplicate_images_in_source": int(len(hashes) - len(seen))}
    write_bytes_atomic(out_dir / PARTITIONS_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _check_out(out: str | os.PathLike, source: FaceDataset) -> Path:
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise FaceganError(f"--out must be a folder path, got {out!r}")
    folder = absolute_path(out)
    if folder.is_symlink():
        raise FaceganError(f"--out {out} is a symbolic link; give the real folder path")
    if source.path is not None and paths_overlap(folder, source.path):
        raise FaceganError(f"--out {out} is the input dataset or inside/around it; give a separate folder")
    if folder.exists():
        if not folder.is_dir():
            raise FaceganError(f"--out {out} is a file, not a folder")
        entries = set(os.listdir(folder))
        ours = entries <= ({PARTITIONS_NAME} | {name for name in entries if name.startswith("client-")})
        if entries and not ((folder / PARTITIONS_NAME).is_file() and ours):
            raise FaceganError(f"--out {out} exists and is not a facegan partition folder; choose a new or empty folder")
        for name in entries - {PARTITIONS_NAME}:  # an earlier partition's clients: each is replaced whole
            check_output_folder(folder / name)
        for name in entries - {PARTITIONS_NAME}:
            shutil.rmtree(folder / name)
    return folder


def load_partitions(folder: str | os.PathLike) -> list[Path]:
    """The absolute client dataset folders listed in FOLDER/partitions.json (checked to exist)."""
    if not isinstance(folder, (str, os.PathLike)) or not os.fspath(folder):
        raise FaceganError(f"--partitions must be a folder path, got {folder!r}")
    root = absolute_path(folder)
    path = root / PARTITIONS_NAME
    if not path.is_file():
        raise FaceganError(f"{folder} is not a partition folder (no {PARTITIONS_NAME}); write one with `facegan data partition`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FaceganError(f"{path} is unreadable or not JSON ({error}); partition again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PARTITIONS_FORMAT or not isinstance(manifest.get("clients"), list):
        raise FaceganError(f"{path} is not a facegan partitions manifest; partition again")
    paths = []
    for entry in manifest["clients"]:
        name = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or os.sep in name or name in (".", ".."):
            raise FaceganError(f"{path} lists a bad client path {name!r}; partition again")
        client = root / name
        if not (client / "manifest.json").is_file():
            raise FaceganError(f"client dataset {client} is missing; partition again")
        paths.append(client)
    if not paths:
        raise FaceganError(f"{path} lists no clients; partition again")
    return paths
