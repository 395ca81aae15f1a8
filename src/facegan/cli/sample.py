"""`facegan sample` and `facegan interpolate`: images from a run or an export."""
from __future__ import annotations

import argparse
from pathlib import Path

from facegan.cli.common import ExamplesFormatter, parse_seeds

SAMPLE_EXAMPLES = """\
examples:
  facegan sample runs/lfw32 --seeds 0-63 --grid grid.png
  facegan sample runs/lfw32/export --seeds 0-999 --out-dir fakes/      # one PNG per seed
  facegan sample runs/lfw32 --seeds 0-15 --grid trunc.png --truncation 0.7
"""
INTERPOLATE_EXAMPLES = """\
examples:
  facegan interpolate runs/lfw32 --seeds 3,7 --steps 8 --out strip.png
  facegan interpolate runs/lfw32 --seeds 3,7,11,3 --steps 6 --out loop.png   # one row per pair
"""


def register(commands) -> None:
    sample = commands.add_parser("sample", help="generate faces by seed (grid and/or one file per seed)", epilog=SAMPLE_EXAMPLES, formatter_class=ExamplesFormatter)
    sample.add_argument("model", metavar="RUN_OR_EXPORT", help="run folder, export folder or model.safetensors")
    sample.add_argument("--seeds", default="0-63", help="seeds: ranges and lists, e.g. 0-63 or 3,7,11")
    sample.add_argument("--grid", help="write all images as one grid PNG here")
    sample.add_argument("--out-dir", help="write one PNG per seed (seed00042.png) into this folder")
    sample.add_argument("--truncation", type=float, default=1.0, help="psi in [0, 1]: pull z toward its mean (less variety, higher fidelity)")
    sample.add_argument("--columns", type=int, default=None, help="grid columns (default: square)")
    sample.add_argument("--device", default="cpu", help="cpu or cuda")
    sample.set_defaults(handler=run_sample)

    interpolate = commands.add_parser("interpolate", help="spherical interpolation in z between seeds", epilog=INTERPOLATE_EXAMPLES, formatter_class=ExamplesFormatter)
    interpolate.add_argument("model", metavar="RUN_OR_EXPORT", help="run folder, export folder or model.safetensors")
    interpolate.add_argument("--seeds", required=True, help="two or more seeds, e.g. 3,7 (each consecutive pair is one row)")
    interpolate.add_argument("--steps", type=int, default=8, help="images per row, ends included")
    interpolate.add_argument("--truncation", type=float, default=1.0, help="psi in [0, 1]")
    interpolate.add_argument("--out", required=True, help="PNG to write")
    interpolate.add_argument("--device", default="cpu", help="cpu or cuda")
    interpolate.set_defaults(handler=run_interpolate)


def run_sample(args: argparse.Namespace) -> int:
    from facegan.errors import FaceganError
    from facegan.images import make_grid, save_png
    from facegan.models.export import load_generator

    if not args.grid and not args.out_dir:
        raise FaceganError("nothing to write: pass --grid FILE.png and/or --out-dir DIR")
    seeds = parse_seeds(args.seeds)
    generator = load_generator(args.model, device=args.device)
    images = generator.sample(seeds, truncation=args.truncation)
    if args.grid:
        print(f"grid of {len(seeds)} images: {save_png(make_grid(images, args.columns), args.grid)}")
    if args.out_dir:
        folder = Path(args.out_dir)
        for seed, image in zip(seeds, images):
            save_png(image, folder / f"seed{seed:05d}.png")
        print(f"{len(seeds)} images in {folder}/")
    return 0


def run_interpolate(args: argparse.Namespace) -> int:
    import numpy as np

    from facegan.errors import FaceganError
    from facegan.images import make_grid, save_png
    from facegan.models.export import load_generator

    seeds = parse_seeds(args.seeds)
    if len(seeds) < 2:
        raise FaceganError("--seeds needs at least two seeds, e.g. 3,7")
    generator = load_generator(args.model, device=args.device)
    rows = [generator.interpolate(a, b, args.steps, args.truncation) for a, b in zip(seeds[:-1], seeds[1:])]
    path = save_png(make_grid(np.concatenate(rows), num_columns=args.steps), args.out)
    print(f"interpolation {' -> '.join(map(str, seeds))} in {args.steps} steps: {path}")
    return 0
