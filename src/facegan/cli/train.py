"""`facegan train`: train or resume a GAN."""
from __future__ import annotations

import argparse
import json
import os
import sys

from facegan.cli.common import ExamplesFormatter
from facegan.cli.progress import TrainingProgress
from facegan.errors import FaceganError

EXAMPLES = """\
examples:
  facegan train --data data/lfw32 --out runs/lfw32 --kimg 50
  facegan train --data data/lfw32 --out runs/dcgan --preset seed-dcgan
  facegan train --data data/lfw32 --out runs/wide --set model.g_channels=256 --set loss.kind=hinge
  facegan train --data data/lfw32 --out runs/people --condition identity   # many images of each new person
  facegan train --data data/lfw32 --out runs/x --dry-run      # print the resolved config, do nothing
  facegan train --data data/lfw32 --out runs/private --dp-epsilon 10   # differentially private (preset dp)
  facegan train --data data/private --out runs/dp-ft --init-from runs/public --dp-epsilon 10   # DP fine-tuning of a public model
  facegan train --out runs/lfw32 --resume --kimg 100          # continue exactly where it stopped
  facegan train --data data/lfw32 --out runs/ddp --nproc-per-node 2   # data-parallel, 2 processes (gloo on CPU)
"""


# Flags that set a config field: their help shows the field's default (and a preset's, where one differs).
FLAG_FIELDS = {
    "kimg": "kimg",
    "batch_size": "batch_size",
    "seed": "seed",
    "dp_epsilon": "privacy.epsilon",
    "dp_noise_multiplier": "privacy.noise_multiplier",
    "dp_max_grad_norm": "privacy.max_grad_norm",
    "dp_accountant": "privacy.accountant",
    "metric_every": "schedule.metric_kimg",
    "condition": "identity.condition",
}


def register(commands) -> None:
    # The full help (preset names, every config field's docstring) needs the training config, whose
    # import pulls in torch: it is built only when --help is asked for, so `facegan` itself starts fast.
    parser = commands.add_parser("train", help="train (or resume) a GAN on a prepared dataset", epilog=EXAMPLES,
                                 formatter_class=ExamplesFormatter, add_help=False)
    parser.add_argument("-h", "--help", action=TrainHelpAction, help="show this help, with every config field, and exit")
    parser.add_argument("--data", help="prepared dataset folder (from `facegan data prepare`)")
    parser.add_argument("--out", required=True, help="run folder (runs/NAME)")
    parser.add_argument("--preset", default=None, help="starting point for every field (default: default; dp with --dp-* flags)")
    parser.add_argument("--kimg", type=float, default=None, help="training length in thousands of real images shown")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step")
    parser.add_argument("--init-from", default=None, metavar="RUN",
                        help="warm-start G and D from this run (e.g. pretrained on public data; its data must share no image with --data)")
    parser.add_argument("--seed", type=int, default=None, help="seed for weights, data order, noise and augmentation")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set loss.r1_gamma=1 (repeatable; fields listed below)")
    private = parser.add_argument_group("differential privacy (DP-SGD on the discriminator's real-image gradients)")
    private.add_argument("--dp-epsilon", type=float, default=None, help="total privacy budget epsilon; the noise is derived from it and training stops before exceeding it")
    private.add_argument("--dp-delta", type=float, default=None, help="delta of the guarantee (default: 1/(10 N))")
    private.add_argument("--dp-noise-multiplier", type=float, default=None, help="noise std / max grad norm, instead of deriving it from --dp-epsilon")
    private.add_argument("--dp-max-grad-norm", type=float, default=None, help="per-face gradient clipping bound C")
    private.add_argument("--dp-accountant", choices=["rdp", "prv"], default=None, help="Opacus privacy accountant")
    parser.add_argument("--condition", choices=["none", "identity"], default=None,
                        help="identity: learn new people, many images each (identity labels -> conditional G + projection D; "
                             "no labels -> split latent + dlib identity loss; --set identity.* tunes it)")
    parser.add_argument("--metric-every", type=float, default=None, metavar="KIMG",
                        help="measure FD/KID (face space) every KIMG during training, log them and keep the best export in export-best/")
    parser.add_argument("--fingerprint", default=None, metavar="FP",
                        help="when training ends, fine-tune the export so that this learned fingerprint's decoder reads its key in "
                        "the faces (fingerprint.tune_*); --set fingerprint.mark_data=true also trains on a copy of --data with the "
                        "fingerprint in every image (made once beside it as DATA-fp<id>; with fingerprint.weight=0 the marked data "
                        "alone teaches the key, Yu et al.); the export records it (`facegan detect`)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                        help="data-parallel training in N processes on this machine (started under torch.distributed.run; not with --dp-*)")
    parser.set_defaults(handler=run)


class TrainHelpAction(argparse.Action):
    """`facegan train --help`: the preset names as --preset's choices, flag defaults, and every config field."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from facegan.training.config import PRESETS

        defaults = _preset_defaults()
        for action in parser._actions:
            if action.dest == "preset":
                action.choices = list(PRESETS)
            key = FLAG_FIELDS.get(action.dest)
            if key and action.help and "default:" not in action.help:
                action.help += f" (default: {_describe_default(key, defaults)})"
        parser.epilog = f"{config_fields_help(defaults)}\n{EXAMPLES}"
        parser.print_help()
        parser.exit()


def _preset_defaults() -> dict[str, dict[str, object]]:
    """Each preset's resolved value of every config field, by dotted key."""
    from facegan.config import to_dict
    from facegan.training.config import PRESETS, resolve_config

    def flatten(data: dict, prefix: str = "") -> dict[str, object]:
        flat: dict[str, object] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[prefix + key] = value
        return flat

    return {name: flatten(to_dict(resolve_config(name))) for name in PRESETS}


def _describe_default(key: str, defaults: dict[str, dict[str, object]]) -> str:
    """'64', or '64; seed-dcgan: 256' where a preset changes it."""
    base = defaults["default"][key]
    others = [f"{name}: {_show(values[key])}" for name, values in defaults.items() if name != "default" and values[key] != base]
    return "; ".join([_show(base), *others])


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value) if value == "" else value
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_fields_help(defaults: dict[str, dict[str, object]] | None = None, width: int = 100) -> str:
    """The epilog section listing every config field with its type, default and docstring."""
    import textwrap

    from facegan.config import describe_fields
    from facegan.training.config import TrainConfig

    defaults = defaults or _preset_defaults()
    lines = ["config fields (--set KEY=VALUE; defaults, and a preset's value where it differs):"]
    for key, type_name, _default, doc in describe_fields(TrainConfig):
        if key in ("data", "out", "preset"):  # set by their own flags
            continue
        head = f"{key} ({type_name}, default {_describe_default(key, defaults)})"
        lines.extend(textwrap.wrap(f"{head}: {doc}" if doc else head, width=width, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines) + "\n"


def build_config(args: argparse.Namespace):
    """Defaults < preset < flags; on --resume the saved run's config is the base instead."""
    from facegan.config import apply_overrides, merge
    from facegan.training.config import resolve_config
    from facegan.training.loop import load_run_config

    updates = {key: value for key, value in (("data", args.data), ("kimg", args.kimg), ("batch_size", args.batch_size), ("seed", args.seed)) if value is not None}
    updates["out"] = args.out
    if args.init_from is not None:
        updates["init_from"] = args.init_from
    if args.metric_every is not None:
        updates["schedule"] = {"metric_kimg": args.metric_every}
    privacy = {key: value for key, value in (("epsilon", args.dp_epsilon), ("delta", args.dp_delta), ("noise_multiplier", args.dp_noise_multiplier),
                                             ("max_grad_norm", args.dp_max_grad_norm), ("accountant", args.dp_accountant)) if value is not None}
    if privacy:
        updates["privacy"] = privacy
    if args.condition is not None:
        updates["identity"] = {"condition": args.condition}
    from facegan.run import Run

    if args.resume and Run(args.out).has_config():
        from facegan.training.loop import check_not_federated

        check_not_federated(args.out)
        saved = load_run_config(args.out)
        if args.preset and args.preset != saved.preset:
            updates["preset"] = args.preset  # refused by the resume check with a clear message
        config = apply_overrides(merge(saved, updates), args.overrides)
        return config
    config = resolve_config(args.preset or ("dp" if privacy else "default"), updates, args.overrides)
    if privacy and not config.privacy.enabled:
        for flag, key in (("--dp-epsilon", "epsilon"), ("--dp-noise-multiplier", "noise_multiplier")):
            if key in privacy:
                raise FaceganError(f"{flag} must be positive to turn differential privacy on, got {privacy[key]:g}")
        raise FaceganError("--dp-* options need --dp-epsilon or --dp-noise-multiplier to turn differential privacy on")
    if config.privacy.enabled:
        # TrainConfig.validate checks ranges only (training never imports privacy); whether the recipe can be
        # trained privately is privacy's rule, checked here too so that --dry-run refuses what train would.
        from facegan.privacy.validate import check_private_config

        check_private_config(config)
    return config


def _fingerprint_data(args: argparse.Namespace, config):
    """`--fingerprint FP`: the run learns its key; with fingerprint.mark_data, on the fingerprinted copy of its data (made
    now unless it exists)."""
    from facegan.fingerprint.apply import ensure_fingerprinted, fingerprinted_path
    from facegan.fingerprint.fingerprint import load_fingerprint

    if args.resume:
        raise FaceganError("--fingerprint applies when a run starts; a resumed run keeps the data it was trained on")
    config.fingerprint.validate()
    mark_data = config.fingerprint.mark_data
    if mark_data is not True and config.fingerprint.weight == 0:
        raise FaceganError("--fingerprint with fingerprint.weight=0 and fingerprint.mark_data=false would teach the generator "
                           "nothing; add --set fingerprint.mark_data=true (the marked data alone) or drop the weight")
    if args.nproc_per_node is not None and args.nproc_per_node > 1:
        if mark_data is True:
            raise FaceganError("--fingerprint with --nproc-per-node: fingerprint the data first (`facegan fingerprint apply DATA "
                               "--fingerprint FP --out DATA-fp`) and train on that with --set fingerprint.path=FP")
        raise FaceganError("--fingerprint with --nproc-per-node: train without it, then `facegan fingerprint embed RUN "
                           "--fingerprint FP --out DIR`")
    fingerprint = load_fingerprint(args.fingerprint)
    config.fingerprint.path = os.path.abspath(args.fingerprint)  # the fingerprint loss reads its decoder (fingerprint.weight=0: off)
    if mark_data is not True:
        return config
    if not config.data:
        raise FaceganError("--fingerprint with fingerprint.mark_data needs --data DATASET (the images to fingerprint)")
    if args.dry_run:
        config.data = str(fingerprinted_path(config.data, fingerprint.id))
        return config
    dataset = ensure_fingerprinted(config.data, fingerprint)
    print(f"training on {dataset.path} ({len(dataset)} images with fingerprint {fingerprint.id[:16]}, {fingerprint.bits} bits)")
    config.data = str(dataset.path)
    return config


def run(args: argparse.Namespace) -> int:
    from facegan.config import to_dict
    from facegan import train

    config = build_config(args)
    if args.fingerprint is not None:
        config = _fingerprint_data(args, config)
    if args.nproc_per_node is not None:
        from facegan.cli.launch import check_launch, launch, worker_argv

        check_launch(args.nproc_per_node, config)
        if args.nproc_per_node > 1 and not args.dry_run:
            return launch(worker_argv(getattr(args, "argv", None) or sys.argv[1:]), args.nproc_per_node)
    if args.dry_run:
        config.validate()
        print(json.dumps(to_dict(config), indent=2, sort_keys=True))
        return 0
    reporting = os.environ.get("RANK", "0") == "0"  # under torchrun, one process reports
    with TrainingProgress(enabled=not args.no_progress, reporting=reporting) as progress:
        result = train(config, resume=args.resume, progress=progress.update, on_log=progress.show_stats)
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
