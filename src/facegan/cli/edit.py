"""`facegan edit`: a strip of faces edited along an attribute direction, and how much else moved."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from facegan.cli.common import ExamplesFormatter, parse_seeds
from facegan.cli.provenance import add_provenance_options
from facegan.cli.options import parse_float, parse_int
from facegan.errors import FaceganError

EDIT_EXAMPLES = """\
examples:
  facegan data prepare builtin:rendered-faces data/rf32 --size 32 --identities 100 --per-identity 10
  facegan train --data data/rf32 --out runs/rf32 --kimg 200
  facegan edit runs/rf32 --seeds 0-7 --attribute Smiling --strength -3..3 --out smiling.png
  facegan edit runs/rf32 --seeds 0-7 --attribute Black_Hair --condition-on Male,Pale_Skin --out hair.png
  facegan edit runs/rf32/export --data data/celeba64 --seeds 3,7 --attribute Eyeglasses --strength 4 --steps 5 --out glasses.png
  facegan project runs/rf32 photos/ --out proj && facegan edit runs/rf32 --latents proj/latents.npy --attribute Smiling --out mine.png

The attribute classifier is trained on --data's attribute labels (default: the run's training data) and the
directions are found from --samples generated faces (InterFaceGAN); both are cached in the run's editing/ folder.
--condition-on A,B projects the directions of A and B out of the edited one, so they move as little as possible.
Writes the strip (a row per face, a column per strength) and STRIP.json beside it: per strength the classifier's
score change for the attribute, the mean |change| of the others and the identity drift (recogniser distance).
"""
MAX_FACES = 256
# "-3..3" starts with "-": argparse would take it for an option unless it counts as a negative number.
_NEGATIVE_VALUE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[0-9.]*\.\.-?[0-9.]+$|^-[0-9.]+(e-?\d+)?$")


def register(commands) -> None:
    edit = commands.add_parser(
        "edit", help="edit an attribute of generated or projected faces along a latent direction", epilog=EDIT_EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    edit._negative_number_matcher = _NEGATIVE_VALUE
    edit.add_argument("model", metavar="RUN_OR_EXPORT", help="GAN run folder, export folder or model.safetensors")
    edit.add_argument("--attribute", required=True, metavar="NAME", help="attribute to edit, as the labelled dataset names it (e.g. Smiling)")
    edit.add_argument("--out", required=True, metavar="STRIP.png", help="strip image to write; STRIP.json beside it holds the measurements")
    edit.add_argument("--seeds", default=None, metavar="S", help=f"faces to edit, e.g. 0-7 or 3,7 (at most {MAX_FACES})")
    edit.add_argument("--latents", default=None, metavar="FILE", help="latents.npy from `facegan project` (float32 (N, z_dim)), instead of --seeds")
    edit.add_argument("--strength", default="-3..3", metavar="LO..HI", help="strengths from LO to HI in --steps columns; one number S means 0..S")
    edit.add_argument("--steps", default="7", metavar="K", help="columns of the strip")
    edit.add_argument("--condition-on", default=None, metavar="A,B", help="attributes to hold still (conditional manipulation; default: none)")
    edit.add_argument("--data", default=None, metavar="DATASET", help="labelled dataset for the attribute classifier (default: the run's training data)")
    edit.add_argument("--samples", default="4000", metavar="N", help="generated faces labelled to find the directions")
    edit.add_argument("--recogniser", default="dlib", metavar="NAME", help="recogniser that measures identity drift ('none' to skip)")
    edit.add_argument("--truncation", default="1.0", help="psi in [0, 1] for the sampled faces and the direction search")
    edit.add_argument("--seed", default="0", metavar="S", help="seed of the latents sampled to find the directions")
    edit.add_argument("--device", default="cpu", help="cpu or cuda")
    edit.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_provenance_options(edit)
    edit.set_defaults(handler=run_edit)


def parse_strengths(text: str, steps: int) -> list[float]:
    """'-3..3' -> `steps` values from -3 to 3; '2' -> `steps` values from 0 to 2."""
    text = str(text).strip()
    if ".." in text:
        low_text, high_text = text.split("..", 1)
        low, high = (parse_float("--strength", part, -100.0, 100.0) for part in (low_text, high_text))
        if high <= low:
            raise FaceganError(f"--strength {text} runs backwards or is empty; write it LO..HI with LO < HI, e.g. -3..3")
    else:
        low, high = 0.0, parse_float("--strength", text, -100.0, 100.0)
        if high == 0:
            raise FaceganError("--strength 0 edits nothing; give a range such as -3..3 or a strength such as 2")
    import numpy as np

    values = np.linspace(low, high, steps)
    # Exactly 0 where the range crosses it, so that column is the original image (not z + 1e-16 d).
    return [0.0 if abs(value) < 1e-9 * max(abs(low), abs(high)) else round(float(value), 10) for value in values]


def _json_path(out: Path) -> Path:
    return out.with_suffix(".json")


def _check_outputs(out: Path) -> tuple[Path, Path]:
    from facegan.config import load_json_optional
    from facegan.editing.edit import EDIT_FORMAT
    from facegan.images import check_image_path
    from facegan.cli.options import check_writable_target

    out = check_image_path(out, "--out")
    check_writable_target(out, "--out")
    json_path = _json_path(out)
    if json_path.exists():
        existing = load_json_optional(json_path) if json_path.is_file() else None
        if not isinstance(existing, dict) or existing.get("format") != EDIT_FORMAT:
            raise FaceganError(f"{json_path} exists and was not written by `facegan edit`; choose another --out (its measurements go to STRIP.json)")
    elif out.exists():
        # An earlier strip always has its STRIP.json beside it: without one, the file is the user's.
        raise FaceganError(f"--out {out} exists and was not written by `facegan edit` (no {json_path.name} beside it); "
                           "choose another --out or remove the file")
    return out, json_path


def _model_inputs(model: str) -> list[str]:
    """The model's export folder and its recorded training data (the default --data)."""
    from facegan.run import Run

    try:
        located = Run.locate(model)
    except FaceganError:
        return []  # edit_strip names the problem with the model itself
    from facegan.config import load_json_optional
    from facegan.run import EXPORT_CONFIG_NAME

    folders = [str(located.export_dir)]
    metadata = load_json_optional(located.export_dir / EXPORT_CONFIG_NAME)  # the export records its dataset's path
    try:
        config = located.run.read_config() if located.run is not None and located.run.has_config() else {}
    except FaceganError:
        config = {}
    for record, key in ((metadata, "dataset"), (config, "data")):  # where edit_strip looks for its default --data
        if isinstance(record, dict) and isinstance(record.get(key), str):
            folders.append(record[key])
    return folders


def _check_not_inside(out: Path, folders: list[str | None]) -> None:
    """The strip and its JSON must not land in a prepared dataset or a model's export."""
    import os

    where = Path(os.path.realpath(out.parent))
    for folder in folders:
        if folder is None or not Path(folder).is_dir():
            continue
        inside = Path(os.path.realpath(folder))
        if where == inside or inside in where.parents:
            raise FaceganError(f"--out {out} lies inside {folder}, an input of this command; write the strip somewhere else")


def run_edit(args: argparse.Namespace) -> int:
    from facegan.config import save_json
    from facegan.editing.edit import edit_strip, strip_image
    from facegan.images import save_image

    steps = parse_int("--steps", args.steps, 1, 64)
    strengths = parse_strengths(args.strength, steps)
    num_samples = parse_int("--samples", args.samples, 40, 10_000_000)
    truncation = parse_float("--truncation", args.truncation, 0.0, 1.0)
    seed = parse_int("--seed", args.seed, 0, 2**63 - 1)
    if (args.seeds is None) == (args.latents is None):
        raise FaceganError("pick the faces with exactly one of --seeds S (e.g. 0-7) or --latents latents.npy")
    seeds = parse_seeds(args.seeds, MAX_FACES, "--seeds") if args.seeds is not None else None
    condition_on = [name.strip() for name in (args.condition_on or "").split(",") if name.strip()]
    recogniser = None if args.recogniser.lower() == "none" else args.recogniser
    out, json_path = _check_outputs(Path(args.out))
    _check_not_inside(out, [args.data, *_model_inputs(args.model)])
    from facegan.cli.provenance import provenance_from_args
    from facegan.images import check_image_path
    from facegan.config import load_json_optional
    from facegan.provenance.record import TRAINED

    # Every pixel of an edit strip is G(z), for seeds and for latents projected from photos alike (as `project` marks
    # its reconstructions); the person may be real, the image is generated.
    provenance = provenance_from_args(args, TRAINED, "edit")
    check_image_path(out, "--out", provenance)

    bars: dict[str, object] = {}

    def show_progress(stage: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        from tqdm import tqdm

        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = tqdm(total=total, desc=stage, dynamic_ncols=True, file=sys.stderr)
        bars[stage].update(done - bars[stage].n)

    try:
        result = edit_strip(args.model, args.attribute, strengths, seeds=seeds, latents=args.latents, data=args.data,
                            condition_on=condition_on, num_samples=num_samples, recogniser=recogniser,
                            truncation=truncation, seed=seed, device=args.device, progress=show_progress, max_faces=MAX_FACES)
    finally:
        for bar in bars.values():
            bar.close()
    from facegan.models.export import export_hash, resolve_export_path

    recorded = load_json_optional(resolve_export_path(args.model) / "config.json") or {}
    fingerprint = (recorded.get("fingerprint") or {}).get("id") if isinstance(recorded.get("fingerprint"), dict) else None
    provenance = provenance.about(export_hash(args.model), fingerprint, seeds=args.seeds)
    save_image(strip_image(result.images), out, provenance)
    report = {**result.report, "strip": str(out.resolve()), "provenance": provenance.summary()}
    save_json(report, json_path)
    for line in summary_lines(report):
        print(line)
    print(f"wrote {out} and {json_path}")
    return 0


def summary_lines(report: dict) -> list[str]:
    """The table `facegan edit` prints: per strength, target score and change, others' |change|, identity drift."""
    holdout = report["classifier"]["holdout"]
    lines = [f"{report['attribute']}: classifier held-out accuracy {holdout['accuracy']:.3f} (majority class {holdout['majority_accuracy']:.3f}); "
             f"boundary accuracy {report['direction']['fit'].get('boundary_accuracy', float('nan')):.3f}"]
    sections = [("conditioned on " + ",".join(report["condition_on"]) if report["condition_on"] else "direction", report["measurements"])]
    if report.get("unconditioned"):
        sections.append(("unconditioned", report["unconditioned"]))
    for title, measured in sections:
        lines.append(f"{title}:  strength  score  change  others|change|  identity-drift")
        for row in measured["per_strength"]:
            drift = f"{row['identity_drift']:.3f}" if "identity_drift" in row else "-"
            lines.append(f"  {row['strength']:+8.2f}  {row['target_score']:.3f}  {row['target_change']:+.3f}  {row['others_abs_change']:.3f}  {drift}")
    lines.extend(f"note: {note}" for note in report.get("notes", []))
    return lines
