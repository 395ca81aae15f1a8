"""`facegan recog train`: train (or resume) a face recogniser on identity-labelled datasets.

`register(verbs)` adds the `train` verb to the `recog` group (built by `facegan.cli.recog`).
"""
from __future__ import annotations

import argparse
import json

from facegan.cli.common import ExamplesFormatter
from facegan.errors import FaceganError
from facegan.cli.progress import TrainingProgress

EXAMPLES = """\
examples:
  facegan recog train --data data/rendered32 --out runs/recog --steps 2000
  facegan recog train --data data/rendered32 --out runs/cos --epochs 5 --head cosface --embedding-size 256
  facegan recog train --data data/real --data data/synth --mix 0.5 --out runs/mixed --steps 3000   # half of each batch synthetic
  facegan recog train --data data/rendered32 --out runs/robust --steps 2000 --adversarial-eps 4/255 --adversarial-steps 3   # PGD-AT
  facegan recog train --data data/rendered32 --out runs/robust-ft --init runs/recog --steps 1500 --adversarial-eps 4/255 \
      --adversarial-steps 3 --adversarial-loss trades --set optimizer.lr=5e-4   # fine-tune a trained recogniser with TRADES
  facegan recog train --out runs/recog --resume --steps 4000        # continue exactly where it stopped
  facegan recog eval runs/recog --data data/lfw --pairs pairs.txt  # the LFW protocol on the export
"""


def register(verbs) -> None:
    parser = verbs.add_parser("train", help="train (or resume) a face recogniser (ArcFace/CosFace margin heads)", epilog=EXAMPLES,
                              formatter_class=ExamplesFormatter)
    parser.add_argument("--data", action="append", default=None, metavar="DATASET",
                        help="identity-labelled prepared dataset (repeatable; identities of different datasets are kept apart)")
    parser.add_argument("--mix", type=float, default=None, help="with two --data: the share of each batch from the second (default: by size)")
    parser.add_argument("--out", required=True, help="run folder (runs/NAME)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="training length in optimizer steps")
    length.add_argument("--epochs", type=float, default=None, help="training length in passes over the training images")
    parser.add_argument("--head", choices=["arcface", "cosface"], default=None, help="margin head (default: arcface, s=64 m=0.5; cosface m=0.4)")
    parser.add_argument("--embedding-size", type=int, default=None, help="descriptor length (default: 128)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default: 128)")
    parser.add_argument("--seed", type=int, default=None, help="seed for weights, data order, augmentation and the calibration split")
    parser.add_argument("--init", default=None, metavar="RECOGNISER",
                        help="start from this recogniser run/export's weights (same backbone), e.g. to fine-tune it adversarially")
    adversarial = parser.add_argument_group("adversarial training (PGD-AT, Madry et al.; budgets on the 0..255 scale)")
    adversarial.add_argument("--adversarial-eps", default=None, metavar="EPS",
                             help="train on PGD-perturbed batches within this budget, e.g. 4/255 or 4 (default: 0 = off)")
    adversarial.add_argument("--adversarial-steps", type=int, default=None, metavar="N",
                             help="PGD iterations per batch (default: 3; each costs one more forward/backward pass)")
    adversarial.add_argument("--adversarial-norm", default=None, metavar="linf|l2", help="threat model (default: linf)")
    adversarial.add_argument("--adversarial-step-size", default=None, metavar="STEP",
                             help="PGD step on the 0..255 scale, e.g. 1/255 (default: 2.5 * eps / steps)")
    adversarial.add_argument("--adversarial-loss", default=None, metavar="madry|trades|trades-impersonation",
                             help="madry: train on the perturbed batch (default); trades: clean loss + beta * embedding drift; "
                                  "trades-impersonation: trades with half of each batch attacked toward another identity")
    adversarial.add_argument("--adversarial-clean-weight", type=float, default=None, metavar="W",
                             help="madry: weight of the clean loss in the update, 0..1 (default: 0)")
    adversarial.add_argument("--adversarial-beta", type=float, default=None, metavar="BETA",
                             help="trades, trades-impersonation: weight of the drift term 1 - cos(clean, perturbed embedding) (default: 6)")
    adversarial.add_argument("--adversarial-impersonation-weight", type=float, default=None, metavar="W",
                             help="trades-impersonation: weight of the similarity-rise term relative to beta (default: 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set optimizer.kind=sgd --set optimizer.lr=0.1 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def build_recog_config(args: argparse.Namespace):
    """Defaults < flags < --set; on --resume the saved run's config is the base instead."""
    from facegan.config import apply_overrides, from_dict, merge
    from facegan.recognition.config import RecogConfig
    from facegan.run import Run

    updates: dict = {"out": args.out}
    for key, value in (("data", args.data), ("mix", args.mix), ("steps", args.steps), ("epochs", args.epochs),
                       ("batch_size", args.batch_size), ("seed", args.seed), ("init", args.init)):
        if value is not None:
            updates[key] = value
    if args.steps is not None:
        updates["epochs"] = 0.0
    if args.epochs is not None:
        updates["steps"] = 0
    if args.head is not None:
        updates["head"] = {"kind": args.head}
    if args.embedding_size is not None:
        updates["backbone"] = {"embedding_size": args.embedding_size}
    adversarial = _adversarial_updates(args)
    if adversarial:
        updates["adversarial"] = adversarial
    if args.resume and Run(args.out).has_config():
        from facegan.recognition.training import load_recog_run_config

        base = load_recog_run_config(args.out)
    else:
        base = from_dict(RecogConfig, {})
    config = apply_overrides(merge(base, updates), args.overrides)
    if not config.adversarial.enabled:
        # Without a budget PGD-AT is off and these would be silently ignored (as `facegan attack` refuses --quality without jpeg).
        for option, value in (("--adversarial-steps", args.adversarial_steps), ("--adversarial-step-size", args.adversarial_step_size),
                              ("--adversarial-norm", args.adversarial_norm), ("--adversarial-loss", args.adversarial_loss),
                              ("--adversarial-clean-weight", args.adversarial_clean_weight), ("--adversarial-beta", args.adversarial_beta),
                              ("--adversarial-impersonation-weight", args.adversarial_impersonation_weight)):
            if value is not None:
                raise FaceganError(f"{option} is an option of adversarial training, which is off (no --adversarial-eps); "
                                   f"give --adversarial-eps, e.g. 4/255, or drop {option}")
    return config


def _adversarial_updates(args: argparse.Namespace) -> dict:
    """The --adversarial-* flags as config values; a bad budget or norm is one error line naming the flag."""
    updates: dict = {}
    if args.adversarial_steps is not None:
        updates["steps"] = args.adversarial_steps
    if args.adversarial_norm is not None:
        from facegan.recognition.config import ADVERSARIAL_NORMS

        if args.adversarial_norm not in ADVERSARIAL_NORMS:
            raise FaceganError(f"unknown norm {args.adversarial_norm!r:.40} for --adversarial-norm; choose linf or l2")
        updates["norm"] = args.adversarial_norm
    if args.adversarial_loss is not None:
        from facegan.recognition.config import ADVERSARIAL_LOSSES

        if args.adversarial_loss not in ADVERSARIAL_LOSSES:
            raise FaceganError(f"unknown loss {args.adversarial_loss!r:.40} for --adversarial-loss; choose {', '.join(ADVERSARIAL_LOSSES)}")
        updates["loss"] = args.adversarial_loss
    for key, value in (("clean_weight", args.adversarial_clean_weight), ("beta", args.adversarial_beta),
                       ("impersonation_weight", args.adversarial_impersonation_weight)):
        if value is not None:
            updates[key] = value
    if args.adversarial_eps is not None or args.adversarial_step_size is not None:
        from facegan.attacks.budget import parse_budget  # imports torch: only when a budget is given

        if args.adversarial_eps is not None:
            updates["eps"] = parse_budget(args.adversarial_eps, "--adversarial-eps")
        if args.adversarial_step_size is not None:
            updates["step_size"] = parse_budget(args.adversarial_step_size, "--adversarial-step-size")
    return updates


def run(args: argparse.Namespace) -> int:
    from facegan.config import to_dict

    config = build_recog_config(args)
    if args.dry_run:
        config.validate()
        print(json.dumps(to_dict(config), indent=2, sort_keys=True))
        return 0
    from facegan.recognition.training import train_recogniser

    with TrainingProgress(enabled=not args.no_progress) as progress:
        result = train_recogniser(config, resume=args.resume, progress=progress.update)
    state = "interrupted at" if result.interrupted else "finished"
    print(f"{state} step {result.num_steps} in {result.seconds:.0f} s ({result.img_per_s:.0f} img/s)")
    print(f"run folder: {result.run_dir}")
    print(f"export:     {result.export_dir}")
    if result.interrupted:
        print(f"resume with: facegan recog train --out {result.run_dir} --resume")
        return 130
    return 0
