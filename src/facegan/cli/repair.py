"""`facegan repair`: train a face-repair network, apply it (or a baseline) to damaged faces, evaluate it per mask band.

`repair train` trains the gated-convolution completion network (`facegan.repair.training`); `repair apply`
damages images (or takes your masks) and repairs them with the network, masked GAN inversion or OpenCV;
`repair eval` measures the network against OpenCV on held-out faces, per mask-ratio band and degradation.
"""
from __future__ import annotations

import argparse
import json

from facegan.cli.common import ExamplesFormatter
from facegan.cli.progress import TrainingProgress

TRAIN_EXAMPLES = """\
examples:
  facegan data prepare builtin:lfw-subset data/lfw32 --size 32
  facegan data split data/lfw32 --holdout 0.2                         # data/lfw32-train, data/lfw32-holdout
  facegan repair train --data data/lfw32-train --out runs/repair32 --steps 5000
  facegan repair train --data data/lfw32-train --out runs/fast --steps 500 --set loss.identity=0   # no face-space loss (faster)
  facegan repair train --out runs/repair32 --resume --steps 10000     # continue exactly where it stopped

The network learns to fill holes (boxes, free-form strokes, a sunglasses band, a lower-face mask; 5-60% of the
pixels) and to undo Gaussian noise, blur and low-quality JPEG (25% of the images); see --dry-run for every setting.
"""


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
