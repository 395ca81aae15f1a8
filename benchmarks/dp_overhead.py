"""Cost of differential privacy: DP training steps vs ordinary steps of the same model, in one run.

Both trainers use the `dp` preset (GroupNorm discriminator, no spectral norm, no minibatch std, no R1)
on the built-in LFW faces at 32x32 gray, batch 32, same seed and runtime settings; the only difference
is `privacy.noise_multiplier` (DP-SGD: Poisson batches, per-face gradients, clipping, noise,
accounting). Steps are timed in alternating blocks so that load from other processes hits both alike.
A second table compares the per-face gradient engines on the real batch alone: torch.func
(vmap over grad, what facegan uses) and Opacus's GradSampleModule hooks.

    .venv/bin/python benchmarks/dp_overhead.py [--steps 30] [--block 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def builtin_faces(size: int) -> np.ndarray:
    """The 100 built-in LFW faces as uint8 (N, size, size, 1), as tests/conftest.py makes them."""
    from PIL import Image
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(face).resize((size, size), Image.BICUBIC)) for face in faces])[..., None]


def build(private: bool, dataset, batch_size: int):
    from facegan.privacy import make_private
    from facegan.training.config import resolve_config
    from facegan.training.distributed import DistributedContext
    from facegan.training.loop import _prepare_model_config, make_trainer

    updates = {"data": "in-memory", "out": "unused", "batch_size": batch_size, "runtime": {"tensorboard": False}}
    if private:
        updates["privacy"] = {"noise_multiplier": 1.0, "accountant": "rdp"}
    config = resolve_config("dp", updates)
    config.validate()
    config = _prepare_model_config(config, dataset)
    return make_trainer(config, dataset, torch.device("cpu"), DistributedContext(), setup_trainer=make_private if private else None)


def time_steps(trainer, num_steps: int) -> list[float]:
    seconds = []
    for _ in range(num_steps):
        start = time.perf_counter()
        trainer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def time_grad_engines(trainer, repeats: int) -> dict[str, float]:
    """Median seconds for the per-face gradients of one real batch, with each engine."""
    import copy
    import warnings

    from opacus import GradSampleModule

    from facegan.privacy.dp import per_sample_gradients
    from facegan.training.losses import get_loss

    real = trainer.augment(trainer.images[:32].permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous(memory_format=trainer.memory_format))
    hooked = GradSampleModule(copy.deepcopy(trainer.D))

    def vmap_engine() -> None:
        with trainer.autocast():
            per_sample_gradients(trainer.D, real, "logistic")

    def hooks_engine() -> None:
        hooked.zero_grad(set_to_none=True)
        with trainer.autocast(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "full backward hook ... no inputs require gradients"
            get_loss("logistic").real_sample_losses(hooked(real).float()).sum().backward()
        for param in hooked.parameters():
            param.grad_sample = None

    results = {}
    for name, engine in (("torch.func vmap", vmap_engine), ("opacus hooks", hooks_engine)):
        engine()  # warm-up
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            engine()
            samples.append(time.perf_counter() - start)
        results[name] = statistics.median(samples)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per trainer")
    parser.add_argument("--block", type=int, default=5, help="steps per alternating block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per trainer first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    from facegan.data.dataset import FaceDataset

    torch.set_num_threads(args.threads)
    dataset = FaceDataset(builtin_faces(args.size), {"source": "builtin:lfw-subset", "source_kind": "builtin"})
    trainers = {"plain": build(False, dataset, args.batch), "dp": build(True, dataset, args.batch)}
    params = sum(p.numel() for p in trainers["plain"].D.parameters())
    print(f"dp preset, {args.size}x{args.size} gray, batch {args.batch}, D {params / 1e6:.2f} M params, "
          f"{torch.get_num_threads()} threads, bf16 autocast {trainers['plain'].bf16}")
    for trainer in trainers.values():
        time_steps(trainer, args.warmup)
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    while len(seconds["dp"]) < args.steps:
        for name, trainer in trainers.items():
            seconds[name] += time_steps(trainer, min(args.block, args.steps - len(seconds[name])))
    plain_ms = 1000 * statistics.median(seconds["plain"])
    dp_ms = 1000 * statistics.median(seconds["dp"])
    print(f"non-DP step: {plain_ms:8.1f} ms (median of {len(seconds['plain'])}; mean {1000 * statistics.mean(seconds['plain']):.1f})")
    print(f"DP step:     {dp_ms:8.1f} ms (median of {len(seconds['dp'])}; mean {1000 * statistics.mean(seconds['dp']):.1f})")
    print(f"overhead:    {dp_ms / plain_ms:8.2f}x (target <= 2x)")
    print("per-face gradients of one real batch of 32:")
    for name, value in time_grad_engines(trainers["dp"], repeats=max(3, args.steps // 3)).items():
        print(f"  {name:16s} {1000 * value:8.1f} ms")


if __name__ == "__main__":
    main()
