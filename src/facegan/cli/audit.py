"""`facegan audit`: memorisation, membership inference and identity leakage of a model or of samples."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import check_writable_target, parse_int

AUDIT_EXAMPLES = """\
examples:
  facegan data split data/lfw32 --holdout 0.2 --by identity         # data/lfw32-train, data/lfw32-holdout
  facegan train --data data/lfw32-train --out runs/lfw32 --kimg 50
  facegan audit runs/lfw32 --train data/lfw32-train --holdout data/lfw32-holdout
  facegan audit runs/lfw32/export --train data/lfw32-train --holdout data/lfw32-holdout --num 5000 --out audits/lfw32
  facegan audit runs/lfw32 --train data/lfw32-train --holdout data/lfw32-holdout --features pixel   # no dlib, fastest
  facegan audit --samples other_gan/fakes --train data/lfw32-train --holdout data/lfw32-holdout   # any generator's PNG/JPG files
  facegan report runs/lfw32                                         # the audit appears as the "Privacy audit" section

A run folder gets every check, including the discriminator attack; an export or a samples folder gets all but that one.
Results go to audit.json (+ audit_*.png) in the run folder, the export folder, or SAMPLES-audit/ unless --out is given.
"""


def register(commands) -> None:
    audit = commands.add_parser(
        "audit", help="privacy audit: memorisation, membership inference, identity leakage", epilog=AUDIT_EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    audit.add_argument("model", metavar="RUN_OR_EXPORT", nargs="?", help="run folder, export folder or model.safetensors; or use --samples")
    audit.add_argument("--samples", metavar="DIR", help="audit a folder of generated images (PNG/JPG) instead of a model")
    audit.add_argument("--train", required=True, metavar="TRAIN", help="prepared dataset the model was trained on (the members)")
    audit.add_argument("--holdout", required=True, metavar="HOLDOUT", help="prepared dataset of faces never trained on (the non-members)")
    audit.add_argument("--num", default=None, help="faces to generate at seeds 0..NUM-1 (2000 when not given); with --samples, read at most NUM files (all when not given)")
    audit.add_argument("--out", metavar="DIR", help="folder for audit.json and its figures; when not given: the run folder, the export folder, or SAMPLES-audit/")
    audit.add_argument("--features", action="append", metavar="{pixel,face}", help="feature space to measure in (pixel or face), repeatable; when not given: pixel and face")
    audit.add_argument("--device", default="cpu", help="cpu or cuda")
    audit.add_argument("--fail-on-warning", action="store_true", help="exit with status 1 when any check is flagged (for CI)")
    audit.add_argument("--no-progress", action="store_true", help="do not print the stages")
    audit.set_defaults(handler=run_audit)


def default_output_folder(model: str | None, samples: str | None) -> Path:
    """Where audit.json goes without --out: the run folder, the export folder, or SAMPLES-audit beside the samples."""
    from facegan.run import Run

    if samples is not None:
        # Not inside the samples folder: a second audit would read the figures as generated faces.
        folder = Path(samples)
        if folder.name in ("", "..", "."):
            folder = Path(os.path.abspath(samples))  # `--samples .` is named after the folder, not "-audit"
        return folder.with_name(f"{folder.name}-audit")
    return Run.locate(model).results_dir  # the run folder (where `facegan report` looks), else the export folder


def check_output_folder(out: Path, samples: str | None, given: bool) -> Path:
    """Refuse, before any work, an output folder that is a file, unwritable, inside the samples, or holding a foreign audit.json."""
    from facegan.errors import FaceganError
    from facegan.privacy.audit_result import AUDIT_NAME, load_audit

    what = "--out" if given else "audit output folder"
    if out.exists() and not out.is_dir():
        raise FaceganError(f"{what} {out} is a file; the audit writes a folder ({AUDIT_NAME} + audit_*.png), give a folder path")
    if samples is not None and Path(samples).is_dir():
        resolved_out, resolved_samples = out.resolve(), Path(samples).resolve()
        if resolved_out == resolved_samples or resolved_samples in resolved_out.parents:
            raise FaceganError(f"{what} {out} is inside --samples {samples}; a later audit would read its figures as generated faces")
    check_writable_target(out / AUDIT_NAME, what)
    if (out / AUDIT_NAME).exists() and load_audit(out) is None:
        raise FaceganError(f"{out / AUDIT_NAME} exists and is not a facegan audit; choose another --out (it is never overwritten)")
    return out


def run_audit(args: argparse.Namespace) -> int:
    from facegan.errors import FaceganError
    from facegan.privacy.audit import DEFAULT_NUM_SAMPLES, FEATURE_SPACES, audit_generator, audit_samples

    if (args.model is None) == (args.samples is None):
        raise FaceganError("give either RUN_OR_EXPORT or --samples DIR (one, not both); see `facegan audit --help`")
    features = args.features or list(FEATURE_SPACES)
    progress = not args.no_progress
    num = parse_int("--num", args.num, 2)
    out = check_output_folder(Path(args.out) if args.out else default_output_folder(args.model, args.samples), args.samples, bool(args.out))
    if args.samples is not None:
        result = audit_samples(args.samples, args.train, args.holdout, features=features, max_images=num, device=args.device, progress=progress)
    else:
        num_samples = DEFAULT_NUM_SAMPLES if num is None else num
        result = audit_generator(args.model, args.train, args.holdout, num_samples=num_samples, features=features, device=args.device, progress=progress)
    path = result.save(out)
    for reading in result.readings:
        print(reading)
    for note in result.notes:
        print(f"note: {note}")
    print(f"audit written to {path} (figures audit_*.png beside it)")
    return 1 if args.fail_on_warning and result.flagged else 0
