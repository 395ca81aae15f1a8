"""Privacy-utility table: the same DP-ready model at epsilon 1, 10 and infinity, equal kimg, one protocol.

Built-in faces (32 px), split 80/20 into train/holdout. Each model uses the `dp` preset (GroupNorm
discriminator, no spectral norm, no R1); epsilon = inf trains it without DP. Every model is evaluated
in dlib's face space against the training split (FD, KID, precision/recall) and audited against the
holdout split (membership-inference AUCs, near-copy share, identity matches).

    .venv/bin/python benchmarks/privacy_utility.py [--kimg 20] [--num 1000] [--out runs/bench-privacy]

`--pretrained` measures the standard remedy instead (issue 11): the training split is halved into a
public and a private half (no shared image); a `dp`-preset model is pretrained without DP on the
public half (`--public-kimg`), then fine-tuned with DP-SGD on the private half at each finite epsilon
(`facegan train --init-from`, the demo's recipe `facegan.demo.DP_FINETUNE`, or `--finetune-lr`);
the reference is a non-private default model trained on the private half for `--kimg`. Quality is
measured against the private half and the audit tests the private half against the holdout.
Targets at epsilon 10: face rate >= 50 %, FD <= 1.5x the reference's, nothing flagged.

    .venv/bin/python benchmarks/privacy_utility.py --pretrained --epsilons 1,10 --kimg 30 --out runs/bench-privacy-pretrained
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
    parser.add_argument("--pretrained", action="store_true", help="public pretraining + DP fine-tuning rows (see above)")
    parser.add_argument("--public-kimg", type=float, default=30.0)
    parser.add_argument("--finetune-lr", type=float, default=None, help="fine-tuning learning rate of G and D (default: the demo's)")
    args = parser.parse_args()
    if args.pretrained:
        pretrained_rows(args)
        return

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


def pretrained_rows(args: argparse.Namespace) -> None:
    from facegan.demo import DP_FINETUNE, ensure_builtin_dataset, ensure_split, ensure_trained
    from facegan.metrics import evaluate
    from facegan.privacy.audit import audit_generator
    from facegan.training.config import resolve_config

    out = Path(args.out)
    dataset = ensure_builtin_dataset(out / "data", args.size)
    train_set, holdout_set = ensure_split(dataset, out / "data-train", out / "data-holdout")
    public_set, private_set = ensure_split(train_set, out / "data-public", out / "data-private", holdout=0.5)
    schedule = {"snapshot_kimg": 10, "checkpoint_kimg": 10}
    runtime = {"tensorboard": False}
    ensure_trained(resolve_config("dp", {"data": str(public_set.path), "out": str(out / "public"), "kimg": args.public_kimg,
                                         "schedule": schedule, "runtime": runtime}), progress=False)
    ensure_trained(resolve_config("default", {"data": str(private_set.path), "out": str(out / "nonprivate"), "kimg": args.kimg,
                                              "schedule": schedule, "runtime": runtime}), progress=False)
    lr = args.finetune_lr or DP_FINETUNE["lr"]
    names = ["public", "nonprivate"]
    for text in args.epsilons.split(","):
        if math.isinf(float(text)):
            continue
        name = f"dp-ft-eps-{text}"
        ensure_trained(resolve_config("dp", {
            "data": str(private_set.path), "out": str(out / name), "kimg": DP_FINETUNE["kimg"], "privacy": {"epsilon": float(text)},
            "batch_size": DP_FINETUNE["batch_size"], "optimizer": {"lr_g": lr, "lr_d": lr}, "init_from": str(out / "public"),
            "schedule": {"snapshot_kimg": 1, "checkpoint_kimg": 1}, "runtime": runtime}), progress=False)
        names.append(name)
    rows = []
    for name in names:
        run = out / name
        quality = evaluate(run, private_set.path, num=args.num, features="face", progress=False)
        quality.save(run / "metrics.json")
        audit = audit_generator(run, private_set, holdout_set, num_samples=args.num)
        audit.save(run)
        export = json.loads((run / "export" / "config.json").read_text())
        attacks = {f"{a.attack}/{a.space}": a.auc for a in audit.membership}
        rows.append({"model": name, "epsilon": export.get("dp", {}).get("epsilon"), **quality.metrics,
                     "auc_max": max(attacks.values()), "flagged": audit.flagged})
        print(f"{name}: done", flush=True)
    print(f"\nbuilt-in faces {args.size}px: public {len(public_set)}, private {len(private_set)}, holdout {len(holdout_set)}; "
          f"public pretraining {args.public_kimg:g} kimg (dp preset, no DP); DP fine-tuning {DP_FINETUNE['kimg']:g} kimg, batch "
          f"{DP_FINETUNE['batch_size']}, lr {lr:g}; reference: default preset {args.kimg:g} kimg on the private half; {args.num} samples, "
          "measured against the private half")
    print(f"{'model':>16s}{'epsilon':>9s}{'FD face':>9s}{'face rate':>11s}{'prec':>6s}{'rec':>6s}{'max AUC':>9s}{'flagged':>9s}")
    for row in rows:
        epsilon = "-" if row["epsilon"] is None else f"{row['epsilon']:.2f}"
        print(f"{row['model']:>16s}{epsilon:>9s}{row['fd']:9.4f}{row['face_rate']:11.0%}{row['precision']:6.2f}{row['recall']:6.2f}"
              f"{row['auc_max']:9.2f}{str(row['flagged']):>9s}")
    by_name = {row["model"]: row for row in rows}
    if "dp-ft-eps-10" in by_name:
        print(f"ratio = {by_name['dp-ft-eps-10']['fd'] / by_name['nonprivate']['fd']:.2f}  (FD of the epsilon-10 fine-tuned model / "
              "the non-private reference's; target <= 1.5)")
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
