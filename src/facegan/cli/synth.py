"""`facegan synth`: an identity-labelled dataset of new people from an identity-aware generator."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import parse_float, parse_int
from facegan.errors import FaceganError

SYNTH_EXAMPLES = """\
examples:
  facegan train --data data/faces32 --out runs/id32 --condition identity --kimg 200
  facegan synth runs/id32 --identities 100 --per-identity 20 --out data/synth32
  facegan synth runs/id32 --identities 500 --per-identity 10 --out data/synth-b --seed 100000 --recogniser lbph
  facegan synth runs/id32/export --identities 50 --per-identity 8 --out data/s --reference data/faces32 --min-distance 0.7
  facegan data pairs data/synth32 --out data/synth32/../synth32-pairs.txt     # then `facegan recog eval ...`

Candidates closer than --min-distance (default: the recogniser's match threshold) to a training face are
rejected and the next identity seed is tried; the manifest records seeds, rejections and the consistency figures.
"""
MAX_IDENTITIES = 1_000_000
MAX_PER_IDENTITY = 100_000
MAX_ATTEMPTS = 10_000


def register(commands) -> None:
    synth = commands.add_parser(
        "synth", help="write an identity-labelled dataset of new synthetic people", epilog=SYNTH_EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    synth.add_argument("model", metavar="RUN_OR_EXPORT", help="identity-aware run folder, export folder or model.safetensors")
    synth.add_argument("--identities", required=True, metavar="N", help="number of new people (at least 2)")
    synth.add_argument("--per-identity", required=True, metavar="K", help="images of each person (at least 2)")
    synth.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write (new, empty, or an earlier facegan dataset)")
    synth.add_argument("--seed", default="0", metavar="S", help="first identity seed; candidates are S, S+1, ...")
    synth.add_argument("--min-distance", default=None, metavar="D", help="reject candidates closer than this to a training face (default: the recogniser's match threshold; "
                       "'reference': closer than the training faces come to one another)")
    synth.add_argument("--recogniser", default="dlib-resnet", metavar="NAME", help="recogniser that measures identity (a registered name)")
    synth.add_argument("--measure-with", action="append", default=[], metavar="NAME",
                       help="another recogniser (name or recogniser run) that also measures identity consistency, e.g. lbph (repeatable)")
    synth.add_argument("--reference", default=None, metavar="DATASET", help="training faces new people must differ from (default: the model's training dataset)")
    synth.add_argument("--max-attempts", default=str(20), metavar="M", help="candidates tried for one identity before giving up")
    synth.add_argument("--truncation", default="1.0", help="psi in [0, 1] for identity and nuisance codes")
    synth.add_argument("--device", default="cpu", help="cpu or cuda")
    synth.add_argument("--no-progress", action="store_true", help="no progress bar")
    synth.set_defaults(handler=run_synth)


def _parse_count(name: str, text: str, maximum: int, why: str) -> int:
    value = parse_int(name, text, -(2**63))
    if value < 2:
        raise FaceganError(f"{name} must be at least 2 ({why}), got {value}")
    if value > maximum:
        raise FaceganError(f"{name} must be at most {maximum:,}, got {value:,}; make several datasets whose --seed ranges do not overlap")
    return value


def _check_out(out: Path, located, reference_path: Path | None) -> None:
    """Refuse an --out that is or lies in/around the run, the export or the reference dataset (it is replaced whole)."""
    import stat

    from facegan.data.dataset import paths_overlap

    try:
        mode = out.lstat().st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISDIR(mode) and not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
        raise FaceganError(f"--out {out} is a FIFO, socket or device, not a folder; give a new folder path for the synthetic dataset")

    places = [("the run", located.run.path if located.run is not None else None), ("the export", located.export_dir),
              ("the reference dataset", reference_path)]
    for what, place in places:
        if place is not None and paths_overlap(out, Path(place)):
            raise FaceganError(f"--out {out} is {what} {place} or inside/around it; give a separate folder for the synthetic dataset")


def run_synth(args: argparse.Namespace) -> int:
    from facegan.data.dataset import FaceDataset, absolute_path, check_output_folder
    from facegan.run import Run

    identities = _parse_count("--identities", args.identities, MAX_IDENTITIES, "different-identity pairs need two people")
    per_identity = _parse_count("--per-identity", args.per_identity, MAX_PER_IDENTITY,
                                "same-identity pairs need two images of each person; a recogniser learns from several")
    seed = parse_int("--seed", args.seed, -(2**63))
    if not 0 <= seed < 2**63:
        raise FaceganError(f"--seed must be a whole number from 0 to 2**63 - 1, got {seed}")
    max_attempts = parse_int("--max-attempts", args.max_attempts, 1, MAX_ATTEMPTS)
    if args.min_distance is None or args.min_distance == "reference":
        min_distance = args.min_distance
    else:
        min_distance = parse_float("--min-distance", args.min_distance, 0.0, 1e6)
    truncation = parse_float("--truncation", args.truncation, 0.0, 1.0)
    # Every refusal about paths comes before the model is loaded or anything is rendered.
    located = Run.locate(args.model)
    _check_out(absolute_path(args.out), located, None)
    out = check_output_folder(args.out)
    reference = None
    if args.reference is not None:
        try:
            reference = FaceDataset.load(args.reference)
        except FaceganError as error:
            raise FaceganError(f"--reference: {error}") from None
    _check_out(out, located, reference.path if reference is not None else None)

    from facegan.models.export import load_generator
    from facegan.recognition.synth import default_reference, summary_line, synthesize_identities

    generator = load_generator(located.export_dir, device=args.device)
    if not getattr(generator, "identity_aware", False):
        raise FaceganError(f"{args.model} is not identity-aware; train it with --condition identity")
    notes = []
    if reference is None:
        reference, why_not = default_reference(located.run, generator)
        if reference is None:
            notes.append(f"{why_not}; synthetic identities were NOT checked against training faces — pass --reference DATASET")
        else:
            _check_out(out, located, reference.path)

    bars = []

    def show_progress(done: int, total: int) -> None:
        # The bar appears with the first identity, so a request refused up front prints only its error line.
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=total, unit="id", desc="synth", dynamic_ncols=True, file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        dataset = synthesize_identities(
            generator, identities, per_identity, seed=seed, recogniser=args.recogniser, reference=reference,
            min_distance=min_distance, max_attempts=max_attempts, truncation=truncation, device=args.device,
            progress=None if args.no_progress else show_progress, source=str(located.export_dir.resolve()),
            measure_with=list(args.measure_with),
        )
    finally:
        for bar in bars:
            bar.close()
    path = dataset.save(out)
    print(summary_line(dataset, path))
    for note in notes + [note for note in dataset.manifest["synth"]["notes"] if not note.startswith("no reference")]:
        print(f"note: {note}")
    return 0
