"""The repair, inversion and editing part of the main job (`make demo-repair`), on built-in faces only.

It does not fit beside `make demo` in that job's 12-minute budget, so it is its own job. It reuses what
`make demo` made (the prepared faces, their train/holdout split and the default GAN) and makes them
when they are missing; like the main job it is idempotent: finished runs are reused, interrupted ones
resume.

1. a repair network trained on the built-in training faces (masks of four kinds and degradations);
2. `repair eval` on the held-out faces: every mask band, the network against OpenCV's Telea and
   Navier-Stokes, the same masks for every method;
3. repair by masked GAN inversion with the default GAN, on the strip's faces and masks;
4. a GAN on `builtin:rendered-faces` (the built-in set with attribute labels), an attribute classifier
   on those labels, InterFaceGAN directions and conditioned edit strips.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegan.demo import default_gan_config, ensure_builtin_dataset, ensure_fingerprint, ensure_split, ensure_trained, ensure_trained_steps, write_summary
from facegan.errors import FaceganError

STEPS = 5
RENDERED_SOURCE = "builtin:rendered-faces"


@dataclass
class RepairPlan:
    """Lengths of the repair demo's parts (the defaults fit its budget on 2 cores)."""

    repair_steps: int = 600
    repair_batch_size: int = 16
    gan_kimg: float = 50.0  # the default GAN of `make demo`: reused when that demo ran
    fingerprint_steps: int | None = None  # its training faces carry `make demo`'s learned fingerprint (made when missing)
    fingerprint_tune_steps: int | None = None  # the fine-tune of its export toward the key (None: the default's)
    projection_steps: int = 150
    projection_starts: int = 2
    edit_identities: int = 150
    edit_per_identity: int = 10
    edit_kimg: float = 40.0
    # attribute -> the attributes held still while it is edited (not its own antonyms: a drawn face has one hair
    # colour, so "blacker but no less blond" has no direction left to follow)
    edits: tuple[tuple[str, tuple[str, ...]], ...] = (("Black_Hair", ("Eyeglasses", "Pale_Skin")),
                                                      ("Blond_Hair", ("Eyeglasses", "Pale_Skin")),
                                                      ("Eyeglasses", ("Black_Hair", "Pale_Skin")))
    edit_seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    edit_strengths: tuple[float, ...] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
    edit_samples: int = 3000
    classifier_steps: int = 600


def ensure_repairer(config, progress: bool) -> dict:
    """Train the repair network (or resume, or reuse a finished run), as `facegan repair train` does."""
    from facegan.repair.training import train_repair

    return ensure_trained_steps(config, train_repair, "repair", progress)


def ensure_repair_eval(run, holdout, progress: bool) -> dict:
    """`facegan repair eval RUN --data HOLDOUT`, reused when newer than the run's weights."""
    from facegan.config import load_json_optional, save_json
    from facegan.files import write_bytes_atomic
    from facegan.repair.export import evaluate_repairer, load_repairer
    from facegan.run import EXPORT_WEIGHTS_NAME

    weights = run.export_dir / EXPORT_WEIGHTS_NAME
    if run.repair_eval_path.is_file() and run.repair_strip_path.is_file() and run.repair_eval_path.stat().st_mtime > weights.stat().st_mtime:
        saved = load_json_optional(run.repair_eval_path)
        if isinstance(saved, dict) and isinstance(saved.get("inpainting"), dict):
            return saved
    say = (lambda message: print(f"      {message}")) if progress else None
    record, strip = evaluate_repairer(load_repairer(run.path), holdout, progress=say)
    save_json(record, run.repair_eval_path)
    write_bytes_atomic(run.repair_strip_path, strip)
    return record


def projection_strip(generator_run, repair_run, holdout, plan: RepairPlan, out: Path, progress: bool) -> tuple[Path, dict]:
    """The strip faces (the first held-out faces, 30-40 % masks of every kind): original, masked, Telea, NS,
    the repair network and masked GAN inversion, one row each; returns the PNG and the rows' scores."""
    from facegan.files import write_bytes_atomic
    from facegan.inversion import project
    from facegan.metrics.quality import image_quality
    from facegan.models.export import load_generator
    from facegan.repair.baselines import INPAINTERS, composite
    from facegan.repair.evaluate import band_masks, hide, repair_strip
    from facegan.repair.export import fit_channels, load_repairer

    count = 8
    repairer = load_repairer(repair_run.path)
    generator = load_generator(generator_run.path)
    originals = fit_channels(np.array(holdout.images[:count]), generator.channels, "the generator")
    masks = band_masks(count, originals.shape[1], (0.3, 0.4), 2, seed=0)
    damaged = hide(originals, masks)
    bar = _Bar("projecting", plan.projection_steps * plan.projection_starts, progress)
    try:
        projected = project(generator, damaged, masks=masks, steps=plan.projection_steps, starts=plan.projection_starts, seed=0,
                            progress=lambda done, total: bar.update_to(done, total))
    finally:
        bar.close()
    rows = {"original": originals, "masked": np.where(masks[..., None], 255, damaged).astype(np.uint8),
            **{name: method(damaged, masks) for name, method in INPAINTERS.items()},
            "facegan net": fit_channels(repairer.repair(fit_channels(damaged, repairer.channels, "the repair model"), masks),
                                        generator.channels, "the generator"),
            "projection": composite(projected.images, damaged, masks)}
    scores = {}
    for name, images in rows.items():
        if name in ("original", "masked"):
            continue
        quality = image_quality(originals, images)
        scores[name] = {"psnr": float(np.mean(np.minimum(quality["psnr"], 100.0))), "ssim": float(quality["ssim"].mean())}
    path = out / "repair_strip.png"
    write_bytes_atomic(path, repair_strip(rows))
    return path, scores


def ensure_rendered_dataset(path: Path, size: int, plan: RepairPlan):
    """builtin:rendered-faces (identities and CelebA-style attribute labels), reused when already prepared alike."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.data.pipeline import prepare_dataset

    if (path / MANIFEST_NAME).is_file():
        dataset = FaceDataset.load(path)
        if dataset.resolution == size and dataset.manifest.get("source") == RENDERED_SOURCE and len(dataset) == plan.edit_identities * plan.edit_per_identity:
            return dataset
    return prepare_dataset(RENDERED_SOURCE, path, size=size, identities=plan.edit_identities, per_identity=plan.edit_per_identity,
                           seed=0, progress=True)


def edit_strips(run, dataset, plan: RepairPlan, out: Path, progress: bool) -> list[dict]:
    """One conditioned edit strip per attribute (the others held still); returns each strip's measurements."""
    from facegan.config import save_json
    from facegan.editing.classifier import ClassifierSettings
    from facegan.editing.edit import edit_strip, strip_image
    from facegan.images import save_image

    records = []
    for attribute, others in plan.edits:
        bar = _Bar(f"editing {attribute}", 1, progress)
        try:
            result = edit_strip(run.path, attribute, plan.edit_strengths, seeds=list(plan.edit_seeds), data=dataset,
                                condition_on=list(others), num_samples=plan.edit_samples,
                                classifier_settings=ClassifierSettings(steps=plan.classifier_steps),
                                progress=lambda stage, done, total: bar.update_to(done, total))
        finally:
            bar.close()
        path = out / f"edit_{attribute}.png"
        from facegan.models.export import export_hash
        from facegan.provenance.record import TRAINED, Provenance

        save_image(strip_image(result.images), path, Provenance(source_type=TRAINED, action="edit", model=export_hash(run.path),
                                                               seeds=",".join(map(str, plan.edit_seeds))))
        save_json({**result.report, "strip": str(path.resolve())}, path.with_suffix(".json"))
        records.append({"attribute": attribute, "condition_on": list(others), "path": path, "report": result.report})
    return records


class _Bar:
    """A tqdm bar fed with (done, total) callbacks, or nothing when progress is off."""

    def __init__(self, name: str, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"      {name}", unit="step", leave=False) if enabled else None

    def update_to(self, done: int, total: int) -> None:
        if self.bar is not None:
            if self.bar.total != total:
                self.bar.total = total
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_repair_demo(out: str = "runs/demo", data: str = "data/builtin-lfw32", size: int = 32, plan: RepairPlan | None = None,
                    progress: bool = True) -> Path:
    """Run the repair demo; returns the demo folder (the same one `make demo` fills)."""
    from facegan.config import from_dict
    from facegan.repair.config import RepairConfig
    from facegan.report.card import build_report
    from facegan.run import Run
    from facegan.training.config import resolve_config

    plan = plan or RepairPlan()
    start = time.time()
    folder = Path(out)
    print(f"[1/{STEPS}] the built-in faces ({size}x{size}, split 80/20 as in `make demo`)")
    dataset = ensure_builtin_dataset(Path(data), size)
    train_set, holdout_set = ensure_split(dataset, Path(f"{data}-train"), Path(f"{data}-holdout"))

    repair_run = Run(folder / "repair")
    print(f"[2/{STEPS}] training a repair network for {plan.repair_steps} steps (gated convolutions, patch critic; boxes, strokes, "
          "eye bands and lower-face masks; noise, blur, JPEG)")
    repair_summary = ensure_repairer(from_dict(RepairConfig, {"data": str(train_set.path), "out": str(repair_run.path),
                                                              "steps": plan.repair_steps, "batch_size": plan.repair_batch_size}), progress)
    print(f"[3/{STEPS}] repair eval on the {len(holdout_set)} held-out faces: five mask bands x four kinds, network vs OpenCV Telea and NS")
    record = ensure_repair_eval(repair_run, holdout_set, progress)

    gan_run = Run(folder / "default")
    print(f"[4/{STEPS}] repair by masked GAN inversion with the default GAN ({gan_run.path}; trained for {plan.gan_kimg:g} kimg when missing)")
    ensure_fingerprint(folder / "fingerprint", train_set, plan.fingerprint_steps, progress)  # the demo's fingerprint, which its GAN learns
    ensure_trained(default_gan_config(folder, train_set, plan.gan_kimg, plan.fingerprint_tune_steps), progress)
    strip_path, strip_scores = projection_strip(gan_run, repair_run, holdout_set, plan, folder, progress)

    edit_run = Run(folder / "edit-gan")
    print(f"[5/{STEPS}] attribute editing: a GAN on {RENDERED_SOURCE} ({plan.edit_identities} x {plan.edit_per_identity}) for "
          f"{plan.edit_kimg:g} kimg, a classifier on its labels, InterFaceGAN directions for {', '.join(name for name, _ in plan.edits)}")
    rendered = ensure_rendered_dataset(Path(data).parent / f"rendered{size}-edit", size, plan)
    ensure_trained(resolve_config("default", {"data": str(rendered.path), "out": str(edit_run.path), "kimg": plan.edit_kimg,
                                              "schedule": {"snapshot_kimg": 5.0, "checkpoint_kimg": 5.0}}), progress)
    edits = edit_strips(edit_run, rendered, plan, folder, progress)
    report = build_report(repair_run.path)

    lines = ["facegan repair demo: repair, GAN inversion and attribute editing on built-in faces", "",
             f"repair network ({repair_run.path}): {repair_summary.get('num_steps', 0)} steps in {repair_summary.get('seconds', 0):.0f} s "
             f"on {len(train_set)} training faces; held-out faces: {len(holdout_set)}",
             "  identity distance in dlib's face space (lower = the repaired face is more the same person), per mask band:"]
    for band in record["inpainting"]["bands"]:
        methods = band["methods"]
        cells = "  ".join(f"{name} {methods[name]['face_distance']:.3f}" for name in methods)
        lines.append(f"    {band['label']:>8s}: {cells}")
    lines.append(f"  strip (original, masked 30-40 %, Telea, NS, network, projection): {strip_path}")
    lines.append("  strip PSNR / SSIM: " + ", ".join(f"{name} {score['psnr']:.1f} dB / {score['ssim']:.3f}" for name, score in strip_scores.items()))
    lines.append(f"  report card: {report}")
    lines.append(f"editing ({edit_run.path}): classifier score change from strength {min(plan.edit_strengths):g} to "
                 f"{max(plan.edit_strengths):g}, mean |change| of the other attributes and identity drift (dlib distance) at the "
                 "strongest edit; conditioned as shown (unconditioned in brackets):")
    for item in edits:
        conditioned, plain = item["report"]["measurements"]["summary"], item["report"]["unconditioned"]["summary"]
        cells = [f"{label} {conditioned.get(key, float('nan')):+.3f} ({plain.get(key, float('nan')):+.3f})"
                 for label, key in (("target", "target_change_low_to_high"), ("others", "others_abs_change_at_max"),
                                    ("drift", "identity_drift_at_max"))]
        accuracy = item["report"]["classifier"]["holdout"].get("balanced_accuracy")
        lines.append(f"  {item['attribute']:12s} " + "  ".join(cells) + f"  | {', '.join(item['condition_on'])} held still; classifier held-out balanced accuracy {accuracy:.2f}  {item['path']}")
    lines.append(f"total time:  {time.time() - start:.0f} s")
    write_summary(folder / "summary-repair.txt", lines)
    print("\n".join(lines))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegan.demo_repair", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--data", default="data/builtin-lfw32")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repair-steps", type=int, default=RepairPlan.repair_steps)
    parser.add_argument("--edit-kimg", type=float, default=RepairPlan.edit_kimg)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_repair_demo(args.out, args.data, args.size, RepairPlan(repair_steps=args.repair_steps, edit_kimg=args.edit_kimg),
                        progress=not args.no_progress)
    except FaceganError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
