"""Does the privacy audit tell a memorising generator from one that learned nothing? Controls on real faces.

The 100 built-in LFW faces (32x32 grey, as tests/conftest.py prepares them) are shuffled and cut into
40 train / 30 holdout / 30 outside, once per split seed. Two stand-in generators are audited on each
split, in pixel and face space, exactly as `facegan audit` audits a model:

    positive control   replays the 40 training faces (+ noise, std 2 grey levels): must be flagged
    negative control   replays the 30 outside faces (+ noise): must not be flagged

Each control is sampled at seeds 0..N-1 for its N faces (see facegan.privacy.audit_controls). A
control behaves when: positive = flagged, GAN-Leaks AUC >= 0.9 and near copies >= 90% in both spaces;
negative = nothing flagged and GAN-Leaks AUC within 3 chance sd of 0.5 ([0.29, 0.71] at 40 vs 30).
Several split seeds show how often chance alone would trip a check (each check is held to p < 0.01).

    .venv/bin/python benchmarks/privacy_audit_controls.py [--splits 5] [--size 32] [--samples-folder]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def audit_control(name: str, controls, samples_folder: bool):
    from facegan.images import save_png
    from facegan.provenance.record import Provenance
    from facegan.privacy.audit import audit_generator, audit_samples

    generator = controls.positive_control() if name == "positive" else controls.negative_control()
    num_samples = controls.num_samples(generator)
    if not samples_folder:
        return audit_generator(generator, controls.train, controls.holdout, num_samples=num_samples)
    with tempfile.TemporaryDirectory() as folder:
        for seed, image in enumerate(generator.sample(range(num_samples))):
            save_png(image, Path(folder) / f"seed{seed:05d}.png", Provenance.off("benchmark"))
        return audit_samples(folder, controls.train, controls.holdout)


def behaves(name: str, result) -> bool:
    from facegan.privacy.audit_metrics import auc_chance_sd

    attacks = [attack for attack in result.membership if attack.attack == "gan_leaks"]
    if name == "positive":
        return result.flagged and all(attack.auc >= 0.9 for attack in attacks) and all(
            memo.near_copy_share >= 0.9 for memo in result.memorisation.values())
    margin = 3 * auc_chance_sd(attacks[0].num_members, attacks[0].num_nonmembers)
    return not result.flagged and all(abs(attack.auc - 0.5) <= margin for attack in attacks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, default=5, help="split seeds 0..SPLITS-1")
    parser.add_argument("--size", type=int, default=32, help="face size in pixels")
    parser.add_argument("--samples-folder", action="store_true", help="audit PNG folders (facegan audit --samples) instead of the generators")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from facegan.privacy.audit_controls import builtin_control_sets

    header = (f"{'control':<9} {'split':>5} {'AUC px':>7} {'AUC face':>8} {'TPR@1% px':>9} {'TPR@1% face':>11} "
              f"{'copies px':>9} {'copies face':>11} {'id gen':>6} {'id hold':>7} {'flagged':>7} {'ok':>3} {'s':>5}")
    print(f"privacy audit controls: built-in LFW faces {args.size}x{args.size} grey, 40 train / 30 holdout / 30 outside, "
          f"{'samples folders' if args.samples_folder else 'generators'}")
    print("TPR@1%: with 30 holdout faces read at FPR 0; copies: share closer to a training face than 95% of holdout faces; "
          "id: dlib identity match rate (generated / holdout)")
    print(header)
    print("-" * len(header))
    counts = {"positive": 0, "negative": 0}
    for split in range(args.splits):
        controls = builtin_control_sets(size=args.size, seed=split)
        for name in ("positive", "negative"):
            start = time.perf_counter()
            result = audit_control(name, controls, args.samples_folder)
            seconds = time.perf_counter() - start
            attack = {item.space: item for item in result.membership if item.attack == "gan_leaks"}
            memo = result.memorisation
            ok = behaves(name, result)
            counts[name] += ok
            print(f"{name:<9} {split:>5} {attack['pixel'].auc:>7.3f} {attack['face'].auc:>8.3f} {attack['pixel'].tpr_at_fpr['0.01']:>9.0%} "
                  f"{attack['face'].tpr_at_fpr['0.01']:>11.0%} {memo['pixel'].near_copy_share:>9.1%} {memo['face'].near_copy_share:>11.1%} "
                  f"{result.identity.generated_match_rate:>6.0%} {result.identity.holdout_match_rate:>7.0%} {len(result.warnings):>7} "
                  f"{'yes' if ok else 'NO':>3} {seconds:>5.1f}")
    good = counts["positive"] == args.splits and counts["negative"] == args.splits
    print(f"verdict: {'controls behave' if good else 'CONTROLS MISBEHAVE'}: positive flagged in {counts['positive']}/{args.splits} splits, "
          f"negative clear in {counts['negative']}/{args.splits} splits")


if __name__ == "__main__":
    main()
