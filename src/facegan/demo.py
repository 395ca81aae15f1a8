"""The main job on the built-in faces (`make demo`): prepare -> train -> sample -> summarise.

Idempotent: a prepared dataset is reused, a finished run is not trained again, an interrupted one
resumes. Everything lands in one folder whose path is printed at the end.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from facegan.errors import FaceganError

BUILTIN_SOURCE = "builtin:lfw-subset"


def ensure_builtin_dataset(path: Path, size: int) -> "FaceDataset":  # noqa: F821
    """The built-in faces prepared at `size`, reusing an earlier preparation."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.data.pipeline import prepare_dataset

    if (path / MANIFEST_NAME).is_file():
        dataset = FaceDataset.load(path)
        if dataset.resolution == size and dataset.manifest.get("source") == BUILTIN_SOURCE:
            return dataset
    return prepare_dataset(BUILTIN_SOURCE, path, size=size, progress=True)


def ensure_trained(config, progress: bool = True) -> dict:
    """Train `config`, or resume it if a previous demo was cut short, or skip it if it is done."""
    from facegan import train
    from facegan.cli.progress import TrainingProgress
    from facegan.run import Run

    run = Run(config.out)
    summary = run.read_summary()
    if summary is not None:
        done = summary.get("kimg", 0) >= config.kimg - 1e-9 or summary.get("stopped_early")
        if done and not summary.get("interrupted"):
            print(f"reusing finished run {run.path} ({summary['kimg']:.1f} kimg)")
            return summary
    with TrainingProgress(enabled=progress) as bar:
        result = train(config, resume=run.has_config(), progress=bar.update, on_log=bar.show_stats)
    if result.interrupted:
        raise FaceganError(f"training was interrupted; run the demo again to resume {run.path}")
    return run.read_summary() or {}


def write_summary(path: Path, lines: list[str]) -> None:
    from facegan.files import write_bytes_atomic

    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


def ensure_split(dataset, train_path: Path, holdout_path: Path, holdout: float = 0.2):
    """Disjoint train/holdout sets of the built-in faces (reused when already made from this dataset)."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset

    if (train_path / MANIFEST_NAME).is_file() and (holdout_path / MANIFEST_NAME).is_file():
        train_set, holdout_set = FaceDataset.load(train_path), FaceDataset.load(holdout_path)
        if train_set.manifest.get("parent_hash") == dataset.content_hash:
            return train_set, holdout_set
    train_set, holdout_set = dataset.split(holdout, seed=0)
    return FaceDataset.load(train_set.save(train_path)), FaceDataset.load(holdout_set.save(holdout_path))


def run_demo(out: str = "runs/demo", data: str = "data/builtin-lfw32", size: int = 32, kimg: float = 50.0,
             dp_kimg: float = 20.0, dp_epsilon: float = 10.0, num_eval: int = 1000, progress: bool = True) -> Path:
    """Run the main job; returns the demo folder."""
    from facegan.images import make_grid, save_png, upscale_nearest
    from facegan.metrics import evaluate
    from facegan.models.export import load_generator
    from facegan.privacy.audit import audit_generator
    from facegan.report.card import build_report
    from facegan.run import Run
    from facegan.training.config import resolve_config

    start = time.time()
    folder = Path(out)
    print(f"[1/6] preparing the built-in faces ({BUILTIN_SOURCE}) at {size}x{size}, split 80/20 into train/holdout")
    dataset = ensure_builtin_dataset(Path(data), size)
    train_set, holdout_set = ensure_split(dataset, Path(f"{data}-train"), Path(f"{data}-holdout"))
    print(f"      {len(dataset)} real faces (hash {dataset.content_hash[:12]}): {len(train_set)} train, {len(holdout_set)} holdout")

    runs = {"default": Run(folder / "default"), "dp": Run(folder / "dp")}
    print(f"[2/6] training the default GAN for {kimg:g} kimg on the CPU")
    summaries = {"default": ensure_trained(resolve_config("default", {
        "data": str(train_set.path), "out": str(runs["default"].path), "kimg": kimg, "schedule": {"snapshot_kimg": 10.0, "checkpoint_kimg": 5.0}}), progress)}
    print(f"[3/6] training a differentially private GAN (epsilon {dp_epsilon:g}) for up to {dp_kimg:g} kimg")
    summaries["dp"] = ensure_trained(resolve_config("dp", {
        "data": str(train_set.path), "out": str(runs["dp"].path), "kimg": dp_kimg, "privacy": {"epsilon": dp_epsilon},
        "schedule": {"snapshot_kimg": 10.0, "checkpoint_kimg": 5.0}}), progress)

    print(f"[4/6] measuring quality in dlib's face space ({num_eval} generated faces each)")
    quality = {}
    for name, run in runs.items():
        saved = run.read_metrics() if _is_current(run.metrics_path, run) else None
        if isinstance(saved, dict) and isinstance(saved.get("metrics"), dict):  # a broken file is measured again
            quality[name] = saved["metrics"]
            continue
        result = evaluate(run.path, train_set.path, num=num_eval, features="face", progress=False)
        result.save(run.metrics_path)
        quality[name] = result.metrics
    print(f"[5/6] auditing both models for memorisation, membership inference and identity leakage")
    audits = {}
    for name, run in runs.items():
        saved = run.read_audit() if _is_current(run.audit_path, run) else None
        if isinstance(saved, dict) and "membership" in saved:
            audits[name] = saved
            continue
        audit = audit_generator(run.path, train_set, holdout_set, num_samples=num_eval, progress=False)
        audit.save(run.path)
        audits[name] = audit.to_dict()

    print("[6/6] sampling and writing the report cards")
    generator = load_generator(runs["default"].path)
    grid_path = save_png(upscale_nearest(make_grid(generator.sample(range(64)), num_columns=8), 512), folder / "grid.png")
    rows = [generator.interpolate(a, b, 8) for a, b in ((3, 7), (11, 19), (23, 42))]
    strip_path = save_png(upscale_nearest(make_grid(np.concatenate(rows), num_columns=8), 512), folder / "interpolation.png")
    dp_grid_path = save_png(upscale_nearest(make_grid(load_generator(runs["dp"].path).sample(range(64)), num_columns=8), 512), folder / "grid-dp.png")
    reals_path = save_png(upscale_nearest(make_grid(np.asarray(train_set.images[:64]), num_columns=8), 512), folder / "reals.png")
    reports = {name: build_report(run.path) for name, run in runs.items()}

    dp_config = load_generator(runs["dp"].path).metadata.get("dp", {})
    lines = ["facegan demo: the built-in LFW faces, a default GAN and a differentially private one", "",
             f"data:        {dataset.path} ({len(dataset)} faces, {size}x{size}); train {len(train_set)}, holdout {len(holdout_set)}"]
    for name in runs:
        summary, metrics = summaries[name], quality[name]
        stats = summary.get("last_stats", {})
        lines += ["", f"{name} model ({runs[name].path}):",
                  f"  training:     {summary['kimg']:.1f} kimg in {summary['seconds']:.0f} s ({summary['img_per_s']:.0f} img/s); final loss D {stats.get('loss_d', float('nan')):.3f} G {stats.get('loss_g', float('nan')):.3f}",
                  f"  quality:      FD {metrics['fd']:.4f}, KID {metrics['kid_mean']:.4f}, precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f}, "
                  f"face rate {metrics['face_rate']:.0%} (real {metrics['face_rate_real']:.0%})",
                  f"  privacy:      {_privacy_line(audits[name])}",
                  f"  report card:  {reports[name]}"]
        if name == "dp" and dp_config:
            lines.append(f"  guarantee:    ({dp_config['epsilon']:.2f}, {dp_config['delta']:.2g})-DP, noise multiplier {dp_config['noise_multiplier']:.3f}, {dp_config['steps']} steps")
    lines += ["", f"grid:        {grid_path}  (default model, seeds 0-63; DP model: {dp_grid_path})",
              f"real faces:  {reals_path}",
              f"strip:       {strip_path}  (seeds 3->7, 11->19, 23->42, spherical in z)",
              f"curves:      {runs['default'].loss_curves_path}",
              f"total time:  {time.time() - start:.0f} s"]
    write_summary(folder / "summary.txt", lines)
    print("\n".join(lines))
    print(f"\ndemo complete: open {reports['default']}")
    return folder


def _is_current(result_path: Path, run: "Run") -> bool:  # noqa: F821
    """A result written after the run's exported weights (so a second demo need not measure again)."""
    from facegan.run import EXPORT_WEIGHTS_NAME

    weights = run.export_dir / EXPORT_WEIGHTS_NAME
    return result_path.is_file() and weights.is_file() and result_path.stat().st_mtime > weights.stat().st_mtime


def _privacy_line(audit: dict) -> str:
    """One line from audit.json: the strongest membership attack and whether anything was flagged."""
    attacks = audit.get("membership", [])
    strongest = max(attacks, key=lambda attack: abs(attack["auc"] - 0.5), default=None)
    attack_text = f"strongest membership attack {strongest['attack']}/{strongest['space']} AUC {strongest['auc']:.2f} (0.5 = guessing)" if strongest else "no attack ran"
    warnings = audit.get("warnings", [])
    return attack_text + ("; FLAGGED: " + " | ".join(warnings) if warnings else "; nothing flagged")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegan.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--data", default="data/builtin-lfw32")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--kimg", type=float, default=50.0, help="default model's training length")
    parser.add_argument("--dp-kimg", type=float, default=20.0, help="DP model's training length (it also stops at its budget)")
    parser.add_argument("--dp-epsilon", type=float, default=10.0)
    parser.add_argument("--num-eval", type=int, default=1000, help="generated faces per evaluation and audit")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, args.data, args.size, args.kimg, args.dp_kimg, args.dp_epsilon, args.num_eval, progress=not args.no_progress)
    except FaceganError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
