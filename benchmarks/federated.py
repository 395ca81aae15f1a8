"""Centralised vs federated GAN training at equal total kimg, on real Flower processes.

Data: `builtin:rendered-faces` at 32 px (identity-labelled, so the by-identity split exists), one
dataset for every row. Rows: centralised `facegan train`; FedAvg with 4 clients IID and by
identity; IID with SecAgg+; IID with client-level DP. Every model gets the same total kimg (the
federated ones as rounds x clients x local kimg) and the same recipe; each is measured in dlib's
face space against the whole dataset (FD, face rate). Wall time and bytes sent per round come
from the runs' own stats. Targets (issue 11): FedAvg IID FD within 1.5x of centralised; SecAgg+
at most 2x the plain round's wall time.

    .venv/bin/python benchmarks/federated.py [--kimg 8] [--rounds 4] [--clients 4] [--out runs/bench-federated]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kimg", type=float, default=8.0, help="total kimg of every model")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--num", type=int, default=500, help="generated faces per evaluation")
    parser.add_argument("--dp-epsilon", type=float, default=10.0)
    parser.add_argument("--rows", default="central,iid,identity,secagg,client-dp")
    parser.add_argument("--out", default="runs/bench-federated")
    args = parser.parse_args()

    from facegan import train
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.data.partition import partition_dataset
    from facegan.data.pipeline import prepare_dataset
    from facegan.federated.engine import build_settings, federated_train
    from facegan.metrics import evaluate
    from facegan.run import Run
    from facegan.training.config import resolve_config

    out = Path(args.out)
    data = out / "data"
    if not (data / MANIFEST_NAME).is_file():
        prepare_dataset("builtin:rendered-faces", data, size=32, identities=args.identities, per_identity=args.per_identity, seed=0,
                        progress=False)
    dataset = FaceDataset.load(data)
    parts = {}
    for by in ("iid", "identity"):
        folder = out / f"clients-{by}"
        if not (folder / "partitions.json").is_file():
            partition_dataset(dataset, folder, args.clients, by=by, seed=0)
        parts[by] = folder
    local_kimg = args.kimg / (args.rounds * args.clients)
    recipe = ["runtime.tensorboard=false"]
    rows = []
    for name in args.rows.split(","):
        run = out / name
        started = time.perf_counter()
        if not Run(run).has_export():
            if name == "central":
                config = resolve_config("default", {"data": str(data), "out": str(run), "kimg": args.kimg,
                                                    "schedule": {"snapshot_kimg": 1000, "checkpoint_kimg": 1000},
                                                    "runtime": {"tensorboard": False}})
                if train(config).interrupted:
                    raise SystemExit(f"error: training {run} was interrupted; delete it and run the benchmark again")
            else:
                options = {"iid": {}, "identity": {}, "secagg": {"secure_aggregation": True},
                           "client-dp": {"dp_epsilon": args.dp_epsilon, "dp_level": "client"}}[name]
                by = "identity" if name == "identity" else "iid"
                settings = build_settings(parts[by], run, args.rounds, local_kimg, overrides=recipe, round_timeout=1800, **options)
                federated_train(settings)
        seconds = time.perf_counter() - started
        quality = evaluate(run, data, num=args.num, features="face", progress=False)
        quality.save(Run(run).metrics_path)
        stats = Run(run).read_stats()
        rounds = [row for row in stats if "round" in row]
        summary = Run(run).read_summary() or {}
        rows.append({
            "row": name, "kimg": summary.get("kimg"), "fd": quality.metrics["fd"], "face_rate": quality.metrics.get("face_rate"),
            "wall_s": round(float(summary.get("seconds", seconds)), 1),
            "round_s": round(sum(row["round_s"] for row in rounds) / len(rounds), 1) if rounds else None,
            "bytes_per_round": rounds[-1]["bytes_sent"] if rounds else None,
            "epsilon": rounds[-1].get("epsilon") if rounds else None,
        })
        print(f"{name}: done", flush=True)

    print(f"\nbuiltin:rendered-faces 32px, {len(dataset)} images of {args.identities} people; {args.kimg:g} kimg per model; "
          f"{args.clients} clients x {args.rounds} rounds x {local_kimg:g} kimg; FD in dlib's face space, {args.num} samples")
    print(f"{'row':>10s}{'kimg':>7s}{'FD':>8s}{'face rate':>11s}{'wall s':>8s}{'s/round':>9s}{'MB/round':>10s}{'epsilon':>9s}")
    for row in rows:
        mb = "-" if row["bytes_per_round"] is None else f"{row['bytes_per_round'] / 1e6:.1f}"
        per_round = "-" if row["round_s"] is None else f"{row['round_s']:.1f}"
        epsilon = "-" if row["epsilon"] is None else f"{row['epsilon']:.2f}"
        print(f"{row['row']:>10s}{row['kimg']:7.1f}{row['fd']:8.4f}{row['face_rate']:11.0%}{row['wall_s']:8.0f}{per_round:>9s}{mb:>10s}{epsilon:>9s}")
    by_name = {row["row"]: row for row in rows}
    if "central" in by_name and "iid" in by_name:
        print(f"ratio = {by_name['iid']['fd'] / by_name['central']['fd']:.2f}  (FedAvg IID FD / centralised FD; target <= 1.5)")
    if "iid" in by_name and "secagg" in by_name and by_name["iid"]["round_s"]:
        print(f"ratio = {by_name['secagg']['round_s'] / by_name['iid']['round_s']:.2f}  (SecAgg+ / plain wall time per round; target <= 2)")
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
