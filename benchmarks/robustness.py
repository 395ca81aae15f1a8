"""Adversarial robustness of face recognisers: one table, recogniser x defence, on the same pairs.

Rows (each defence attacked end to end: BPDA through JPEG, median blur and purification, EOT over
purification's random starts; the non-adaptive purification row shows what skipping that would claim):

    facegan CNN, none | jpeg | blur | purify (BPDA+EOT) | purify (non-adaptive) ; facegan CNN PGD-AT, none ;
    facegan CNN PGD-AT fine-tuned (`recog train --init` from the plain CNN, TRADES-cosine by default), none | jpeg | blur
    (rows ft+jpeg, ft+blur: the stacked defence, the fine-tuned network behind the input filter, attacked end to end with
    BPDA) ; dlib (LFW faces, mirror pairs, 150 px chips), none

For an adversarially trained network plain PGD with a random start is the adaptive attack. Against gradient masking,
the plain and the fine-tuned CNN (with `--checks ft+blur` also the stacked defence, BPDA) are attacked at the middle budget with PGD of `--check-steps` steps and
`--check-restarts` random starts (a pair survives only if every start fails) and with the gradient-free Square attack
(`--check-queries`); `--rows` runs a subset of the rows (the undefended CNN always).

Columns: clean verification accuracy (10-fold protocol, through the defence), robust accuracy under PGD
L-inf at 2, 4, 8 (0..255 scale; dodging on same pairs, impersonation on different pairs, over the pairs of
that kind), the median minimal L-inf perturbation (binary search, PGD) for both modes, and for dlib the
success rate when the saved PNGs are verified again by dlib's own C++ recogniser.

Data: builtin:rendered-faces at 32 px, recognisers trained on `--train-identities` people and tested on
`--test-identities` others (LFW-style pairs, 10 folds). dlib cannot verify 32 px rendered faces (65 %), so
its row uses the 100 real faces of builtin:lfw-subset upscaled to 150 px chips, with mirror pairs (face i
vs mirrored face i = same; vs mirrored face j = different), stated in the output.

Cross-check: facegan's PGD and FGSM against IBM ART 1.20.1 on the plain CNN, same pairs and budget: the
success rates and the time; prints `ratio = X` (ART's time / facegan's for PGD; above 1 = facegan faster).

    PYTHONPATH=src .venv/bin/python benchmarks/robustness.py [--work runs/bench-robustness] \
        [--generator runs/demo/edit-gan] [--json out/robustness.json] [--rows none,jpeg,blur,ft] [--threads 1]

Targets (issue 10): real-dlib transfer within 5 points of the port's; one defence raises robust accuracy
at 4/255 by >= 20 points under the adaptive attack at a clean-accuracy cost of at most 5 points.

Measured 2026-12-02 with the defaults and --recog-steps 800 (46 min on 2 shared cores; table in the
README): real-dlib success equal to the port's (dodging 100.0 / 100.0 %, impersonation 25.0 / 25.0 %);
ART and facegan equal (PGD 22.6 %, FGSM 19.7 %), ratio = 2.08. Robust accuracy at 4/255, mean of the
modes, undefended CNN 62.7 % at 87.3 % clean: median blur +10.0 points (clean -0.7), JPEG +7.7,
purification -5.2 at 19 points clean cost, PGD-AT eps 8 -1.3 at 22 points clean cost: the defence
target is not met.

Rerun 2026-12-03 with --recog-steps 800 --rows none,jpeg,blur,ft --threads 1 (a new plain CNN, 1200 fine-tuning
steps, TRADES-cosine eps 4, 3 steps, beta 100): undefended 60.0 % at 87.7 % clean; PGD-AT fine-tuned +14.7 points
at +1.3 clean, median blur +12.3, JPEG +8.3: still not met. The masking checks leave the figures unchanged (README).

Rerun 2026-12-03 evening with bf16 recognisers, --rows none,jpeg,blur,ft,ft+jpeg,ft+blur (defaults otherwise, 286 s of
attacks with the recognisers cached): undefended 58.0 % at 90.3 % clean; the stacked defence, the fine-tuned CNN behind
the median filter (BPDA end to end), +22.3 points at 2.0 points clean cost: the target is met (JPEG instead +20.7,
fine-tuned alone +18.7, median alone +11.3). --checks ft+blur: PGD 50 steps x 3 restarts 86.7 / 73.3 % (+22.0), Square
weaker (README).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RENDERED = "builtin:rendered-faces"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="runs/bench-robustness", help="datasets, recogniser runs and attack folders (reused when done)")
    parser.add_argument("--generator", default="runs/demo/edit-gan", help="a GAN run on rendered faces for purification ('' skips it)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train-identities", type=int, default=300)
    parser.add_argument("--test-identities", type=int, default=100)
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--pairs-per-fold", type=int, default=15, help="same and different pairs per fold (10 folds)")
    parser.add_argument("--recog-steps", type=int, default=600)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--at-eps", default="8", help="PGD-AT budget (0..255)")
    parser.add_argument("--at-steps", type=int, default=3)
    parser.add_argument("--ft-train-steps", type=int, default=1200, help="fine-tuning steps of the PGD-AT fine-tuned row (0 skips it)")
    parser.add_argument("--ft-eps", default="4", help="its training budget (0..255)")
    parser.add_argument("--ft-steps", type=int, default=3, help="its PGD steps per training batch")
    parser.add_argument("--ft-loss", default="trades", choices=["madry", "trades", "trades-impersonation"],
                        help="its loss (recog train --adversarial-loss)")
    parser.add_argument("--ft-beta", type=float, default=100.0, help="TRADES drift weight")
    parser.add_argument("--ft-impersonation-weight", type=float, default=1.0,
                        help="trades-impersonation: weight of the similarity-rise term relative to beta")
    parser.add_argument("--ft-clean-weight", type=float, default=0.0, help="madry: weight of the clean loss")
    parser.add_argument("--ft-lr", type=float, default=5e-4, help="its learning rate (no warm-up)")
    parser.add_argument("--check-steps", type=int, default=50, help="gradient-masking check: PGD steps of the stronger attack")
    parser.add_argument("--check-restarts", type=int, default=3, help="gradient-masking check: random restarts (a pair falls if any does)")
    parser.add_argument("--check-queries", type=int, default=1000, help="gradient-masking check: Square attack queries")
    parser.add_argument("--checks", default="plain,ft", help="recognisers to check (plain, ft, ft+blur, ft+jpeg; '' skips the checks)")
    parser.add_argument("--rows", default="none,jpeg,blur,purify,at,ft,ft+jpeg,ft+blur,dlib,art",
                        help="rows to run (none = the undefended CNN, always run; art = the ART cross-check)")
    parser.add_argument("--budgets", default="2,4,8")
    parser.add_argument("--attack-steps", type=int, default=10)
    parser.add_argument("--minimal-max", type=float, default=16.0, help="binary search range of the minimal perturbation")
    parser.add_argument("--purify-steps", type=int, default=30)
    parser.add_argument("--eot", type=int, default=2)
    parser.add_argument("--purify-pairs", type=int, default=40, help="attacked pairs per mode for the purification rows")
    parser.add_argument("--purify-attack-steps", type=int, default=5)
    parser.add_argument("--dlib-pairs", type=int, default=40, help="attacked pairs per mode for dlib (0 skips the row)")
    parser.add_argument("--dlib-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads for training and attacks (0 = all cores)")
    parser.add_argument("--json")
    return parser.parse_args(argv)


def ensure_dataset(path: Path, identities: int, per_identity: int, size: int, seed: int):
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.data.pipeline import prepare_dataset

    if (path / MANIFEST_NAME).is_file():
        dataset = FaceDataset.load(path)
        if len(dataset) == identities * per_identity and dataset.resolution == size:
            return dataset
    return prepare_dataset(RENDERED, path, size=size, identities=identities, per_identity=per_identity, seed=seed, progress=False)


def ensure_recogniser(out: Path, data: Path, args: argparse.Namespace, adversarial: dict | None, *, init: Path | None = None,
                      steps: int | None = None, optimizer: dict | None = None) -> Path:
    from facegan.config import from_dict
    from facegan.demo import ensure_trained_steps
    from facegan.recognition.config import RecogConfig
    from facegan.recognition.training import train_recogniser

    settings = {"data": [str(data)], "out": str(out), "steps": steps or args.recog_steps, "batch_size": 64, "head": {"kind": "cosface"},
                "backbone": {"width": args.width}, "runtime": {"num_threads": args.threads}}
    if adversarial:
        settings["adversarial"] = adversarial
    if init is not None:
        settings["init"] = str(init)  # fine-tuning: `facegan recog train --init RECOGNISER`
    if optimizer:
        settings["optimizer"] = optimizer
    ensure_trained_steps(from_dict(RecogConfig, settings), train_recogniser, f"recogniser {out.name}", progress=False)
    return out


def lfw_mirror_dataset(path: Path, different_per_face: int = 1, seed: int = 0):
    """builtin:lfw-subset's 100 faces and their mirrors, as 150 px RGB chips, with identity labels (face i and mirror i)."""
    from PIL import Image
    from skimage import data

    from facegan.data.dataset import MANIFEST_NAME, FaceDataset

    if not (path / MANIFEST_NAME).is_file():
        faces = (data.lfw_subset() * 255).round().astype(np.uint8)
        chips = np.stack([np.asarray(Image.fromarray(face).resize((150, 150), Image.BICUBIC)) for face in faces])
        chips = np.repeat(chips[..., None], 3, axis=-1)
        images = np.concatenate([chips, chips[:, :, ::-1]])
        identity = np.concatenate([np.arange(len(faces)), np.arange(len(faces))])
        names = [f"lfw{index:03d}" for index in range(len(faces))]
        FaceDataset(images, {"source": "builtin:lfw-subset mirror pairs (150 px)", "source_kind": "builtin", "identity_names": names},
                    identity=identity).save(path)
    dataset = FaceDataset.load(path)
    count = len(dataset) // 2
    rng = np.random.default_rng(seed)
    left, right, same, fold = [], [], [], []
    for face in range(count):
        left.append(face), right.append(count + face), same.append(True), fold.append(face % 10)
        for other in rng.choice(np.delete(np.arange(count), face), size=different_per_face, replace=False):
            left.append(face), right.append(count + int(other)), same.append(False), fold.append(face % 10)
    return dataset, (np.array(left), np.array(right), np.array(same), np.array(fold))


def attack_row(recogniser, dataset, pairs, out: Path, budgets: list[float], args: argparse.Namespace, *, steps: int,
               minimal: bool = True, max_pairs: int | None = None, **defence) -> dict:
    """Clean accuracy, robust accuracy per mode and budget, median minimal L-inf per mode, real-dlib transfer (dlib)."""
    from facegan.robustness.evaluate import attack_pairs

    row: dict = {"robust": {}, "minimal_linf": {}, "seconds": 0.0}
    for mode in ("dodging", "impersonation"):
        start = time.perf_counter()
        record = attack_pairs(recogniser, dataset, pairs, out / f"pgd-{mode}", mode=mode, attack="pgd", norm="linf", eps=budgets,
                              steps=steps, max_pairs=max_pairs, **defence)
        row["clean_accuracy"] = record["clean_verification_accuracy"]
        row["robust"][mode] = {f"{entry['eps']:g}": entry["robust_accuracy"] for entry in record["budgets"]}
        row.setdefault("clean_kind", {})[mode] = record["clean_accuracy"]
        if record.get("success_rate_real_dlib") is not None:
            row.setdefault("real_dlib", {})[mode] = {"port": record["success_rate"], "real": record["success_rate_real_dlib"],
                                                      "eps": record["eps"]}
        if minimal:
            minimal_record = attack_pairs(recogniser, dataset, pairs, out / f"pgd-{mode}-minimal", mode=mode, attack="pgd", norm="linf",
                                          eps=args.minimal_max, steps=steps, minimal=True, max_pairs=max_pairs, **defence)
            # None: more than half the pairs resisted the whole search range, so the median is above it.
            median = minimal_record["median_linf"]
            row["minimal_linf"][mode] = median if median is not None or not minimal_record["num_attacked"] else float("inf")
        row["seconds"] += time.perf_counter() - start
    return row


def masking_check(recogniser, dataset, pairs, out: Path, eps: float, args: argparse.Namespace, **defence) -> dict:
    """Robust accuracy at one budget under stronger attacks than the table's, per mode: PGD with `--check-steps` steps and
    `--check-restarts` random starts (a pair counts as robust only if every restart fails), and the score-based Square
    attack (no gradients, so it cannot be masked). If the table's figures came from masked gradients, these would be
    clearly lower (and Square would beat PGD). `defence` (attack_pairs' defence options) checks a defended recogniser
    the same way: PGD through it with BPDA, Square on the deployed path itself."""
    import csv

    from facegan.robustness.evaluate import attack_pairs

    result: dict = {"eps": eps, "pgd_steps": args.check_steps, "restarts": args.check_restarts, "square_queries": args.check_queries}
    for mode in ("dodging", "impersonation"):
        fooled: set[int] = set()
        for restart in range(args.check_restarts):
            record = attack_pairs(recogniser, dataset, pairs, out / f"pgd{args.check_steps}-{mode}-seed{restart}", mode=mode, attack="pgd",
                                  norm="linf", eps=eps, steps=args.check_steps, seed=restart, **defence)
            with open(out / f"pgd{args.check_steps}-{mode}-seed{restart}" / "pairs.csv", newline="") as file:
                fooled |= {int(row["pair"]) for row in csv.DictReader(file) if row["success"] == "1"}
        # Over the pairs of this kind: the right-when-clean ones that no restart fooled.
            if restart == 0:
                result[f"pgd one start {mode}"] = record["robust_accuracy"]
        result[f"pgd {mode}"] = (record["num_attacked"] - len(fooled)) / record["num_pairs"]
        square = attack_pairs(recogniser, dataset, pairs, out / f"square-{mode}", mode=mode, attack="square", norm="linf", eps=eps,
                              steps=args.check_queries, **defence)
        result[f"square {mode}"] = square["robust_accuracy"]
    return result


def art_cross_check(recogniser_path: Path, dataset, pairs_path: Path, work: Path, eps: float, steps: int) -> dict:
    """facegan's PGD/FGSM vs ART's (attack_pairs engine "art") on the same recogniser, pairs, budget and steps: rates and times."""
    from facegan.robustness.evaluate import attack_pairs

    result: dict = {"eps": eps, "steps": steps, "seconds": {}}
    for attack in ("pgd", "fgsm"):
        for engine in ("facegan", "art"):
            start = time.perf_counter()
            record = attack_pairs(str(recogniser_path), dataset, str(pairs_path), work / f"{engine}-{attack}", mode="dodging", attack=attack,
                                  norm="linf", eps=eps, steps=steps, engine=engine)
            result["seconds"][f"{engine} {attack}"] = time.perf_counter() - start
            result[f"{engine} {attack}"] = record["success_rate"]
            result["pairs"] = record["num_attacked"]
    result["ratio"] = result["seconds"]["art pgd"] / result["seconds"]["facegan pgd"]
    return result


def _percent(value) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) and value == value else "-"


def _minimal(value, search_max: float) -> str:
    if value is None:
        return "-"
    return f"> {search_max:g}" if value == float("inf") else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from facegan.attacks.budget import parse_budget

    if args.threads:
        torch.set_num_threads(args.threads)
    from facegan.data.pairs import make_pairs, write_pairs_txt

    # Row and check names are checked before anything slow (datasets, training).
    rows_wanted = set(args.rows.split(","))
    unknown = rows_wanted - {"none", "jpeg", "blur", "purify", "at", "ft", "ft+jpeg", "ft+blur", "dlib", "art"}
    if unknown:
        raise SystemExit(f"error: unknown --rows {sorted(unknown)}; choose from none,jpeg,blur,purify,at,ft,ft+jpeg,ft+blur,dlib,art")
    checks_wanted = set(filter(None, args.checks.split(",")))
    unknown = checks_wanted - {"plain", "ft", "ft+blur", "ft+jpeg"}
    if unknown:
        raise SystemExit(f"error: unknown --checks {sorted(unknown)}; choose from plain,ft,ft+blur,ft+jpeg (or '' for none)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    budgets = [parse_budget(value) for value in args.budgets.split(",")]
    started = time.perf_counter()
    train = ensure_dataset(work / "rendered-train", args.train_identities, args.per_identity, args.size, seed=1)
    test = ensure_dataset(work / "rendered-test", args.test_identities, args.per_identity, args.size, seed=2)
    pairs_path = work / "pairs.txt"
    if not pairs_path.is_file():
        write_pairs_txt(pairs_path, make_pairs(test, folds=10, pairs_per_fold=args.pairs_per_fold, seed=0))
    print(f"data: {len(train)} training faces ({args.train_identities} people), {len(test)} test faces ({args.test_identities} others), "
          f"{20 * args.pairs_per_fold} pairs", flush=True)
    plain = ensure_recogniser(work / "recog-plain", train.path, args, None)
    robust = None
    if "at" in rows_wanted:
        robust = ensure_recogniser(work / "recog-pgd-at", train.path, args,
                                   {"eps": parse_budget(args.at_eps, "--at-eps"), "steps": args.at_steps, "norm": "linf"})
    tuned = None
    stacked = {"ft+jpeg": ("JPEG q75 (BPDA)", "jpeg"), "ft+blur": ("median 3x3 (BPDA)", "blur")}  # row: defence label, defence
    if rows_wanted & {"ft", *stacked} and args.ft_train_steps:
        # PGD-AT fine-tuned from the plain CNN (`recog train --init`): same data, the plain run's export as the start.
        adversarial = {"eps": parse_budget(args.ft_eps, "--ft-eps"), "steps": args.ft_steps, "norm": "linf", "loss": args.ft_loss}
        trades = args.ft_loss.startswith("trades")
        adversarial.update(beta=args.ft_beta) if trades else adversarial.update(clean_weight=args.ft_clean_weight)
        # The folder names every setting: a finished run is reused, so other settings must not find this one.
        setting = f"b{args.ft_beta:g}" if trades else f"w{args.ft_clean_weight:g}"
        if args.ft_loss == "trades-impersonation":
            adversarial["impersonation_weight"] = args.ft_impersonation_weight
            setting += f"-i{args.ft_impersonation_weight:g}" if args.ft_impersonation_weight != 1.0 else ""
        folder = f"recog-ft-{args.ft_loss}-eps{adversarial['eps']:g}-k{args.ft_steps}-{setting}-lr{args.ft_lr:g}-n{args.ft_train_steps}"
        tuned = ensure_recogniser(work / folder, train.path, args, adversarial, init=plain / "export",
                                  steps=args.ft_train_steps, optimizer={"lr": args.ft_lr, "warmup_steps": 0})
    print(f"recognisers trained ({args.recog_steps} steps; PGD-AT eps {args.at_eps}, {args.at_steps} steps; fine-tuned "
          f"{args.ft_train_steps} steps, {args.ft_loss} eps {args.ft_eps}, {args.ft_steps} steps) after {time.perf_counter() - started:.0f} s",
          flush=True)

    rows: list[tuple[str, str, dict]] = []
    steps = args.attack_steps

    def run(label: str, defence_label: str, recogniser, dataset, pairs, folder: str, **options) -> None:
        row = attack_row(recogniser, dataset, pairs, work / "attacks" / folder, budgets, args, steps=options.pop("steps", steps), **options)
        rows.append((label, defence_label, row))
        print(f"  {label:<22} {defence_label:<26} clean {_percent(row['clean_accuracy'])} %, robust at {budgets[1]:g} "
              f"{_percent(row['robust']['dodging'].get(f'{budgets[1]:g}'))} / {_percent(row['robust']['impersonation'].get(f'{budgets[1]:g}'))} % "
              f"({row['seconds']:.0f} s)", flush=True)

    run("facegan CNN", "none", str(plain), test, str(pairs_path), "plain-none")
    if "jpeg" in rows_wanted:
        run("facegan CNN", "JPEG q75 (BPDA)", str(plain), test, str(pairs_path), "plain-jpeg", defence="jpeg")
    if "blur" in rows_wanted:
        run("facegan CNN", "median 3x3 (BPDA)", str(plain), test, str(pairs_path), "plain-blur", defence="blur")
    generator = Path(args.generator) if args.generator else None
    if "purify" not in rows_wanted:
        pass
    elif generator is not None and generator.exists():
        purify = {"defence": "purify", "defence_options": {"generator": str(generator), "steps": args.purify_steps},
                  "max_pairs": args.purify_pairs, "steps": args.purify_attack_steps}
        run("facegan CNN", f"purify (BPDA+EOT {args.eot})", str(plain), test, str(pairs_path), "plain-purify", minimal=False, eot=args.eot, **purify)
        run("facegan CNN", "purify (non-adaptive)", str(plain), test, str(pairs_path), "plain-purify-nonadaptive", minimal=False,
            adaptive=False, **purify)
    else:
        print(f"  purification skipped: no generator at {args.generator!r} (train one on {RENDERED}, e.g. `make demo-repair`'s edit-gan)")
    if robust is not None:
        run("facegan CNN PGD-AT", "none", str(robust), test, str(pairs_path), "at-none")
    if tuned is not None and "ft" in rows_wanted:
        run("facegan CNN PGD-AT fine-tuned", "none", str(tuned), test, str(pairs_path), f"{tuned.name}-none")
    for key, (defence_label, defence) in stacked.items():
        if tuned is not None and key in rows_wanted:
            run("facegan CNN PGD-AT fine-tuned", defence_label, str(tuned), test, str(pairs_path), f"{tuned.name}-{defence}",
                defence=defence)
    if "dlib" in rows_wanted and args.dlib_pairs:
        lfw, lfw_pairs = lfw_mirror_dataset(work / "lfw-mirror150")
        run("dlib (LFW mirror)", "none", "dlib", lfw, lfw_pairs, "dlib-none", steps=args.dlib_steps, max_pairs=args.dlib_pairs, minimal=False)

    print()
    header = ["recogniser", "defence", "clean acc."] + [f"dodging @{value:g}" for value in budgets] + [
        f"imperson. @{value:g}" for value in budgets] + ["min L-inf dodg.", "min L-inf imp.", "real-dlib success (port)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, defence_label, row in rows:
        cells = [label, defence_label, _percent(row["clean_accuracy"])]
        for mode in ("dodging", "impersonation"):
            cells += [_percent(row["robust"][mode].get(f"{value:g}")) for value in budgets]
        cells += [_minimal(row["minimal_linf"].get(mode), args.minimal_max) for mode in ("dodging", "impersonation")]
        real = row.get("real_dlib")
        cells.append(", ".join(f"{mode[:4]}. {_percent(entry['real'])} ({_percent(entry['port'])})" for mode, entry in real.items()) if real else "-")
        print("| " + " | ".join(cells) + " |")

    art = None
    if "art" in rows_wanted:
        art = art_cross_check(plain, test, pairs_path, work / "attacks" / "art-check", budgets[1], steps)
        print(f"\nART cross-check (facegan CNN, dodging, {art['pairs']} pairs, L-inf {art['eps']:g}, {art['steps']} steps): success "
              f"PGD facegan {_percent(art['facegan pgd'])} % vs ART {_percent(art['art pgd'])} %, FGSM facegan {_percent(art['facegan fgsm'])} % "
              f"vs ART {_percent(art['art fgsm'])} %; PGD time (with embedding and files) facegan {art['seconds']['facegan pgd']:.2f} s, "
              f"ART {art['seconds']['art pgd']:.2f} s")
    checks = {}
    candidates = [("plain", "facegan CNN", plain, {}), ("ft", "facegan CNN PGD-AT fine-tuned", tuned, {})]
    candidates += [(key, f"facegan CNN PGD-AT fine-tuned + {label}", tuned, {"defence": defence})
                   for key, (label, defence) in stacked.items()]
    for key, name, recogniser, defence in candidates:
        if recogniser is None or key not in checks_wanted:
            continue
        folder = f"check-{Path(recogniser).name}" + (f"-{defence['defence']}" if defence else "")
        check = masking_check(str(recogniser), test, str(pairs_path), work / "attacks" / folder, budgets[1], args, **defence)
        checks[name] = check
        print(f"gradient-masking check, {name}, robust accuracy at {budgets[1]:g} (dodging / impersonation): "
              f"PGD {args.check_steps} steps 1 start {_percent(check['pgd one start dodging'])} / {_percent(check['pgd one start impersonation'])} %, "
              f"{args.check_restarts} restarts {_percent(check['pgd dodging'])} / {_percent(check['pgd impersonation'])} %, "
              f"Square {args.check_queries} queries {_percent(check['square dodging'])} / {_percent(check['square impersonation'])} %", flush=True)
    plain_row = rows[0][2]
    key = f"{budgets[1]:g}"
    for label, defence_label, row in rows[1:]:
        if label.startswith("dlib") or "non-adaptive" in defence_label:
            continue
        gain = np.mean([row["robust"][mode][key] - plain_row["robust"][mode][key] for mode in ("dodging", "impersonation")])
        cost = plain_row["clean_accuracy"] - row["clean_accuracy"]
        print(f"{label}, {defence_label}: robust accuracy at {key} {100 * gain:+.1f} points (mean of the modes), clean cost {100 * cost:+.1f} points")
    print(f"total {time.perf_counter() - started:.0f} s")
    if art is not None:
        print(f"ratio = {art['ratio']:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": [{"recogniser": a, "defence": b, **c} for a, b, c in rows], "art": art,
                                               "masking_checks": checks}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
