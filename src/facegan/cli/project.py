"""`facegan project`: GAN inversion of faces into a trained generator (latents, reconstructions, figures)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import parse_float, parse_int
from facegan.cli.provenance import add_provenance_options
from facegan.errors import FaceganError

PROJECT_EXAMPLES = """\
examples:
  facegan project runs/lfw32 data/lfw32-holdout --out out/proj                  # every face of a prepared dataset
  facegan project runs/lfw32/export photos/ --out out/proj --steps 500 --starts 8
  facegan project runs/lfw32 data/lfw32-holdout --out out/fill --mask masks/    # only known pixels count
  facegan edit runs/lfw32 --latents out/proj/latents.npy --attribute Smiling --strength -2..2 --out strip.png

Writes DIR/latents.npy (z, float32 (N, z_dim)), DIR/extended.npy (the optimised first activation, unless
--no-extended), DIR/reconstructions/0000.png ..., DIR/grid.png (targets above reconstructions) and
DIR/projection.json (per image PSNR, SSIM and dlib face distance to the target; same person below 0.6).
Images must be at the generator's resolution. Masks (True/white = missing): a PNG per image in a folder
(sorted), one PNG for all, or a .npy bool (N, H, W) / (H, W). With a mask the identity term is off unless
--identity-weight is given (the holed target has no whole face to compare with).
"""


def register(commands) -> None:
    project = commands.add_parser("project", help="find the latents that reproduce given faces (GAN inversion)",
                                  epilog=PROJECT_EXAMPLES, formatter_class=ExamplesFormatter)
    project.add_argument("model", metavar="RUN_OR_EXPORT", help="GAN run folder, export folder or model.safetensors")
    project.add_argument("images", metavar="IMAGES_OR_DATASET", help="prepared dataset, image folder, or one image file")
    project.add_argument("--out", required=True, metavar="DIR", help="folder to write (new, empty, or an earlier projection)")
    project.add_argument("--mask", default=None, metavar="MASKS", help="mask folder, PNG or .npy: the pixels marked missing do not count")
    project.add_argument("--steps", default="300", help="optimisation steps of the kept start (the start phase adds a quarter)")
    project.add_argument("--starts", default="4", help="random starts per face; the best after the start phase is kept")
    project.add_argument("--seed", default="0", help="seed of the starts (results depend only on seed and face index)")
    project.add_argument("--identity-weight", default=None, metavar="W",
                         help="weight of the dlib face-space term (default 0.05; 0 with --mask)")
    project.add_argument("--identity-every", default="1", metavar="K",
                         help="recompute the face-space gradient every K steps (faster, less faithful identity)")
    project.add_argument("--batch-size", default="16", help="faces optimised together")
    project.add_argument("--no-extended", action="store_true", help="optimise z only (not the generator's first activation)")
    project.add_argument("--device", default="cpu", help="cpu or cuda")
    project.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_provenance_options(project)
    project.set_defaults(handler=run_project)


def _check_places(out: Path, located, source: Path) -> None:
    """--out may not be the export, the targets' dataset or image folder, or lie inside/around them."""
    from facegan.data.dataset import absolute_path, paths_overlap

    for what, place in (("the export", located.export_dir), ("the images", source)):
        place = absolute_path(place)
        if place.is_file():
            place = place.parent if what == "the export" else place
        if paths_overlap(out, place):
            raise FaceganError(f"--out {out} is {what} {place} or inside/around it; give a separate folder for the projection")


def run_project(args: argparse.Namespace) -> int:
    from facegan.inversion.results import check_projection_out, read_targets
    from facegan.run import Run

    steps = parse_int("--steps", args.steps, 1, 100_000)
    starts = parse_int("--starts", args.starts, 1, 256)
    seed = parse_int("--seed", args.seed, 0, 2**63 - 1)
    batch_size = parse_int("--batch-size", args.batch_size, 1, 65536)
    identity_every = parse_int("--identity-every", args.identity_every, 1, 100_000)
    identity_weight = None if args.identity_weight is None else parse_float("--identity-weight", args.identity_weight, 0.0, 1e6)
    # Every refusal about paths and inputs comes before the model is loaded or anything is optimised.
    located = Run.locate(args.model)
    source = Path(args.images)
    out = check_projection_out(args.out)
    _check_places(out, located, source)
    targets, names = read_targets(source)
    from facegan.cli.provenance import provenance_from_args
    from facegan.provenance.record import TRAINED

    provenance = provenance_from_args(args, TRAINED, "project")

    from facegan.models.export import load_generator
    from facegan.inversion.projector import check_targets, project

    generator = load_generator(located.export_dir, device=args.device)
    targets = check_targets(generator, targets)
    masks = None
    if args.mask is not None:
        from facegan.images import read_masks

        masks = read_masks(args.mask, len(targets), generator.resolution)

    bars = []

    def show_progress(done: int, total: int) -> None:
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=total, unit="step", desc="project", dynamic_ncols=True, file=sys.stderr))
        bars[0].update(done - bars[0].n)

    began = time.perf_counter()
    try:
        result = project(generator, targets, masks=masks, steps=steps, starts=starts, seed=seed, identity_weight=identity_weight,
                         extended=not args.no_extended, batch_size=batch_size, identity_every=identity_every,
                         progress=None if args.no_progress else show_progress, names=names)
    finally:
        for bar in bars:
            bar.close()
    seconds = time.perf_counter() - began
    result.settings["seconds_per_image"] = seconds / len(targets)
    from facegan.inversion.results import save_projection

    save_projection(out, result, targets, source=str(source.resolve()), model=str(located.export_dir.resolve()),
                    provenance=provenance.about(generator.export_hash, generator.fingerprint_id))
    import numpy as np

    finite = result.psnr[np.isfinite(result.psnr)]
    psnr = f"{finite.mean():.2f} dB" if len(finite) else "inf (exact)"
    print(f"projected {len(result)} image{'s' if len(result) != 1 else ''} in {seconds:.1f} s ({seconds / len(result):.2f} s/image): "
          f"PSNR {psnr}, SSIM {result.ssim.mean():.3f}, face distance {result.face_distance.mean():.3f} "
          f"(same person < 0.6: {(result.face_distance < 0.6).mean():.0%})")
    print(f"written: {out} (latents.npy{', extended.npy' if result.extended is not None else ''}, reconstructions/, grid.png, projection.json)")
    return 0
