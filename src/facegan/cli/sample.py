"""`facegan sample` and `facegan interpolate`: images from a run or an export."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from facegan.cli.provenance import add_provenance_options, provenance_from_args
from facegan.cli.common import MAX_SEEDS, ExamplesFormatter, count_seeds, iter_seeds, parse_seed_ranges, parse_seeds
from facegan.errors import FaceganError
from facegan.provenance.record import TRAINED

SAMPLE_EXAMPLES = """\
examples:
  facegan sample runs/lfw32 --seeds 0-63 --grid grid.png
  facegan sample runs/lfw32/export --seeds 0-999 --out-dir fakes/      # one PNG per seed
  facegan sample runs/lfw32 --seeds 0-15 --grid trunc.jpg --truncation 0.7
"""
INTERPOLATE_EXAMPLES = """\
examples:
  facegan interpolate runs/lfw32 --seeds 3,7 --steps 8 --out strip.png
  facegan interpolate runs/lfw32 --seeds 3,7,11,3 --steps 6 --out loop.png   # one row per pair
"""
# Images in one grid (a grid is rendered and encoded in memory at once); --out-dir streams any number.
MAX_GRID_IMAGES = 4096
# Seeds rendered and written per batch with --out-dir.
WRITE_BATCH = 64


def register(commands) -> None:
    sample = commands.add_parser("sample", help="generate faces by seed (grid and/or one file per seed)", epilog=SAMPLE_EXAMPLES, formatter_class=ExamplesFormatter)
    sample.add_argument("model", metavar="RUN_OR_EXPORT", help="run folder, export folder or model.safetensors")
    sample.add_argument("--seeds", default="0-63", help="seeds: ranges and lists, e.g. 0-63 or 3,7,11")
    sample.add_argument("--grid", help=f"write all images as one grid here (.png, .jpg, .webp or .bmp; at most {MAX_GRID_IMAGES} images)")
    sample.add_argument("--out-dir", help="write one PNG per seed (seed00042.png) into this folder, streamed in batches")
    sample.add_argument("--truncation", type=float, default=1.0, help="psi in [0, 1]: pull z toward its mean (less variety, higher fidelity)")
    sample.add_argument("--columns", type=int, default=None, help="grid columns (default: square)")
    sample.add_argument("--device", default="cpu", help="cpu or cuda")
    sample.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_provenance_options(sample)
    sample.set_defaults(handler=run_sample)

    interpolate = commands.add_parser("interpolate", help="spherical interpolation in z between seeds", epilog=INTERPOLATE_EXAMPLES, formatter_class=ExamplesFormatter)
    interpolate.add_argument("model", metavar="RUN_OR_EXPORT", help="run folder, export folder or model.safetensors")
    interpolate.add_argument("--seeds", required=True, help="two or more seeds, e.g. 3,7 (each consecutive pair is one row)")
    interpolate.add_argument("--steps", type=int, default=8, help="images per row, ends included")
    interpolate.add_argument("--truncation", type=float, default=1.0, help="psi in [0, 1]")
    interpolate.add_argument("--out", required=True, help="image to write (.png, .jpg, .webp or .bmp)")
    interpolate.add_argument("--device", default="cpu", help="cpu or cuda")
    add_provenance_options(interpolate)
    interpolate.set_defaults(handler=run_interpolate)


def _check_truncation(truncation: float) -> None:
    if not (math.isfinite(truncation) and 0.0 <= truncation <= 1.0):
        raise FaceganError(f"--truncation must be between 0 and 1, got {truncation}")


def _grid_size(count: int, generator, columns: int | None) -> str:
    """The memory a grid of `count` images would take, e.g. '90.5 GiB' or '12 MiB'."""
    from facegan.images import grid_shape

    height, width, channels = grid_shape(count, generator.resolution, generator.resolution, generator.channels, columns)
    size = height * width * channels
    return f"{size / 2**30:,.1f} GiB" if size >= 2**30 else f"{size / 2**20:,.0f} MiB"


def run_sample(args: argparse.Namespace) -> int:
    from facegan.images import check_grid_fits, check_image_path, make_grid, save_image
    from facegan.models.export import load_generator

    if not args.grid and not args.out_dir:
        raise FaceganError("nothing to write: pass --grid FILE.png and/or --out-dir DIR")
    # Every refusal comes before the model is loaded or any image is rendered.
    ranges = parse_seed_ranges(args.seeds, max_count=MAX_SEEDS if args.out_dir else math.inf)
    count = count_seeds(ranges)
    _check_truncation(args.truncation)
    if args.columns is not None and args.columns < 1:
        raise FaceganError(f"--columns must be at least 1, got {args.columns}")
    provenance = provenance_from_args(args, TRAINED, "sample")
    if args.grid:
        check_image_path(args.grid, "--grid", provenance)
    folder = Path(args.out_dir) if args.out_dir else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise FaceganError(f"--out-dir {folder} is a file, not a folder; give a folder name")
    generator = load_generator(args.model, device=args.device)
    provenance = provenance.about(generator.export_hash, generator.fingerprint_id)
    if args.grid and count > MAX_GRID_IMAGES:
        raise FaceganError(
            f"--seeds {args.seeds} is {count} images (~{_grid_size(count, generator, args.columns)} as a grid); "
            f"at most {MAX_GRID_IMAGES} for --grid (--out-dir writes one file per seed and streams any number)"
        )
    if args.grid:
        check_grid_fits(count, generator.resolution, generator.resolution, generator.channels, args.columns, Path(args.grid).suffix,
                        f"--seeds {args.seeds}")
        images = generator.sample(list(iter_seeds(ranges)), truncation=args.truncation)
        grid_provenance = provenance.about(provenance.model, provenance.fingerprint, seeds=args.seeds)
        print(f"grid of {count} images: {save_image(make_grid(images, args.columns), args.grid, grid_provenance)}")
    if folder is not None:
        _write_per_seed(generator, ranges, count, folder, args.truncation, provenance, progress=not args.no_progress)
        print(f"{count} images in {folder}/")
    return 0


def _write_per_seed(generator, ranges: list[range], count: int, folder: Path, truncation: float, provenance, progress: bool) -> None:
    """Render and write in batches, so memory stays bounded whatever the number of seeds."""
    from facegan.images import save_image

    bar = None
    if progress and count > WRITE_BATCH:
        from tqdm import tqdm

        bar = tqdm(total=count, unit="img", desc="sample", dynamic_ncols=True)
    try:
        for seeds, images in generator.iter_samples(iter_seeds(ranges), truncation=truncation, batch_size=WRITE_BATCH):
            for seed, image in zip(seeds, images):
                save_image(image, folder / f"seed{seed:05d}.png", provenance.with_seed(seed))
            if bar is not None:
                bar.update(len(seeds))
    finally:
        if bar is not None:
            bar.close()


def run_interpolate(args: argparse.Namespace) -> int:
    import numpy as np

    from facegan.images import check_grid_fits, check_image_path, make_grid, save_image
    from facegan.models.export import load_generator

    seeds = parse_seeds(args.seeds, max_count=MAX_GRID_IMAGES)
    if len(seeds) < 2:
        raise FaceganError("--seeds needs at least two seeds, e.g. 3,7")
    if args.steps < 2:
        raise FaceganError(f"--steps must be at least 2 (the two ends), got {args.steps}")
    count = args.steps * (len(seeds) - 1)
    _check_truncation(args.truncation)
    provenance = provenance_from_args(args, TRAINED, "interpolate")
    check_image_path(args.out, "--out", provenance)
    generator = load_generator(args.model, device=args.device)
    if count > MAX_GRID_IMAGES:
        raise FaceganError(
            f"--steps {args.steps} with {len(seeds)} seeds is {count} images (~{_grid_size(count, generator, args.steps)} as one image); "
            f"at most {MAX_GRID_IMAGES} images in one interpolation"
        )
    check_grid_fits(count, generator.resolution, generator.resolution, generator.channels, args.steps, Path(args.out).suffix,
                    f"--steps {args.steps}")
    rows = [generator.interpolate(a, b, args.steps, args.truncation) for a, b in zip(seeds[:-1], seeds[1:])]
    provenance = provenance.about(generator.export_hash, generator.fingerprint_id, seeds=",".join(map(str, seeds)))
    path = save_image(make_grid(np.concatenate(rows), num_columns=args.steps), args.out, provenance)
    print(f"interpolation {' -> '.join(map(str, seeds))} in {args.steps} steps: {path}")
    return 0
