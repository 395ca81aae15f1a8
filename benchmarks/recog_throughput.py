"""Recogniser throughput: facegan's recogniser training vs a plain reference loop on the same image folder, one run,
and dlib embedding throughput through facegan vs dlib's own API.

Training. Reference: what a typical PyTorch face-recognition script does — an ImageFolder-style
dataset that opens and decodes every PNG with PIL on every epoch (RandomHorizontalFlip, ToTensor,
Normalize), a DataLoader with 2 workers, fp32, contiguous tensors, the default (foreach) AdamW, and
`loss.item()` logged every step. It trains the same backbone (`EmbeddingNet`, with `torch.nn.PReLU` as
InsightFace's iresnet.py writes it) and head (ArcFace) at the same batch and image size and seed. facegan: `data prepare --layout identity-folders` once (decoded and
cached as uint8), then `train_recogniser`: preloaded uint8 batches gathered, flipped and shifted in
one op, channels_last, fused AdamW, bf16 autocast on avx512_bf16 CPUs (its default `runtime.amp`), PReLU as
relu(x) - a*relu(-x) (the same function; torch's PReLU backward is slow on CPU), no host sync between log ticks.
Embedding. facegan's `dlib-resnet` recogniser (the PyTorch port, batched) vs
`dlib.face_recognition_model_v1.compute_face_descriptor` on the same 150x150 chips.

    PYTHONPATH=src .venv/bin/python benchmarks/recog_throughput.py [--steps 20] [--size 32] [--batch 64] [--repeats 5]

Prints one table and a `ratio = X` line per comparison (facegan / reference).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def identity_images(identities: int, per_identity: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """builtin:rendered-faces: identity-labelled, drawn on the spot."""
    from facegan.data.rendered import render_faces

    images, identity, _, _ = render_faces(identities, per_identity, size=size, seed=0)
    return images, identity


def write_identity_folder(folder: Path, images: np.ndarray, identity: np.ndarray) -> None:
    """SOURCE/<identity>/<n>.png, the layout InsightFace users convert from."""
    for index, (image, person) in enumerate(zip(images, identity)):
        (folder / f"p{person:04d}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"p{person:04d}" / f"{index:06d}.png")


def prepare(folder: Path, out: Path, size: int) -> float:
    """facegan's one-off preparation of the folder; returns seconds."""
    from facegan.data.pipeline import prepare_dataset

    start = time.perf_counter()
    prepare_dataset(str(folder), out, size=size, align="center", progress=False, layout="identity-folders")
    return time.perf_counter() - start


class ReferenceImageFolder(torch.utils.data.Dataset):
    """torchvision's ImageFolder + RandomHorizontalFlip + ToTensor + Normalize, per item, per epoch."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(folder.glob("*/*.png"))
        names = sorted({path.parent.name for path in self.paths})
        self.labels = [names.index(path.parent.name) for path in self.paths]
        self.num_classes = len(names)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.open(self.paths[index]).convert("RGB")
        if torch.rand(()) < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)
        return (tensor - 0.5) / 0.5, self.labels[index]


def plain_prelu(net: torch.nn.Module) -> torch.nn.Module:
    """The same network with every activation a plain torch.nn.PReLU (same weights): what a typical script builds."""
    from facegan.recognition.backbone import PReLU

    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, PReLU):
                plain = torch.nn.PReLU(child.num_parameters)
                plain.weight = child.weight
                setattr(module, name, plain)
    return net


def run_reference(folder: Path, size: int, batch_size: int, steps: int, warmup: int) -> float:
    """The plain loop; returns images per second over `steps` steps after `warmup` steps."""
    import torch.nn.functional as F

    from facegan.recognition.backbone import EmbeddingNet
    from facegan.recognition.heads import MarginHead

    dataset = ReferenceImageFolder(folder)
    torch.manual_seed(0)
    net, head = plain_prelu(EmbeddingNet(size, 3, 128)), MarginHead(128, dataset.num_classes, "arcface")
    optimizer = torch.optim.AdamW([*net.parameters(), *head.parameters()], lr=2e-3, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2, drop_last=True,
                                         persistent_workers=True)
    done, start = 0, None
    while done < warmup + steps:
        for images, labels in loader:
            if done == warmup:
                start = time.perf_counter()
            loss = F.cross_entropy(head(net(images), labels), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            _ = loss.item()  # the per-step log line of a typical script
            done += 1
            if done >= warmup + steps:
                break
    return steps * batch_size / (time.perf_counter() - start)


def run_facegan(data: Path, out: Path, batch_size: int, steps: int, warmup: int) -> float:
    """train_recogniser for warmup + steps steps; images per second of the steps after the warm-up (from stats.jsonl)."""
    from facegan.config import from_dict
    from facegan.recognition.config import RecogConfig
    from facegan.recognition.training import train_recogniser
    from facegan.run import Run

    config = from_dict(RecogConfig, {
        "data": [str(data)], "out": str(out), "steps": warmup + steps, "batch_size": batch_size, "calibration_images": 64,
        "runtime": {"tensorboard": False}, "schedule": {"log_steps": warmup, "checkpoint_steps": 10**6},
    })
    train_recogniser(config)
    lines = {line["step"]: line for line in Run(out).read_stats()}
    # Training time between the end of the warm-up and the last step: no setup, checkpoint or export in it.
    return steps * batch_size / (lines[warmup + steps]["time_s"] - lines[warmup]["time_s"])


def dlib_embedding(num_chips: int) -> tuple[float, float, float]:
    """(facegan img/s, dlib img/s, max |difference|) on the same 150x150 chips."""
    import dlib

    from facegan.faces.align import dlib_model_path
    from facegan.faces.recognisers import get_recogniser

    images, _ = identity_images(max(2, num_chips // 4), 4, 150)
    chips = np.ascontiguousarray(images[:num_chips])
    recogniser = get_recogniser("dlib-resnet")
    recogniser.embed(chips[:2])
    start = time.perf_counter()
    ours = recogniser.embed(chips)
    ours_rate = len(chips) / (time.perf_counter() - start)
    model = dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    model.compute_face_descriptor(chips[0])
    start = time.perf_counter()
    theirs = np.array([np.array(descriptor) for descriptor in model.compute_face_descriptor(list(chips))], dtype=np.float32)
    dlib_rate = len(chips) / (time.perf_counter() - start)
    return ours_rate, dlib_rate, float(np.abs(ours - theirs).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per side (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (at least 1)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="alternate the two sides this many times; the median is reported")
    parser.add_argument("--chips", type=int, default=32, help="150x150 chips for the dlib embedding comparison (0 = skip)")
    args = parser.parse_args()
    args.warmup = max(1, args.warmup)
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        images, identity = identity_images(args.identities, args.per_identity, args.size)
        write_identity_folder(workdir / "faces", images, identity)
        prepare_seconds = prepare(workdir / "faces", workdir / "data", args.size)
        # Alternated, median of each: on a shared machine the load changes from minute to minute.
        reference_rates, facegan_rates = [], []
        for repeat in range(args.repeats):
            reference_rates.append(run_reference(workdir / "faces", args.size, args.batch, args.steps, args.warmup))
            facegan_rates.append(run_facegan(workdir / "data", workdir / f"run{repeat}", args.batch, args.steps, args.warmup))
        reference_rate, facegan_rate = float(np.median(reference_rates)), float(np.median(facegan_rates))
    print(f"\nrecogniser training: {args.size}x{args.size} RGB, {len(images)} PNGs of {args.identities} identities, batch {args.batch}, "
          f"{args.steps} timed steps, median of {args.repeats}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'':40s}{'img/s':>9s}{'vs reference':>14s}")
    print(f"{'reference (PIL every epoch, fp32)':40s}{reference_rate:9.1f}{1.0:13.2f}x")
    print(f"{'facegan recog train':40s}{facegan_rate:9.1f}{facegan_rate / reference_rate:13.2f}x")
    print(f"(facegan preparation of the folder: {prepare_seconds:.1f} s, once; per run img/s: reference "
          f"{', '.join(f'{rate:.1f}' for rate in reference_rates)}, facegan {', '.join(f'{rate:.1f}' for rate in facegan_rates)})")
    print(f"ratio = {facegan_rate / reference_rate:.2f}")
    if args.chips:
        ours, theirs, difference = dlib_embedding(args.chips)
        print(f"\ndlib embedding, {args.chips} chips of 150x150")
        print(f"{'':40s}{'img/s':>9s}{'vs dlib':>14s}")
        print(f"{'dlib compute_face_descriptor':40s}{theirs:9.1f}{1.0:13.2f}x")
        print(f"{'facegan dlib-resnet (PyTorch port)':40s}{ours:9.1f}{ours / theirs:13.2f}x")
        print(f"(largest descriptor difference: {difference:.2e})")
        print(f"ratio = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
