"""Verification accuracy under damage: degraded vs repaired (the repair net) vs OpenCV-restored, on the same pairs.

Damage: Gaussian noise, blur, JPEG (facegan.repair.degrade defaults) and eye / mouth occlusion (a
sunglasses band, a lower-face mask). Restorers: OpenCV non-local means and unsharp masking for
noise/blur/JPEG, OpenCV Telea and NS for occlusions, and the repair net for all (when given). Both
images of every pair are damaged; accuracy is the LFW 10-fold protocol with dlib's distance.

Pairs: a dataset with identities uses `--pairs pairs.txt` or pairs made with facegan.data.pairs
(`--folds`, `--pairs-per-fold`). A dataset without identities (builtin:lfw-subset) uses *mirror
pairs*: face i vs the mirrored copy of face i (same) or of another face (different) — a proxy for a
second photo, stated in the output; it overstates clean accuracy, not the loss under damage.

    PYTHONPATH=src .venv/bin/python benchmarks/restore_for_recognition.py --data data/lfw32-holdout \
        [--repairer runs/repair32] [--different-per-face 3] [--json out/restore.json]

Target (issue 9): the repaired images recover at least half of the accuracy lost to each damage.
Prints one table (accuracy %, and in brackets the share of the lost accuracy recovered) and a line
`recovered share (repaired) = X per damage`.

Measured 2026-12-02 on the 20 held-out builtin:lfw-subset faces (mirror pairs, 80 pairs: one pair is
1.25 points) with the 400-step repair net of benchmarks/repair_quality.py: clean 100 %; noise
sigma 25: degraded 76.2, repaired 82.5 (26 % of the loss recovered), OpenCV NLM 77.5; blur, JPEG and
occlusions at the defaults cost at most 2.5 points (nothing to recover). With
--severities noise=40,blur=1.5,jpeg=5 --occlusion-ratio 0.3,0.4: noise 71.2 -> repaired 78.8 (26 %),
NLM 71.2. On builtin:rendered-faces (64 px, 60 x 10, identity pairs) dlib verifies only 65 % of clean
pairs and the damage moves it by less than the noise of 300 pairs: not a usable test bed for dlib.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="prepared dataset (held out from the repair net's training)")
    parser.add_argument("--repairer", help="repair run/export; omitted: OpenCV only")
    parser.add_argument("--pairs", help="pairs.txt for an identity-labelled dataset")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--pairs-per-fold", type=int, default=30)
    parser.add_argument("--different-per-face", type=int, default=1, help="mirror pairs: different pairs per face (same pairs: 1 per face)")
    parser.add_argument("--occlusions", default="eyes,mouth")
    parser.add_argument("--occlusion-ratio", default="0.2,0.3", help="hole ratio band of the occluders")
    parser.add_argument("--anchors", choices=("aligned", "rendered"), default="aligned")
    parser.add_argument("--severities", default="", help="override degrade's defaults, e.g. noise=40,blur=1.5,jpeg=5")
    parser.add_argument("--recogniser", default="dlib")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    return parser.parse_args(argv)


def mirror_pairs(faces: np.ndarray, different_per_face: int, folds: int, seed: int):
    """(images, (left, right, same, fold)): faces + their mirrored copies; same = (i, mirror i), different = (i, mirror j)."""
    count = len(faces)
    images = np.concatenate([faces, faces[:, :, ::-1]])
    rng = np.random.default_rng(seed)
    left, right, same, fold = [], [], [], []
    for index in range(count):
        left.append(index); right.append(count + index); same.append(True); fold.append(index % folds)
        others = rng.choice(np.delete(np.arange(count), index), size=different_per_face, replace=False)
        for other in others:
            left.append(index); right.append(count + int(other)); same.append(False); fold.append(index % folds)
    return images, tuple(np.asarray(part) for part in (left, right, same, fold))


def main(argv: list[str] | None = None) -> int:
    from facegan.data.dataset import FaceDataset
    from facegan.data.pairs import make_pairs
    from facegan.repair.baselines import INPAINTERS, RESTORERS
    from facegan.repair.evaluate import evaluate_restoration, format_restoration_table
    from facegan.repair.masks import ALIGNED_ANCHORS, RENDERED_ANCHORS

    args = parse_args(argv)
    dataset = FaceDataset.load(args.data)
    if dataset.has_identities:
        images = dataset
        pairs = args.pairs or make_pairs(dataset, folds=args.folds, pairs_per_fold=args.pairs_per_fold, seed=args.seed)
        protocol = f"identity pairs ({args.pairs or f'{args.folds} folds x {args.pairs_per_fold} same + different'})"
    else:
        images, pairs = mirror_pairs(np.asarray(dataset.images), args.different_per_face, args.folds, args.seed)
        protocol = f"mirror pairs (no identities: face vs mirrored face; {args.different_per_face} different per face)"
    restorers = dict(RESTORERS)
    inpainters = {"telea": INPAINTERS["telea"], "ns": INPAINTERS["ns"]}
    if args.repairer:
        from facegan.repair.export import load_repairer

        repairer = load_repairer(args.repairer)
        restorers["repaired"] = lambda damaged: repairer.repair(damaged)
        inpainters["repaired"] = lambda damaged, masks: repairer.repair(damaged, np.array(masks))  # a writable copy for torch
    low, high = (float(value) for value in args.occlusion_ratio.split(","))
    occlusions = tuple(kind for kind in args.occlusions.split(",") if kind)
    severities = {name: float(value) for name, value in (item.split("=") for item in args.severities.split(",") if item)}
    started = time.perf_counter()
    result = evaluate_restoration(restorers, images, pairs, recogniser=args.recogniser, seed=args.seed, inpainters=inpainters,
                                  severities=severities,
                                  occlusions=occlusions, occlusion_ratio=(low, high),
                                  anchors=RENDERED_ANCHORS if args.anchors == "rendered" else ALIGNED_ANCHORS,
                                  progress=lambda message: print(f"  {message}", file=sys.stderr, flush=True))
    print(f"\n{args.data}: {protocol}; {result['num_pairs']} pairs over {result['num_images']} images, "
          f"{result['resolution']} px; {time.perf_counter() - started:.0f} s")
    print("severities: " + ", ".join(f"{condition['damage']} {condition['severity']:g}" for condition in result["conditions"] if "severity" in condition))
    print(format_restoration_table(result))
    best_opencv = []
    for condition in result["conditions"]:
        baselines = [name for name in condition["methods"] if name != "repaired"]
        best = max(baselines, key=lambda name: condition["methods"][name]["accuracy_mean"])
        best_opencv.append(f"{condition['damage']} {best} {100 * condition['methods'][best]['accuracy_mean']:.1f}")
    print("best OpenCV: " + ", ".join(best_opencv))
    if args.repairer:
        shares = [condition["recovered"].get("repaired") for condition in result["conditions"]]
        print("recovered share (repaired) = " + " ".join("n/a" if share is None else f"{share:.2f}" for share in shares)
              + " per damage (" + ", ".join(condition["damage"] for condition in result["conditions"]) + ")")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**result, "protocol": protocol}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
