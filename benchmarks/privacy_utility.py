"""Privacy-utility table: the same DP-ready model at epsilon 1, 10 and infinity, equal kimg, one protocol.

Built-in faces (32 px), split 80/20 into train/holdout. Each model uses the `dp` preset (GroupNorm
discriminator, no spectral norm, no R1); epsilon = inf trains it without DP. Every model is evaluated
in dlib's face space against the training split (FD, KID, precision/recall) and audited against the
holdout split (membership-inference AUCs, near-copy share, identity matches).

    .venv/bin/python benchmarks/privacy_utility.py [--kimg 20] [--num 1000] [--out runs/bench-privacy]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kimg", type=float, default=20.0, help="training length of every model")
    parser.add_argument("--epsilons", default="1,10,inf")
    parser.add_argument("--num", type=int, default=1000, help="generated faces per evaluation and audit")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--out", default="runs/bench-privacy")
    args = parser.parse_args()

    from facegan.demo import ensure_builtin_dataset, ensure_split, ensure_trained
    from facegan.metrics import evaluate
    from facegan.privacy.audit import audit_generator
    from facegan.training.config import resolve_config

    out = Path(args.out)
    dataset = ensure_builtin_dataset(out / "data", args.size)
    train_set, holdout_set = ensure_split(dataset, out / "data-train", out / "data-holdout")
    rows = []
    for text in args.epsilons.split(","):
        epsilon = float(text)
        run = out / f"eps-{text}"
        privacy = {} if math.isinf(epsilon) else {"epsilon": epsilon}
        config = resolve_config("dp", {"data": str(train_set.path), "out": str(run), "kimg": args.kimg, "privacy": privacy,
                                       "schedule": {"snapshot_kimg": 10, "checkpoint_kimg": 10}, "runtime": {"tensorboard": False}})
        summary = ensure_trained(config, progress=False)
        quality = evaluate(run, train_set.path, num=args.num, features="face", progress=False)
        quality.save(run / "metrics.json")
        audit = audit_generator(run, train_set, holdout_set, num_samples=args.num)
        audit.save(run)
        export = json.loads((run / "export" / "config.json").read_text())
        attacks = {f"{a.attack}/{a.space}": a.auc for a in audit.membership}
        rows.append({"epsilon": text, "achieved_epsilon": export.get("dp", {}).get("epsilon"), "kimg": summary["kimg"],
                     **quality.metrics, **{f"auc_{k}": v for k, v in attacks.items()},
                     "near_copy_face": audit.memorisation["face"].near_copy_share, "flagged": audit.flagged})
        print(f"epsilon {text}: done ({summary['kimg']:.1f} kimg)", flush=True)

    print(f"\nbuilt-in faces {args.size}px, {len(train_set)} train / {len(holdout_set)} holdout, dp preset, {args.kimg:g} kimg, {args.num} samples")
    header = f"{'epsilon':>8s}{'achieved':>10s}{'FD face':>9s}{'KID':>8s}{'prec':>6s}{'rec':>6s}{'AUC D':>7s}{'AUC GL-px':>10s}{'AUC GL-face':>12s}{'near-copy':>10s}"
    print(header)
    for row in rows:
        achieved = "-" if row["achieved_epsilon"] is None else f"{row['achieved_epsilon']:.2f}"
        print(f"{row['epsilon']:>8s}{achieved:>10s}{row['fd']:9.4f}{row['kid_mean']:8.4f}{row['precision']:6.2f}{row['recall']:6.2f}"
              f"{row.get('auc_discriminator/logit', float('nan')):7.2f}{row.get('auc_gan_leaks/pixel', float('nan')):10.2f}"
              f"{row.get('auc_gan_leaks/face', float('nan')):12.2f}{row['near_copy_face']:10.1%}")
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
