"""`facegan train`: train or resume a GAN."""
from __future__ import annotations

import argparse
import json
import logging
import os

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
    from facegan.run import Run

    if args.resume and Run(args.out).has_config():
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
    reporting = os.environ.get("RANK", "0") == "0"  # under torchrun, one process reports
    bar = _ProgressBar(enabled=reporting and not args.no_progress)
    # Other ranks stay quiet (a NullHandler also keeps logging's last-resort printer away).
    handler = _LogHandler(bar) if reporting else logging.NullHandler()
    library_logger = logging.getLogger("facegan")
    library_logger.addHandler(handler)
    previous_level = library_logger.level
    library_logger.setLevel(logging.INFO)
    try:
        result = train(config, resume=args.resume, progress=bar.update, on_log=bar.show_stats)
    finally:
        bar.close()
        library_logger.removeHandler(handler)
        library_logger.setLevel(previous_level)
    if not reporting:
        return 130 if result.interrupted else 0
    state = "interrupted at" if result.interrupted else "finished"
    print(f"{state} {result.kimg:.1f} kimg in {result.seconds:.0f} s ({result.img_per_s:.0f} img/s)")
    print(f"run folder: {result.run_dir}")
    print(f"export:     {result.export_dir}")
    if result.interrupted:
        print(f"resume with: facegan train --out {result.run_dir} --resume")
        return 130  # the shell convention for a run ended by Ctrl-C (after its clean stop)
    return 0


class _ProgressBar:
    """The tqdm bar of `facegan train`, counted in images (integers: it never runs past its total) and shown in kimg."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def update(self, kimg_done: float, kimg_total: float) -> None:
        if not self.enabled:
            return
        total = int(round(kimg_total * 1000))
        done = min(int(round(kimg_done * 1000)), total)
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="kimg", unit_scale=0.001, desc="train", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} kimg [{elapsed}<{remaining}{postfix}]")
            return
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def show_stats(self, stats: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"D {stats.get('loss_d', 0):.3f} G {stats.get('loss_g', 0):.3f} {stats['img_per_s']:.0f} img/s")

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _LogHandler(logging.Handler):
    """The library's log messages (stopping early, resuming from scratch) as plain lines above the bar."""

    def __init__(self, bar: _ProgressBar) -> None:
        super().__init__(logging.INFO)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.name == "facegan.training" and message.startswith("stopping: "):
                message = "\n" + message  # after the ^C the terminal echoed
            self.bar.write(message)
        except Exception:  # a log line must never break training
            self.handleError(record)
