"""`facegan train`: train or resume a GAN."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from facegan.cli.common import ExamplesFormatter
from facegan.errors import FaceganError

EXAMPLES = """\
examples:
  facegan train --data data/lfw32 --out runs/lfw32 --kimg 50
  facegan train --data data/lfw32 --out runs/dcgan --preset seed-dcgan
  facegan train --data data/lfw32 --out runs/wide --set model.g_channels=256 --set loss.kind=hinge
  facegan train --data data/lfw32 --out runs/x --dry-run      # print the resolved config, do nothing
  facegan train --data data/lfw32 --out runs/private --dp-epsilon 10   # differentially private (preset dp)
  facegan train --out runs/lfw32 --resume --kimg 100          # continue exactly where it stopped
  torchrun --nproc_per_node 2 -m facegan train --data data/lfw32 --out runs/ddp
"""


def register(commands) -> None:
    parser = commands.add_parser("train", help="train (or resume) a GAN on a prepared dataset", epilog=EXAMPLES, formatter_class=ExamplesFormatter)
    parser.add_argument("--data", help="prepared dataset folder (from `facegan data prepare`)")
    parser.add_argument("--out", required=True, help="run folder (runs/NAME)")
    parser.add_argument("--preset", default=None, help="default | seed-dcgan | dp (default: default; dp with --dp-* flags)")
    parser.add_argument("--kimg", type=float, default=None, help="training length in thousands of real images shown (default: 100)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step")
    parser.add_argument("--seed", type=int, default=None, help="seed for weights, data order, noise and augmentation")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set loss.r1_gamma=1 (repeatable)")
    private = parser.add_argument_group("differential privacy (DP-SGD on the discriminator's real-image gradients)")
    private.add_argument("--dp-epsilon", type=float, default=None, help="total privacy budget epsilon; the noise is derived from it and training stops before exceeding it")
    private.add_argument("--dp-delta", type=float, default=None, help="delta of the guarantee (default: 1/(10 N))")
    private.add_argument("--dp-noise-multiplier", type=float, default=None, help="noise std / max grad norm, instead of deriving it from --dp-epsilon")
    private.add_argument("--dp-max-grad-norm", type=float, default=None, help="per-face gradient clipping bound C (default: 1)")
    private.add_argument("--dp-accountant", choices=["rdp", "prv"], default=None, help="Opacus privacy accountant (default: prv)")
    parser.add_argument("--metric-every", type=float, default=None, metavar="KIMG",
                        help="measure FD/KID (face space) every KIMG during training, log them and keep the best export in export-best/")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace):
    """Defaults < preset < flags; on --resume the saved run's config is the base instead."""
    from facegan.config import apply_overrides, merge
    from facegan.training.config import resolve_config
    from facegan.training.loop import load_run_config

    updates = {key: value for key, value in (("data", args.data), ("kimg", args.kimg), ("batch_size", args.batch_size), ("seed", args.seed)) if value is not None}
    updates["out"] = args.out
    if args.metric_every is not None:
        updates["schedule"] = {"metric_kimg": args.metric_every}
    privacy = {key: value for key, value in (("epsilon", args.dp_epsilon), ("delta", args.dp_delta), ("noise_multiplier", args.dp_noise_multiplier),
                                             ("max_grad_norm", args.dp_max_grad_norm), ("accountant", args.dp_accountant)) if value is not None}
    if privacy:
        updates["privacy"] = privacy
    if args.resume and (Path(args.out) / "config.json").is_file():
        saved = load_run_config(args.out)
        if args.preset and args.preset != saved.preset:
            updates["preset"] = args.preset  # refused by the resume check with a clear message
        config = apply_overrides(merge(saved, updates), args.overrides)
        return config
    config = resolve_config(args.preset or ("dp" if privacy else "default"), updates, args.overrides)
    if privacy and not config.privacy.enabled:
        raise FaceganError("--dp-* options need --dp-epsilon or --dp-noise-multiplier to turn differential privacy on")
    return config


def run(args: argparse.Namespace) -> int:
    from facegan.config import to_dict
    from facegan.training.loop import train

    config = build_config(args)
    if args.dry_run:
        config.validate()
        print(json.dumps(to_dict(config), indent=2, sort_keys=True))
        return 0
    result = train(config, resume=args.resume, progress=not args.no_progress)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, one process reports
        return 0
    state = "interrupted at" if result.interrupted else "finished"
    print(f"{state} {result.kimg:.1f} kimg in {result.seconds:.0f} s ({result.img_per_s:.0f} img/s)")
    print(f"run folder: {result.run_dir}")
    print(f"export:     {result.export_dir}")
    if result.interrupted:
        print(f"resume with: facegan train --out {result.run_dir} --resume")
    return 0
