"""Projection (GAN inversion) quality and cost: held-out real faces and the generator's own samples.

Methods, on the same targets:
  projection           facegan.inversion.project with the defaults (several starts, extended latent, identity term)
  projection z-only    the same without the extended latent (z alone)
  projection pixels    the defaults without the identity term (identity_weight 0)
  plain z Adam         the textbook loop: one N(0, I) start, Adam at a constant lr, pixel MSE, as many steps
  nearest sample       the closest (pixel MSE) of --samples random seeds: what the generator gives without optimising
Figures: PSNR, SSIM, dlib face distance to the target (same person below 0.6), share below 0.6, seconds per image.
The identity term minimises this very dlib distance, so for the two rows that use it the face distance is the
optimised quantity, not an independent judge: compare it with `projection pixels`, which never sees dlib.
The last line is `ratio = X`: face distance of `projection` / face distance of `nearest sample` on the held-out
real faces (below 1: projection finds a closer face than sampling does).

    .venv/bin/python benchmarks/projection.py --run runs/lfw32 --holdout data/lfw32-holdout [--count 8] [--steps 300]

Measured 2026-12-02 (default preset, 5 kimg on builtin:lfw-subset 32 px grey, 80 train / 20 held-out faces;
--count 4 --steps 100 --starts 4 --samples 512; wall seconds on 2 cores shared with ~4 other jobs, load ~9):

    targets    method                PSNR dB   SSIM face dist  < 0.6  s/image
    held-out   projection              25.25  0.812     0.134   100%    73.89
    held-out   projection z-only       21.64  0.644     0.271   100%    53.10
    held-out   projection pixels       26.48  0.860     0.479   100%    20.12
    held-out   plain z Adam            21.62  0.644     0.609    50%     7.76
    held-out   nearest sample          15.97  0.330     0.607    50%     1.48
    own        projection              30.94  0.956     0.066   100%    71.13
    own        projection z-only       26.70  0.893     0.129   100%    46.96
    own        projection pixels       31.95  0.964     0.232   100%    21.78
    own        plain z Adam            24.41  0.836     0.390   100%    10.63
    own        nearest sample          17.30  0.448     0.398   100%     1.55
    ratio = 0.220 (face distance, projection / nearest of random samples, held-out real faces)

With the CLI defaults (300 steps, 4 starts) on 8 held-out faces: PSNR 26.55 dB, SSIM 0.867, face distance 0.103,
99.8 s/image wall (52 s CPU).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def plain_z_adam(generator, targets: np.ndarray, steps: int, seed: int, lr: float = 0.1) -> np.ndarray:
    """The reference loop: z from one N(0, I) draw per face, constant-lr Adam on the pixel MSE; uint8 reconstructions."""
    from facegan.images import to_model, to_uint8

    target = to_model(np.array(targets))
    z = torch.from_numpy(np.stack([np.random.default_rng([seed, i]).standard_normal(generator.z_dim) for i in range(len(targets))]).astype(np.float32))
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        loss = (generator.module(z) - target).pow(2).mean(dim=(1, 2, 3)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return to_uint8(generator.module(z)).numpy()


def nearest_sample(generator, targets: np.ndarray, num_samples: int, seed_offset: int) -> np.ndarray:
    """For each target, the closest in pixel MSE of `num_samples` generated images (seeds seed_offset ...)."""
    samples = generator.sample(range(seed_offset, seed_offset + num_samples)).astype(np.float32)
    errors = ((targets[:, None].astype(np.float32) - samples[None]) ** 2).mean(axis=(2, 3, 4))  # (N, S)
    return samples[errors.argmin(axis=1)].astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="GAN run or export")
    parser.add_argument("--holdout", required=True, help="prepared dataset of real faces the GAN did not train on")
    parser.add_argument("--count", type=int, default=8, help="faces of each kind")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=512, help="random seeds for the nearest-sample reference")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from facegan.data.dataset import FaceDataset
    from facegan.faces.dlib_resnet import DlibResNetRecogniser
    from facegan.inversion import measure, project
    from facegan.models.export import load_generator

    generator = load_generator(args.run)
    recogniser = DlibResNetRecogniser()
    real = np.array(FaceDataset.load(args.holdout).images[: args.count])
    # The generator's own samples, from seeds far from the nearest-sample pool.
    own = generator.sample(range(10**6, 10**6 + args.count))
    print(f"generator {args.run}: {generator.resolution} px, {generator.channels} channel(s), z_dim {generator.z_dim}; "
          f"{args.count} faces of each kind, {args.steps} steps, {args.starts} starts, {torch.get_num_threads()} threads")
    header = f"{'targets':<10} {'method':<20} {'PSNR dB':>8} {'SSIM':>6} {'face dist':>9} {'< 0.6':>6} {'s/image':>8}"
    print(header)
    print("-" * len(header))
    distances: dict[tuple[str, str], float] = {}
    for kind, targets in (("held-out", real), ("own", own)):
        methods = {
            "projection": lambda t: project(generator, t, steps=args.steps, starts=args.starts, recogniser=recogniser).images,
            "projection z-only": lambda t: project(generator, t, steps=args.steps, starts=args.starts, extended=False,
                                                   recogniser=recogniser).images,
            "projection pixels": lambda t: project(generator, t, steps=args.steps, starts=args.starts, identity_weight=0.0,
                                                   recogniser=recogniser).images,
            "plain z Adam": lambda t: plain_z_adam(generator, t, args.steps, seed=0),
            "nearest sample": lambda t: nearest_sample(generator, t, args.samples, seed_offset=0),
        }
        for name, method in methods.items():
            began = time.perf_counter()
            images = method(targets)
            seconds = (time.perf_counter() - began) / len(targets)
            psnr, ssim, distance = measure(images, targets, recogniser)
            distances[kind, name] = float(distance.mean())
            print(f"{kind:<10} {name:<20} {psnr[np.isfinite(psnr)].mean():>8.2f} {ssim.mean():>6.3f} {distance.mean():>9.3f} "
                  f"{(distance < 0.6).mean():>6.0%} {seconds:>8.2f}", flush=True)
    print(f"ratio = {distances['held-out', 'projection'] / distances['held-out', 'nearest sample']:.3f} "
          "(face distance, projection / nearest of random samples, held-out real faces)")


if __name__ == "__main__":
    main()
