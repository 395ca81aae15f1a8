"""Quality at equal CPU time: `seed-dcgan` vs `default` on the built-in faces, one protocol.

Trains each preset for the same wall-clock budget on this machine (schedule.max_minutes), then
evaluates both exported generators against the same real faces with the same protocol (face-space
features by default) and prints FD of each and the ratio default / seed-dcgan (target <= 0.5).

    .venv/bin/python benchmarks/quality_at_budget.py [--minutes 4] [--size 32] [--out runs/bench-quality]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0, help="training time budget per preset")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--num", type=int, default=1000, help="generated images per evaluation")
    parser.add_argument("--features", default="face", help="face (offline, default) or inception")
    parser.add_argument("--out", default="runs/bench-quality")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from facegan.demo import ensure_builtin_dataset
    from facegan.images import make_grid, save_png, upscale_nearest
    from facegan.metrics import evaluate
    from facegan.models.export import load_generator
    from facegan.training.config import resolve_config
    from facegan import train

    out = Path(args.out)
    dataset = ensure_builtin_dataset(out / "data", args.size)
    results = {}
    for preset in ("seed-dcgan", "default"):
        run = out / preset
        if not (run / "summary.json").is_file():
            config = resolve_config(preset, {"data": str(dataset.path), "out": str(run), "kimg": 10_000, "seed": args.seed,
                                             "schedule": {"max_minutes": args.minutes, "snapshot_kimg": 20, "checkpoint_kimg": 20},
                                             "runtime": {"tensorboard": False}})
            if train(config, progress=True).interrupted:
                raise SystemExit(f"error: training {run} was interrupted; delete it and run the benchmark again")
        summary = json.loads((run / "summary.json").read_text())
        result = evaluate(run, dataset.path, num=args.num, features=args.features, metrics=("fd", "kid", "prdc"), progress=False)
        result.save(run / "metrics.json")
        generator = load_generator(run)
        save_png(upscale_nearest(make_grid(generator.sample(range(64)), num_columns=8), 512), out / f"grid-{preset}.png",
                 generator.provenance("benchmark", "0-63"))
        results[preset] = {"kimg": summary["kimg"], "seconds": summary["seconds"], **result.metrics}

    print(f"\nbuilt-in faces {args.size}px, {args.minutes:g} min of training each, {args.num} samples, {args.features} features")
    print(f"{'preset':12s}{'kimg':>8s}{'FD':>10s}{'KID':>10s}{'precision':>11s}{'recall':>8s}")
    for preset, row in results.items():
        print(f"{preset:12s}{row['kimg']:8.1f}{row['fd']:10.4f}{row['kid_mean']:10.4f}{row['precision']:11.3f}{row['recall']:8.3f}")
    ratio = results["default"]["fd"] / results["seed-dcgan"]["fd"]
    print(f"FD ratio default / seed-dcgan = {ratio:.3f} (target <= 0.5)")
    (out / "results.json").write_text(json.dumps({"ratio": ratio, **results}, indent=2))
    print(f"grids: {out}/grid-seed-dcgan.png, {out}/grid-default.png")


if __name__ == "__main__":
    main()
