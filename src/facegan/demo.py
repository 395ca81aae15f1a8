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
    from facegan.data.dataset import FaceDataset
    from facegan.data.pipeline import prepare_dataset

    if (path / "manifest.json").is_file():
        dataset = FaceDataset.load(path)
        if dataset.resolution == size and dataset.manifest.get("source") == BUILTIN_SOURCE:
            return dataset
    return prepare_dataset(BUILTIN_SOURCE, path, size=size, progress=True)


def ensure_trained(config, progress: bool = True):
    """Train `config`, or resume it if a previous demo was cut short, or skip it if it is done."""
    import json

    from facegan.training.loop import train

    run = Path(config.out)
    summary_path = run / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        done = summary.get("kimg", 0) >= config.kimg - 1e-9 or summary.get("stopped_early")
        if done and not summary.get("interrupted"):
            print(f"reusing finished run {run} ({summary['kimg']:.1f} kimg)")
            return summary
    resume = (run / "checkpoints" / "state.pt").is_file()
    result = train(config, resume=resume, progress=progress)
    if result.interrupted:
        raise FaceganError(f"training was interrupted; run the demo again to resume {run}")
    return json.loads(summary_path.read_text())


def write_summary(path: Path, lines: list[str]) -> None:
    from facegan.images import write_bytes_atomic

    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


def run_demo(out: str = "runs/demo", data: str = "data/builtin-lfw32", size: int = 32, kimg: float = 60.0, progress: bool = True) -> Path:
    """Run the main job; returns the demo folder."""
    from facegan.images import make_grid, save_png, upscale_nearest
    from facegan.models.export import load_generator
    from facegan.training.config import resolve_config

    start = time.time()
    folder = Path(out)
    print(f"[1/3] preparing the built-in faces ({BUILTIN_SOURCE}) at {size}x{size}")
    dataset = ensure_builtin_dataset(Path(data), size)
    print(f"      {len(dataset)} real faces, content hash {dataset.content_hash[:12]}")

    print(f"[2/3] training the default GAN for {kimg:g} kimg on the CPU")
    config = resolve_config("default", {"data": str(dataset.path), "out": str(folder / "default"), "kimg": kimg,
                                         "schedule": {"snapshot_kimg": 10.0, "checkpoint_kimg": 5.0}})
    summary = ensure_trained(config, progress)

    print("[3/3] sampling: grid, interpolation strip")
    generator = load_generator(folder / "default")
    grid = make_grid(generator.sample(range(64)), num_columns=8)
    grid_path = save_png(upscale_nearest(grid, 512), folder / "grid.png")
    rows = [generator.interpolate(a, b, 8) for a, b in ((3, 7), (11, 19), (23, 42))]
    strip_path = save_png(upscale_nearest(make_grid(np.concatenate(rows), num_columns=8), 512), folder / "interpolation.png")
    curves = folder / "default" / "loss_curves.png"
    reals_path = save_png(upscale_nearest(make_grid(np.asarray(dataset.images[:64]), num_columns=8), 512), folder / "reals.png")

    stats = summary.get("last_stats", {})
    lines = [
        "facegan demo: the default GAN on the built-in LFW faces",
        f"data:        {dataset.path} ({len(dataset)} faces, {size}x{size}, hash {dataset.content_hash[:12]})",
        f"training:    {summary['kimg']:.1f} kimg in {summary['seconds']:.0f} s ({summary['img_per_s']:.0f} img/s)",
        f"final loss:  D {stats.get('loss_d', float('nan')):.3f}  G {stats.get('loss_g', float('nan')):.3f}",
        f"run folder:  {folder / 'default'}",
        f"export:      {folder / 'default' / 'export'} (config.json + model.safetensors)",
        f"grid:        {grid_path}  (seeds 0-63)",
        f"real faces:  {reals_path}",
        f"strip:       {strip_path}  (seeds 3->7, 11->19, 23->42, spherical in z)",
        f"curves:      {curves}",
        f"total time:  {time.time() - start:.0f} s",
    ]
    write_summary(folder / "summary.txt", lines)
    print("\n".join(lines))
    print(f"\ndemo complete: open {folder}/")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegan.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--data", default="data/builtin-lfw32")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--kimg", type=float, default=60.0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, args.data, args.size, args.kimg, progress=not args.no_progress)
    except FaceganError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
