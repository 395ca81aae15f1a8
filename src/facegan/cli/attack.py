"""`facegan attack`: adversarial attacks on a recogniser's verification pairs (dodging / impersonation), RobFR protocol."""
from __future__ import annotations

import argparse
from pathlib import Path

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import parse_int
from facegan.cli.provenance import add_provenance_options
from facegan.errors import FaceganError

EXAMPLES = """\
examples:
  facegan attack dlib --data data/lfw --pairs pairs.txt --mode dodging --attack pgd --eps 2/255,4/255,8/255 --out results/dlib-pgd
  facegan attack runs/recog --data data/faces --pairs pairs.txt --mode impersonation --attack fgsm --eps 4/255 \\
      --out runs/recog/attacks/fgsm                        # the report card of runs/recog shows it
  facegan attack runs/recog --data data/faces --pairs pairs.txt --attack cw --norm l2 --eps 255 --minimal --out results/cw
  facegan attack lbph --data data/faces --pairs pairs.txt --attack square --eps 8/255 --steps 500 --out results/lbph-square
  facegan attack runs/recog --data data/faces --pairs pairs.txt --defence purify --generator runs/gan --eot 4 --out results/purify

Budgets are on the 0..255 scale (RobFR): 4/255 and 4 are the same L-inf budget of 4 grey levels; an L2 budget is
the norm of the perturbation in grey levels over all pixels. Dodging attacks same-person pairs, impersonation
different-person pairs; only the pairs the recogniser gets right clean are attacked. The left image of a pair is
perturbed and judged as the saved PNG (exactly what any client reads). For dlib the PNGs are verified again by
dlib's own C++ recogniser (success_rate_real_dlib). OUT receives attack.json, pairs.csv, adversarial/NNNNN.png
and, with several budgets, attack_curve.png.
"""


def register(commands) -> None:
    parser = commands.add_parser("attack", help="adversarial attacks on a face recogniser's verification pairs",
                                 epilog=EXAMPLES, formatter_class=ExamplesFormatter)
    parser.add_argument("recogniser", metavar="RECOGNISER", help="registered name (dlib, pixel, lbph) or a `facegan recog train` run/export")
    parser.add_argument("--data", required=True, metavar="DATASET", help="prepared dataset with identity labels")
    parser.add_argument("--pairs", required=True, metavar="PAIRS_TXT", help="LFW-format pairs.txt (LFW's own, or `facegan data pairs`)")
    parser.add_argument("--out", required=True, metavar="DIR", help="results folder (e.g. RUN/attacks/NAME for a recogniser run)")
    parser.add_argument("--mode", default="dodging", help="dodging (same-person pairs rejected) or impersonation (different people accepted)")
    parser.add_argument("--attack", default="pgd", help="fgsm, pgd, cw (L2 only) or square (score-based black box)")
    parser.add_argument("--norm", default="linf", help="linf or l2")
    parser.add_argument("--eps", default="4/255", help="budget(s) on the 0..255 scale, comma-separated: 4/255 or 2,4,8")
    parser.add_argument("--steps", default=None, help="iterations (pgd, cw; default 20) or queries (square; default 1000); "
                                                     "fgsm takes one step (recorded as 1)")
    parser.add_argument("--minimal", action="store_true", help="also binary-search each pair's smallest successful budget")
    parser.add_argument("--defence", default="none", help="none, jpeg, blur or purify (GAN projection; needs --generator)")
    parser.add_argument("--generator", default=None, metavar="RUN", help="the generator run/export that --defence purify projects onto")
    parser.add_argument("--quality", default=None, help="JPEG quality of --defence jpeg (default 75)")
    parser.add_argument("--kernel", default=None, help="median filter size of --defence blur (odd, default 3)")
    parser.add_argument("--purify-steps", default=None, help="projection steps of --defence purify (default 50)")
    parser.add_argument("--purify-starts", default=None, help="random starts of --defence purify (default 1)")
    parser.add_argument("--no-adaptive", action="store_true", help="attack the recogniser without the defence (non-adaptive, for comparison)")
    parser.add_argument("--eot", default="1", help="average the margin over N draws of a randomised defence (EOT)")
    parser.add_argument("--max-pairs", default=None, help="attack at most N pairs of the chosen kind (pairs.txt order)")
    parser.add_argument("--batch-size", default="32", help="pairs per attack batch")
    parser.add_argument("--seed", default="0", help="seed of the random starts")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_provenance_options(parser)
    parser.set_defaults(handler=run_attack)


DEFAULT_SQUARE_QUERIES = 1000


def run_attack(args: argparse.Namespace) -> int:
    from facegan.attacks import check_attack
    from facegan.data.dataset import FaceDataset
    from facegan.robustness.evaluate import MODES, parse_budgets, attack_pairs, check_attack_out

    # Cheap checks first, in the order a user reads the command line; nothing slow has started yet.
    if args.mode not in MODES:
        raise FaceganError(f"unknown --mode {args.mode!r}; choose dodging (same-person pairs) or impersonation (different-person pairs)")
    check_attack(args.attack, args.norm)
    budgets = parse_budgets(args.eps)
    # A score-based black box needs many queries: 20 would say almost nothing about robustness.
    steps = parse_int("--steps", args.steps if args.steps is not None else (DEFAULT_SQUARE_QUERIES if args.attack == "square" else 20), 1, 100_000)
    eot = parse_int("--eot", args.eot, 1, 1000)
    max_pairs = parse_int("--max-pairs", args.max_pairs, 1)
    batch_size = parse_int("--batch-size", args.batch_size, 1, 100_000)
    seed = parse_int("--seed", args.seed, 0, 2**63 - 1)
    from facegan.robustness.defences import DEFENCES, MAX_KERNEL, MAX_QUALITY

    if args.defence not in DEFENCES:
        raise FaceganError(f"unknown defence {args.defence!r:.40}; choose one of {', '.join(DEFENCES)}")
    defence_options: dict = {}
    for option, key, owner, low, high in (("--quality", "quality", "jpeg", 1, MAX_QUALITY), ("--kernel", "kernel", "blur", 3, MAX_KERNEL),
                                          ("--purify-steps", "steps", "purify", 1, 100_000), ("--purify-starts", "starts", "purify", 1, 256)):
        value = getattr(args, key if key in ("quality", "kernel") else f"purify_{key}")
        if value is not None:
            if args.defence != owner:
                raise FaceganError(f"{option} is an option of --defence {owner}; give --defence {owner} or drop {option}")
            defence_options[key] = parse_int(option, value, low, high)
    if args.generator is not None:
        if args.defence != "purify":
            raise FaceganError("--generator is the generator of --defence purify; give --defence purify or drop --generator")
        defence_options["generator"] = args.generator
    if args.defence == "purify":
        defence_options["seed"] = seed  # the purification draws are seeded like the attack's random starts
    if args.defence == "none" and (args.no_adaptive or eot != 1):
        raise FaceganError(f"{'--no-adaptive' if args.no_adaptive else '--eot'} applies to a defence; give --defence jpeg, blur or purify")
    if not Path(args.pairs).exists():
        raise FaceganError(f"pairs file not found: {args.pairs} (write one with `facegan data pairs {args.data} --out {args.pairs}`)")
    if Path(args.pairs).is_dir():
        raise FaceganError(f"pairs file {args.pairs} is a folder; give the pairs.txt file")
    dataset = FaceDataset.load(args.data)
    check_attack_out(args.out, dataset.path)  # before the recogniser loads
    from facegan.cli.provenance import provenance_from_args
    from facegan.provenance.record import COMPOSITE

    provenance = provenance_from_args(args, COMPOSITE, "attack")
    record = attack_pairs(
        args.recogniser, dataset, args.pairs, args.out, mode=args.mode, attack=args.attack, norm=args.norm, eps=budgets,
        steps=steps, minimal=args.minimal, defence=args.defence, defence_options=defence_options, adaptive=not args.no_adaptive,
        eot=eot, seed=seed, batch_size=batch_size, max_pairs=max_pairs, progress=not args.no_progress, device=args.device,
        provenance=provenance,
    )
    print(format_record(record))
    print(f"\nwritten: {Path(args.out) / 'attack.json'} (+ {', '.join(record['files'].values())})")
    return 0


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def format_record(record: dict) -> str:
    """The attack's numbers as a small plain-text table."""
    defence = record["defence"] or "none"
    if record["defence"]:
        defence += " (adaptive, BPDA)" if record["adaptive"] else " (non-adaptive)"
        defence += f", EOT {record['eot']}" if record["eot"] > 1 else ""
    rows = [
        ("recogniser", f"{record['recogniser']} v{record['recogniser_version']}"),
        ("attack", f"{record['attack']} {record['norm']} {record['mode']}, {record['steps']} step{'' if record['steps'] == 1 else 's'}, seed {record['seed']}"),
        ("defence", defence),
        ("pairs", f"{record['num_pairs']} of that kind, {record['num_attacked']} correct clean and attacked"),
        ("clean accuracy", _rate(record["clean_accuracy"])),
        *[(f"eps {row['eps']:g}", f"success {_rate(row['success_rate'])}, robust accuracy {_rate(row['robust_accuracy'])}")
          for row in record["budgets"]],
        ("median L-inf / L2", f"{_number(record['median_linf'])} / {_number(record['median_l2'])} ({record['median_over']})"),
    ]
    if "success_rate_real_dlib" in record:
        rows.append(("real dlib success", f"{_rate(record['success_rate_real_dlib'])} (port: {_rate(record['success_rate'])})"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
