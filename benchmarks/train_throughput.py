"""Training throughput: facegan's trainer vs a plain reference loop, same JPEG folder, one run.

Reference: the pytorch/examples DCGAN recipe — an ImageFolder-style dataset that opens and decodes
every JPEG with PIL on every epoch (resize, centre crop, to-tensor, normalise), a DataLoader with 2
workers, fp32, contiguous tensors, the default Adam, the pytorch/examples update order.
facegan: `facegan data prepare` once (decoded and cached as uint8), then `facegan.train` with the
seed-dcgan preset (same architecture, batch and image size): preloaded uint8 batches, channels_last,
fused Adam, bf16 autocast where the CPU supports it natively, and a dropout whose mask is drawn with
torch.rand (vectorised) instead of bernoulli_ (the same distribution; the reference keeps nn.Dropout).

Both see the same number of images; "end to end" for facegan includes its one-off preparation.

    .venv/bin/python benchmarks/train_throughput.py [--kimg 2.0] [--size 64] [--batch 64]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_jpeg_folder(folder: Path, size: int, num_images: int) -> None:
    """Real faces (the built-in LFW crops, flipped/shifted variants) as RGB JPEG files of `size` px."""
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(num_images):
        face = faces[index % 100]
        if (index // 100) % 2:
            face = face[:, ::-1]
        rgb = np.repeat(face[:, :, None], 3, axis=2)
        Image.fromarray(rgb).resize((size + 8, size + 8), Image.BICUBIC).save(folder / f"face{index:05d}.jpg", quality=90)


class ReferenceImageFolder(torch.utils.data.Dataset):
    """What torchvision's ImageFolder + Resize + CenterCrop + ToTensor + Normalize do, per item, per epoch."""

    def __init__(self, folder: Path, size: int) -> None:
        self.paths = sorted(folder.glob("*.jpg"))
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = Image.open(self.paths[index]).convert("RGB")
        width, height = image.size
        scale = self.size / min(width, height)
        image = image.resize((max(self.size, round(width * scale)), max(self.size, round(height * scale))), Image.BILINEAR)
        left, top = (image.width - self.size) // 2, (image.height - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)  # ToTensor
        return (tensor - 0.5) / 0.5  # Normalize((0.5,)*3, (0.5,)*3)


def run_reference(folder: Path, size: int, batch_size: int, num_images: int) -> float:
    """The pytorch/examples DCGAN loop with the same architecture; returns wall seconds."""
    from facegan.models import build_discriminator, build_generator
    from facegan.training.config import resolve_config

    model = resolve_config("seed-dcgan").model
    model.resolution, model.channels = size, 3
    torch.manual_seed(0)
    generator, discriminator = build_generator(model), build_discriminator(model)
    # The reference uses stock PyTorch layers: swap facegan's faster (equivalent) dropout for nn.Dropout.
    from facegan.models.layers import Dropout

    for index, layer in enumerate(discriminator.features):
        if isinstance(layer, Dropout):
            discriminator.features[index] = torch.nn.Dropout(layer.p)
    criterion = torch.nn.BCEWithLogitsLoss()
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(ReferenceImageFolder(folder, size), batch_size=batch_size, shuffle=True, num_workers=2, drop_last=True)
    seen = 0
    start = time.perf_counter()
    while seen < num_images:
        for real in loader:
            discriminator.zero_grad()
            output = discriminator(real)
            error_real = criterion(output, torch.ones_like(output))
            error_real.backward()
            fake = generator(torch.randn(real.shape[0], model.z_dim))
            output = discriminator(fake.detach())
            error_fake = criterion(output, torch.zeros_like(output))
            error_fake.backward()
            opt_d.step()
            generator.zero_grad()
            output = discriminator(fake)
            criterion(output, torch.ones_like(output)).backward()
            opt_g.step()
            seen += real.shape[0]
            if seen >= num_images:
                break
    return time.perf_counter() - start


def run_facegan(folder: Path, workdir: Path, size: int, batch_size: int, num_images: int) -> tuple[float, float]:
    """facegan: prepare once, then train; returns (preparation seconds, training seconds)."""
    from facegan.data.pipeline import prepare_dataset
    from facegan.training.config import resolve_config
    from facegan import train

    start = time.perf_counter()
    prepare_dataset(str(folder), workdir / "data", size=size, align="center", progress=False)
    prepare_seconds = time.perf_counter() - start
    config = resolve_config("seed-dcgan", {
        "data": str(workdir / "data"), "out": str(workdir / "run"), "kimg": num_images / 1000, "batch_size": batch_size,
        "schedule": {"log_kimg": 1000, "snapshot_kimg": 1000, "checkpoint_kimg": 1000, "num_snapshot_images": 16},
        "runtime": {"tensorboard": False},
    })
    start = time.perf_counter()
    if train(config, progress=False).interrupted:
        raise SystemExit("error: the timed training was interrupted; its time would not be a measurement")
    return prepare_seconds, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kimg", type=float, default=2.0, help="images each side trains on, in thousands")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--files", type=int, default=512, help="JPEG files in the folder")
    args = parser.parse_args()
    num_images = int(args.kimg * 1000)
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        make_jpeg_folder(workdir / "jpegs", args.size, args.files)
        reference_seconds = run_reference(workdir / "jpegs", args.size, args.batch, num_images)
        prepare_seconds, train_seconds = run_facegan(workdir / "jpegs", workdir, args.size, args.batch, num_images)
    reference_rate = num_images / reference_seconds
    train_rate = num_images / train_seconds
    end_to_end_rate = num_images / (train_seconds + prepare_seconds)
    print(f"\n{args.size}x{args.size} RGB, batch {args.batch}, {num_images} images each, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'':34s}{'img/s':>8s}{'vs reference':>14s}")
    print(f"{'reference (pytorch/examples loop)':34s}{reference_rate:8.1f}{1.0:13.2f}x")
    print(f"{'facegan training':34s}{train_rate:8.1f}{train_rate / reference_rate:13.2f}x")
    print(f"{'facegan end to end (+ prepare)':34s}{end_to_end_rate:8.1f}{end_to_end_rate / reference_rate:13.2f}x")
    print(f"(facegan preparation of {args.files} JPEGs: {prepare_seconds:.1f} s, once)")


if __name__ == "__main__":
    main()
