"""`facegan repair`: train a face-repair network, apply it (or a baseline) to damaged faces, evaluate it per mask band.

`repair train` trains the gated-convolution completion network (`facegan.repair.training`); `repair apply`
damages images (or takes your masks) and repairs them with the network, masked GAN inversion or OpenCV;
`repair eval` measures the network against OpenCV on held-out faces, per mask-ratio band and degradation.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import parse_float, parse_int
from facegan.cli.progress import TrainingProgress
from facegan.cli.provenance import add_provenance_options
from facegan.errors import FaceganError

TRAIN_EXAMPLES = """\
examples:
  facegan data prepare builtin:lfw-subset data/lfw32 --size 32
  facegan data split data/lfw32 --holdout 0.2                         # data/lfw32-train, data/lfw32-holdout
  facegan repair train --data data/lfw32-train --out runs/repair32 --steps 5000
  facegan repair train --data data/lfw32-train --out runs/fast --steps 500 --set loss.identity=0   # no face-space loss (faster)
  facegan repair train --out runs/repair32 --resume --steps 10000     # continue exactly where it stopped
  facegan repair train --data data/rendered32-train --out runs/rrec --steps 2000 --set damage.anchors=rendered --set loss.identity_recogniser=runs/recog
      # occluders where rendered faces have eyes and mouth; identity loss in a facegan recogniser's space (train it on the same people)

The network learns to fill holes (boxes, free-form strokes, a sunglasses band, a lower-face mask; 5-60% of the
pixels) and to undo Gaussian noise, blur and low-quality JPEG (25% of the images); see --dry-run for every setting.
"""


APPLY_EXAMPLES = """\
examples:
  facegan repair apply runs/repair32 data/lfw32-holdout --out results/eyes --mask-kind eyes --mask-ratio 0.2
  facegan repair apply runs/repair32 data/lfw32-holdout --out results/noise --degrade noise      # restore, no holes
  facegan repair apply runs/repair32 photos/ --out results/mine --mask my_masks/                  # your own masks (white = hole)
  facegan repair apply telea data/lfw32-holdout --out results/telea --mask-kind box              # OpenCV baseline, same masks by seed
  facegan repair apply runs/lfw32 data/lfw32-holdout --out results/proj --mask-kind mouth        # masked GAN inversion (a GAN run)

DIR receives repaired/ (the results), damaged/ (what the method saw; holes white), masks/ (the masks used),
strip.png (original / damaged / repaired) and repair.json (per image PSNR, SSIM, L1 against the undamaged input
when the damage was applied here or the masks are yours). Every known pixel is returned exactly as given.
"""
EVAL_EXAMPLES = """\
examples:
  facegan repair eval runs/repair32 --data data/lfw32-holdout
  facegan repair eval runs/repair32 --data data/rendered32-holdout --pairs data/rendered32-holdout-pairs.txt
  facegan report runs/repair32                                  # the card shows the tables and the strip

Per mask-ratio band (10-20% ... 50-60%; box, strokes, eyes and mouth masks in turn, the same for every method):
PSNR, SSIM, L1, face-space distance to the original and FD of repaired vs real, for the network, OpenCV Telea and
Navier-Stokes, and the masked input. Per degradation (noise, blur, JPEG): PSNR/SSIM/L1 of the degraded images, the
network's restoration, OpenCV non-local means and unsharp masking, and with pairs the verification accuracy of each.
Writes RUN/repair_eval.json and RUN/repair_strip.png.
"""
MASK_KIND_CHOICES = ("box", "strokes", "eyes", "mouth")
DEGRADATION_CHOICES = ("noise", "blur", "jpeg")
INPAINT_BASELINES = ("telea", "ns")
RESTORE_BASELINES = ("opencv-nlm", "unsharp")
BASELINES = INPAINT_BASELINES + RESTORE_BASELINES
METHOD_CHOICES = ("net", "projection", *BASELINES)
APPLY_FORMAT = "facegan-repair-apply"
APPLY_DIRS = ("repaired", "damaged", "masks")
MAX_STRIP_IMAGES = 8


def register(commands) -> None:
    repair = commands.add_parser("repair", help="face repair: train a completion network, repair damaged faces, evaluate")
    verbs = repair.add_subparsers(dest="repair_command", metavar="VERB", required=True)

    train = verbs.add_parser("train", help="train (or resume) a face-repair network (inpainting + restoration)", epilog=TRAIN_EXAMPLES,
                             formatter_class=ExamplesFormatter)
    train.add_argument("--data", default=None, metavar="DATASET", help="prepared dataset of clean face chips (16-256 px, a power of two)")
    train.add_argument("--out", required=True, help="run folder (runs/NAME)")
    train.add_argument("--steps", type=int, default=None, help="training length in optimizer steps")
    train.add_argument("--batch-size", type=int, default=None, help="images per step (default: 16)")
    train.add_argument("--seed", type=int, default=None, help="seed for weights, data order, masks and degradations")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config field, e.g. --set loss.identity=0 --set damage.mask_kinds='[\"eyes\"]' (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=run_train)

    apply = verbs.add_parser("apply", help="damage faces (or take your masks) and repair them: network, projection or OpenCV",
                             epilog=APPLY_EXAMPLES, formatter_class=ExamplesFormatter)
    apply.add_argument("model", metavar="MODEL", help="repair run/export; a GAN run/export (--method projection); or a baseline: "
                       + ", ".join(BASELINES))
    apply.add_argument("images", metavar="IMAGES_OR_DATASET", help="prepared dataset, image folder, or one image file (square chips)")
    apply.add_argument("--out", required=True, metavar="DIR", help="results folder (new, empty, or an earlier `repair apply` output)")
    holes = apply.add_mutually_exclusive_group()
    holes.add_argument("--mask", default=None, metavar="MASKS", help="your masks: a PNG (for all), a folder of PNGs (one per image, "
                       "sorted), or a .npy (N, H, W); white / True = missing")
    holes.add_argument("--mask-kind", default=None, choices=MASK_KIND_CHOICES, help="make masks of this kind (seeded by --seed)")
    apply.add_argument("--mask-ratio", default=None, metavar="R", help="share of missing pixels for --mask-kind (default: 0.3)")
    apply.add_argument("--degrade", default=None, choices=DEGRADATION_CHOICES, help="damage the images with this degradation first "
                       "(default strength), then restore them")
    apply.add_argument("--method", default=None, choices=METHOD_CHOICES, help="how to repair (default: from MODEL: net for a repair run, "
                       "projection for a GAN, the baseline named)")
    apply.add_argument("--seed", default="0", help="seed for --mask-kind, --degrade and projection")
    apply.add_argument("--limit", default=None, metavar="N", help="repair only the first N images")
    apply.add_argument("--steps", default=None, metavar="K", help="projection: optimisation steps per start (default: facegan project's, 300)")
    apply.add_argument("--starts", default=None, metavar="M", help="projection: random starts, the best kept (default: 4)")
    apply.add_argument("--batch-size", default="64", help="images per network batch (results do not depend on it)")
    apply.add_argument("--device", default="cpu", help="cpu or cuda")
    apply.add_argument("--no-progress", action="store_true", help="no progress bar (projection)")
    add_provenance_options(apply)
    apply.set_defaults(handler=run_apply)

    evaluate = verbs.add_parser("eval", help="measure a repair network against OpenCV per mask band and degradation (held-out faces)",
                                epilog=EVAL_EXAMPLES, formatter_class=ExamplesFormatter)
    evaluate.add_argument("model", metavar="RUN", help="repair run folder (or its export); results go into the run")
    evaluate.add_argument("--data", required=True, metavar="HOLDOUT", help="prepared dataset of held-out faces (not trained on)")
    evaluate.add_argument("--pairs", default=None, metavar="PAIRS_TXT", help="pairs for the verification accuracy under degradations "
                          "(default: made from HOLDOUT's identities when it has them, else that part is skipped)")
    evaluate.add_argument("--out", default=None, metavar="DIR", help="results folder (default: the run folder; needed for a stand-alone export)")
    evaluate.add_argument("--limit", default=None, metavar="N", help="use only the first N held-out faces")
    evaluate.add_argument("--seed", default="0", help="seed of the masks and degradations (the same for every method)")
    evaluate.add_argument("--recogniser", default="dlib", metavar="NAME", help="face space for the identity distance and verification")
    evaluate.add_argument("--no-fd", action="store_true", help="skip the FD of repaired vs real faces")
    evaluate.add_argument("--batch-size", default="64", help="images per batch (results do not depend on it)")
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda")
    evaluate.set_defaults(handler=run_eval)


def build_repair_config(args: argparse.Namespace):
    """Defaults < flags < --set; on --resume the saved run's config is the base instead."""
    from facegan.config import apply_overrides, from_dict, merge
    from facegan.repair.config import RepairConfig
    from facegan.run import Run

    updates: dict = {"out": args.out}
    for key, value in (("data", args.data), ("steps", args.steps), ("batch_size", args.batch_size), ("seed", args.seed)):
        if value is not None:
            updates[key] = value
    if args.resume and Run(args.out).has_config():
        from facegan.repair.training import load_repair_run_config

        base = load_repair_run_config(args.out)
    else:
        base = from_dict(RepairConfig, {})
    return apply_overrides(merge(base, updates), args.overrides)


def run_train(args: argparse.Namespace) -> int:
    from facegan.config import to_dict

    config = build_repair_config(args)
    if args.dry_run:
        config.validate()
        print(json.dumps(to_dict(config), indent=2, sort_keys=True))
        return 0
    from facegan.repair.training import train_repair

    with TrainingProgress(enabled=not args.no_progress) as progress:
        result = train_repair(config, resume=args.resume, progress=progress.update)
    state = "interrupted at" if result.interrupted else "finished"
    print(f"{state} step {result.num_steps} in {result.seconds:.0f} s ({result.img_per_s:.0f} img/s)")
    print(f"run folder: {result.run_dir}")
    print(f"export:     {result.export_dir}")
    if result.interrupted:
        print(f"resume with: facegan repair train --out {result.run_dir} --resume")
        return 130
    return 0


# ---- apply ---------------------------------------------------------------------------------------
def _load_images(source: str, limit: int | None) -> tuple[np.ndarray, list[str], Path | None]:
    """uint8 (N, S, S, C) from a prepared dataset, an image folder or one file; the source names; the dataset path if one."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset

    path = Path(source)
    if not path.exists():
        raise FaceganError(f"no such dataset, image folder or image: {source}")
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        dataset = FaceDataset.load(path)
        count = len(dataset) if limit is None else min(limit, len(dataset))
        images = np.array(dataset.images[:count])
        return images, [f"{path.name}[{index}]" for index in range(count)], dataset.path
    from facegan.cli.recog import _read_images

    pictures, names = _read_images(path)
    if limit is not None:
        pictures, names = pictures[:limit], names[:limit]
    shapes = {picture.shape[:2] for picture in pictures}
    if len(shapes) > 1:
        raise FaceganError(f"the images in {source} have different sizes ({', '.join(f'{h}x{w}' for h, w in sorted(shapes)[:3])}); "
                           "repair works on aligned chips of one size: prepare them with `facegan data prepare SOURCE OUT --size S`")
    (height, width), = shapes
    if height != width:
        raise FaceganError(f"the images in {source} are {width}x{height}, not square; prepare them with `facegan data prepare`")
    images = np.stack(pictures)
    if (images[..., :1] == images).all():
        images = images[..., :1]  # grey files decode as RGB with equal channels: keep them grey, as a dataset would be
    return images, names, None


def _check_apply_out(out: Path, protected: list[tuple[str, Path | None]]) -> None:
    """DIR must be new, empty, or an earlier `repair apply` output, and apart from the inputs and the model."""
    from facegan.data.dataset import paths_overlap
    from facegan.files import check_writable_folder

    for what, place in protected:
        if place is not None and paths_overlap(out, place):
            raise FaceganError(f"--out {out} is {what} {place} or inside/around it; give a separate results folder")
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not out.is_dir():
            raise FaceganError(f"--out {out} is not a folder; give a new folder path for the results")
        try:
            entries = os.listdir(out)
        except OSError as error:
            raise FaceganError(f"cannot read --out {out} ({error.strerror}); choose another folder") from None
        if entries and not _is_apply_output(out):
            raise FaceganError(f"--out {out} already holds files that `repair apply` did not write; give a new or empty folder")
    check_writable_folder(out, "the results")


def _is_apply_output(folder: Path) -> bool:
    from facegan.config import load_json_optional

    try:
        record = load_json_optional(folder / "repair.json")
    except FaceganError:
        return False
    return isinstance(record, dict) and record.get("format") == APPLY_FORMAT


def _resolve_method(args: argparse.Namespace) -> str:
    """--method, or what MODEL implies; a MODEL that does not fit the method is one line."""
    if args.model in BASELINES:
        if args.method not in (None, args.model):
            raise FaceganError(f"MODEL {args.model} is a baseline but --method is {args.method}; give one or the other")
        return args.model
    if args.method in BASELINES:
        raise FaceganError(f"--method {args.method} is a baseline and needs no model: give {args.method} as MODEL "
                           f"(`facegan repair apply {args.method} IMAGES --out DIR ...`)")
    if args.method is not None:
        return args.method
    from facegan.repair.export import is_repair_export

    if is_repair_export(args.model):
        return "net"
    from facegan.run import Run

    Run.locate(args.model)  # a missing or foreign path is refused here, with its reason
    return "projection"  # a generator (load_generator says so in one line when it is not one)


def run_apply(args: argparse.Namespace) -> int:
    from facegan.images import read_masks, write_masks
    from facegan.repair.degrade import degrade
    from facegan.repair.export import fit_channels
    from facegan.repair.masks import make_masks

    method = _resolve_method(args)
    seed = parse_int("--seed", args.seed, 0, 2**63 - 1)
    limit = parse_int("--limit", args.limit, 1)
    batch_size = parse_int("--batch-size", args.batch_size, 1, 100_000)
    if args.mask_ratio is not None and args.mask_kind is None:
        raise FaceganError("--mask-ratio sets the size of generated masks: give it with --mask-kind")
    ratio = parse_float("--mask-ratio", args.mask_ratio if args.mask_ratio is not None else 0.3, 0.01, 0.95)
    wants_holes = args.mask is not None or args.mask_kind is not None
    if wants_holes and args.degrade is not None:
        raise FaceganError("give masks (--mask / --mask-kind) or --degrade, not both: the network repairs one kind of damage at a time")
    if method in INPAINT_BASELINES and not wants_holes:
        raise FaceganError(f"{method} fills holes: give --mask MASKS or --mask-kind K (for noise/blur/JPEG use opencv-nlm or unsharp)")
    projection_options = {name: parse_int(f"--{name}", getattr(args, name), 1, 100_000) for name in ("steps", "starts")
                          if getattr(args, name) is not None}
    if projection_options and method != "projection":
        raise FaceganError(f"--{next(iter(projection_options))} sets the projection's optimisation; it needs --method projection")
    if method in RESTORE_BASELINES and wants_holes:
        raise FaceganError(f"{method} restores noisy or blurred images and fills no holes; for masks use telea or ns")

    from facegan.cli.provenance import provenance_from_args
    from facegan.provenance.record import COMPOSITE, EDITED

    # The repaired photos: changed by a trained model (net, projection) or by a classical algorithm (OpenCV, unsharp).
    provenance = provenance_from_args(args, COMPOSITE if method in ("net", "projection") else EDITED, "repair")
    images, names, dataset_path = _load_images(args.images, limit)
    out = Path(os.path.abspath(args.out))
    model_place = None
    if method in ("net", "projection"):
        from facegan.run import Run

        located = Run.locate(args.model)
        model_place = located.run.path if located.run is not None else located.export_dir
    source_place = dataset_path or (Path(args.images) if Path(args.images).is_dir() else None)
    _check_apply_out(out, [("the input", source_place), ("the model", model_place)])

    # Load the model before any damage is made, so a wrong model fails in a second.
    repairer = generator = None
    if method == "net":
        from facegan.repair.export import load_repairer

        repairer = load_repairer(args.model, device=args.device)
        images = fit_channels(images, repairer.channels, "the repair model")
        repairer.check_images(images)
    elif method == "projection":
        generator = _load_projection_generator(args.model, args.device)
        images = fit_channels(images, generator.channels, "the generator")
        if images.shape[1] != generator.resolution:
            raise FaceganError(f"the images are {images.shape[1]}x{images.shape[1]} but the generator makes "
                               f"{generator.resolution}x{generator.resolution}; prepare them with --size {generator.resolution}")
    count, size = len(images), images.shape[1]
    masks = None
    if args.mask is not None:
        masks = read_masks(args.mask, count, size)
    elif args.mask_kind is not None:
        masks = make_masks(count, size, args.mask_kind, ratio, seed)
    damaged = degrade(images, args.degrade, seed) if args.degrade is not None else images
    if masks is not None:
        # Holes hidden (0) before any method sees them: no method can read what a mask covers.
        damaged = np.where(masks[..., None], np.uint8(0), images)

    from facegan.repair.export import repair_images

    model = repairer if method == "net" else generator
    bars = []

    def show(done: int, total: int) -> None:
        if not bars:
            import sys

            from tqdm import tqdm

            bars.append(tqdm(total=total, desc="project", dynamic_ncols=True, file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        repaired = repair_images(method, images if masks is not None else damaged, masks, model=model, seed=seed, batch_size=batch_size,
                                 projection_options=projection_options, progress=None if args.no_progress else show)
    finally:
        for bar in bars:
            bar.close()

    record = _write_apply_outputs(out, images, damaged, masks, repaired, names, {
        "method": method, "model": None if method in BASELINES else str(Path(args.model).resolve()),
        "source": str(Path(args.images).resolve()), "seed": seed, **({"projection": projection_options} if projection_options else {}),
        "damage": ({"mask": str(Path(args.mask).resolve())} if args.mask is not None else
                   {"mask_kind": args.mask_kind, "mask_ratio": ratio} if args.mask_kind is not None else
                   {"degrade": args.degrade} if args.degrade is not None else {}),
    }, write_masks, provenance.about(generator.export_hash, generator.fingerprint_id) if generator is not None else provenance)
    means = record.get("means")
    summary = (", ".join(f"{name} {value:.4g}" if value is not None else f"{name} n/a" for name, value in means.items())
               if means else "no reference (the input was not damaged here)")
    print(f"repaired {count} image(s) with {method}: {summary}")
    print(f"written: {out} (repaired/, damaged/{', masks/' if masks is not None else ''}, strip.png, repair.json)")
    return 0


def _load_projection_generator(model: str, device: str):
    from facegan.models.export import load_generator

    return load_generator(model, device=device)


def _write_apply_outputs(out: Path, originals: np.ndarray, damaged: np.ndarray, masks: np.ndarray | None, repaired: np.ndarray,
                         names: list[str], settings: dict, write_masks, provenance) -> dict:
    from facegan.config import save_json
    from facegan.images import make_grid, save_png, upscale_nearest
    from facegan.provenance.record import ALGORITHMIC, EDITED

    for name in APPLY_DIRS:  # an earlier run's images (it may have had more) must not mix with these
        folder = out / name
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
    shown = damaged.copy()
    if masks is not None:
        shown[masks] = 255  # holes drawn white: what the method did not see
    digits = max(5, len(str(len(originals) - 1)))
    files = [f"{index:0{digits}d}.png" for index in range(len(originals))]
    for file, image, damaged_image in zip(files, repaired, shown):
        save_png(image, out / "repaired" / file, provenance)
        # The damaged input is a real photo changed by facegan's damage model, no trained model involved.
        save_png(damaged_image, out / "damaged" / file, provenance.with_source(EDITED if settings["damage"] else None))
    if masks is not None:
        # Masks facegan drew are algorithmic media; the user's own (--mask) are only re-encoded.
        mask_source = ALGORITHMIC if settings["damage"].get("mask_kind") else None
        write_masks(out / "masks", masks, provenance.with_source(mask_source) if provenance.enabled else provenance)
    rows = min(MAX_STRIP_IMAGES, len(originals))
    strip = make_grid(np.concatenate([originals[:rows], shown[:rows], repaired[:rows]]), num_columns=rows)
    save_png(upscale_nearest(strip, 384), out / "strip.png", provenance)

    record: dict = {"format": APPLY_FORMAT, **settings, "num_images": len(originals), "known_pixels_exact": True,
                    "provenance": provenance.summary()}
    damaged_here = bool(settings["damage"])
    per_image = [{"file": file, "source": name} for file, name in zip(files, names)]
    if damaged_here:
        from facegan.metrics.quality import image_quality

        quality = image_quality(repaired, originals)
        before = image_quality(damaged, originals)
        for row, entry in enumerate(per_image):
            entry.update({name: _finite(values[row]) for name, values in quality.items()})
        record["reference"] = "the input images before the damage (masks/degradation) was applied"
        record["means"] = {name: _finite(_mean(name, values)) for name, values in quality.items()}
        record["damaged_means"] = {name: _finite(_mean(name, values)) for name, values in before.items()}
        record["psnr_cap_db"] = PSNR_CAP_DB
    record["images"] = per_image
    save_json(record, out / "repair.json")
    return record


# An exactly repaired image (an empty mask) has infinite PSNR; means count it at this cap, as `repair eval`
# does, so every metric's mean covers the same images.
PSNR_CAP_DB = 100.0


def _mean(name: str, values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    if name == "psnr":
        values = np.minimum(values, PSNR_CAP_DB)
    return float(values.mean()) if len(values) else float("nan")


def _finite(value: float) -> float | None:
    """JSON has no inf/nan: an exact repair's PSNR (inf) is written as null."""
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


# ---- eval ----------------------------------------------------------------------------------------
def run_eval(args: argparse.Namespace) -> int:
    from facegan.config import save_json
    from facegan.data.dataset import FaceDataset, paths_overlap
    from facegan.files import write_bytes_atomic
    from facegan.repair.evaluate import distance_ratio, format_inpainting_table, format_restoration_table
    from facegan.repair.export import evaluate_repairer, load_repairer
    from facegan.run import Run

    seed = parse_int("--seed", args.seed, 0, 2**63 - 1)
    limit = parse_int("--limit", args.limit, 2)
    batch_size = parse_int("--batch-size", args.batch_size, 1, 100_000)
    repairer = load_repairer(args.model, device=args.device)
    located = Run.locate(args.model)
    if args.out is not None:
        out = Run(Path(os.path.abspath(args.out)))
        if out.path.exists() and not out.path.is_dir():
            raise FaceganError(f"--out {args.out} is a file; give a results folder")
        own = located.run.path.resolve() if located.run is not None else None
        for folder in (out.path, *out.path.parents):
            if Run(folder).has_config() and (folder.resolve() != own or folder != out.path):
                # Another run's repair_eval.json would be replaced, and its report card would show this model's figures.
                where = "is the run" if folder == out.path else "lies inside the run"
                raise FaceganError(f"--out {args.out} {where} {folder}, not this model's run folder; give a folder outside any run "
                                   "(or leave --out out to write into the model's own run)")
    elif located.run is not None:
        out = located.run
    else:
        raise FaceganError(f"{args.model} is a stand-alone export (no run around it); give --out DIR for the results")
    holdout = FaceDataset.load(args.data)
    if paths_overlap(out.path, holdout.path):
        raise FaceganError(f"the results folder {out.path} is the dataset {holdout.path} or inside/around it; give another --out")
    pairs = args.pairs
    if pairs is not None and not Path(pairs).is_file():
        raise FaceganError(f"pairs file not found: {pairs} (write one with `facegan data pairs {args.data} --out {pairs}`)")
    from facegan.files import check_writable_folder

    check_writable_folder(out.path, "the evaluation results")

    def say(message: str) -> None:
        import sys

        print(f"  {message}", file=sys.stderr)

    record, strip = evaluate_repairer(repairer, holdout, pairs=pairs, seed=seed, recogniser=args.recogniser, fd=not args.no_fd, limit=limit,
                                      batch_size=batch_size, device=args.device, progress=say)
    save_json(record, out.repair_eval_path)
    write_bytes_atomic(out.repair_strip_path, strip)
    print(format_inpainting_table(record["inpainting"]))
    ratios = distance_ratio(record["inpainting"], "net")
    bands = [band["label"] for band in record["inpainting"]["bands"]]
    print("identity distance repaired/opencv-best = " + ", ".join(f"{ratio:.3f} ({band})" for ratio, band in zip(ratios, bands)))
    print()
    print(_format_quality(record["restoration_quality"]))
    if record["restoration"] is not None:
        print()
        print(format_restoration_table(record["restoration"]))
    for note in record["notes"]:
        print(f"note: {note}")
    print(f"written: {out.repair_eval_path}, {out.repair_strip_path}")
    return 0


def _format_quality(rows: list[dict]) -> str:
    lines = [f"{'degradation':<13s}{'method':<12s}{'PSNR':>8s}{'SSIM':>8s}{'L1':>9s}"]
    lines += [f"{row['degradation']:<13s}{row['method']:<12s}{row['psnr']:>8.2f}{row['ssim']:>8.3f}{row['l1']:>9.4f}" for row in rows]
    return "\n".join(lines)
