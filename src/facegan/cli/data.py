"""`facegan data prepare|info|split`: build and inspect prepared face datasets."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from facegan.cli.common import ExamplesFormatter
from facegan.errors import FaceganError

PREPARE_EXAMPLES = """\
examples:
  facegan data prepare builtin:lfw-subset data/lfw32 --size 32     # the 100 built-in LFW faces
  facegan data prepare builtin:rendered-faces data/rendered32 --size 32 --identities 500 --per-identity 20 --seed 0
                                                                   # drawn cartoon faces with identities (not photographs)
  facegan data prepare ~/photos data/faces64 --size 64 --align dlib   # detect + align with dlib
  facegan data prepare ~/celeba data/celeba64 --size 64 --align center  # CelebA: keeps attributes, identities, split
  facegan data prepare ~/lfw data/lfw64 --size 64 --align dlib      # LFW: keeps identities
  facegan data prepare ~/people data/people64 --layout identity-folders   # one folder per person
"""

PAIRS_EXAMPLES = """\
examples:
  facegan data pairs data/faces --out data/pairs.txt                       # 10 folds x (300 same + 300 different)
  facegan data pairs data/faces --folds 10 --pairs-per-fold 50 --seed 1 --out pairs.txt
"""


PARTITION_EXAMPLES = """
examples:
  facegan data partition data/faces --clients 4 --out data/clients                  # IID, equal shares
  facegan data partition data/people --clients 4 --by identity --out data/clients   # each person on one client
  facegan data partition data/people --clients 8 --by dirichlet --alpha 0.1 --out data/skewed
"""


def register(commands) -> None:
    data = commands.add_parser("data", help="prepare, inspect and split face datasets")
    verbs = data.add_subparsers(dest="data_command", metavar="VERB", required=True)

    prepare = verbs.add_parser("prepare", help="decode, align and cache face images once", epilog=PREPARE_EXAMPLES, formatter_class=ExamplesFormatter)
    prepare.add_argument("source", metavar="SOURCE", help="image folder, CelebA folder, LFW folder, builtin:lfw-subset or builtin:rendered-faces")
    prepare.add_argument("out", metavar="OUT", help="dataset folder to write")
    prepare.add_argument("--size", type=int, default=64, help="output side in pixels")
    prepare.add_argument("--align", choices=["dlib", "center", "none"], default="center",
                         help="dlib: detect the largest face and align with 5 landmarks; center: centre crop; none: resize")
    prepare.add_argument("--channels", type=int, choices=[1, 3], default=None, help="force gray (1) or RGB (3)")
    prepare.add_argument("--workers", type=int, default=None, help="processes for decoding or drawing (default: all cores)")
    prepare.add_argument("--limit", type=int, default=None, help="use at most this many source images")
    prepare.add_argument("--keep-damaged", action="store_true",
                         help="keep JPEGs whose decoder reports corrupt data (skipped as `damaged` by default)")
    prepare.add_argument("--max-file-bytes", type=int, default=None,
                         help="skip files larger than this as too_large, unread (default 256 MiB)")
    prepare.add_argument("--layout", choices=["auto", "identity-folders"], default="auto",
                         help="auto: detect CelebA / LFW / plain folder; identity-folders: SOURCE/<identity>/<image>")
    prepare.add_argument("--identities", type=int, default=None, help="builtin:rendered-faces: people to draw (default 500)")
    prepare.add_argument("--per-identity", type=int, default=None, help="builtin:rendered-faces: images per person (default 20)")
    prepare.add_argument("--seed", type=int, default=None, help="builtin:rendered-faces: seed (default 0; same seed, same images)")
    prepare.add_argument("--fingerprint", default=None, metavar="FP",
                         help="write every image with this learned fingerprint (see `facegan fingerprint train`)")
    prepare.add_argument("--no-progress", action="store_true", help="no progress bar")
    prepare.set_defaults(handler=run_prepare)

    info = verbs.add_parser("info", help="print what is in a prepared dataset")
    info.add_argument("dataset", metavar="DATASET")
    info.set_defaults(handler=run_info)

    split = verbs.add_parser("split", help="disjoint train/holdout sets (by identity when labelled)")
    split.add_argument("dataset", metavar="DATASET")
    split.add_argument("--holdout", type=float, default=0.2, help="fraction held out")
    split.add_argument("--by", choices=["image", "identity"], default="image", help="split unit")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--train-out", default=None, help="default: DATASET-train")
    split.add_argument("--holdout-out", default=None, help="default: DATASET-holdout")
    split.set_defaults(handler=run_split)

    pairs = verbs.add_parser("pairs", help="write LFW-format (view 2) verification pairs over a dataset's identities",
                             epilog=PAIRS_EXAMPLES, formatter_class=ExamplesFormatter)
    pairs.add_argument("dataset", metavar="DATASET", help="a prepared dataset with identity labels")
    pairs.add_argument("--folds", type=int, default=10, help="number of folds (LFW: 10)")
    pairs.add_argument("--pairs-per-fold", type=int, default=300,
                       help="same-person pairs per fold, and as many different-person pairs (LFW: 300)")
    pairs.add_argument("--seed", type=int, default=0)
    pairs.add_argument("--out", required=True, help="pairs.txt to write")
    pairs.set_defaults(handler=run_pairs)

    part = verbs.add_parser("partition", help="split a dataset into N client datasets for federated training (no image on two clients)",
                            epilog=PARTITION_EXAMPLES, formatter_class=ExamplesFormatter)
    part.add_argument("dataset", metavar="DATASET", help="a prepared dataset")
    part.add_argument("--clients", type=int, required=True, help="number of client datasets to write")
    part.add_argument("--by", choices=["iid", "identity", "dirichlet"], default="iid",
                      help="iid: equal random shares; identity: each person on one client; dirichlet: skewed shares per label")
    part.add_argument("--alpha", type=float, default=0.5, help="dirichlet concentration (small = more skewed; default 0.5)")
    part.add_argument("--attribute", default=None, help="dirichlet over this attribute's 0/1 value instead of identities")
    part.add_argument("--seed", type=int, default=0)
    part.add_argument("--out", required=True, help="folder to write client-000 ... and partitions.json into")
    part.set_defaults(handler=run_partition)


def run_prepare(args: argparse.Namespace) -> int:
    from facegan.data.decode import DEFAULT_MAX_FILE_BYTES
    from facegan.data.pipeline import prepare_dataset

    max_file_bytes = DEFAULT_MAX_FILE_BYTES if args.max_file_bytes is None else args.max_file_bytes
    fingerprint, out, channels = None, args.out, args.channels
    if args.fingerprint is not None:
        fingerprint, out, channels = _fingerprint_plan(args)
    try:
        dataset = prepare_dataset(args.source, out, size=args.size, align=args.align, channels=channels,
                                  workers=args.workers, limit=args.limit, progress=not args.no_progress,
                                  max_file_bytes=max_file_bytes, keep_damaged=args.keep_damaged,
                                  layout=args.layout, identities=args.identities, per_identity=args.per_identity,
                                  seed=args.seed)
        if fingerprint is not None:
            from facegan.fingerprint.fingerprint import fingerprint_dataset

            dataset = fingerprint_dataset(dataset, fingerprint, args.out)
    finally:
        if fingerprint is not None:
            import shutil

            shutil.rmtree(Path(out).parent, ignore_errors=True)  # the unmarked staging copy
    print(dataset.describe())
    return 0


def _fingerprint_plan(args: argparse.Namespace):
    """Check `--fingerprint` against the preparation before any work; returns (fingerprint, staging folder, channels)."""
    from facegan.data.dataset import check_output_folder
    from facegan.files import remove_stale_siblings, staging_sibling
    from facegan.fingerprint.fingerprint import load_fingerprint

    fingerprint = load_fingerprint(args.fingerprint)
    if args.size < fingerprint.resolution:
        raise FaceganError(f"--size {args.size} is below the fingerprint's {fingerprint.resolution}x{fingerprint.resolution}: "
                           f"its decoder cannot read a key from fewer pixels; prepare at --size {fingerprint.resolution} or more")
    if args.channels is not None and args.channels != fingerprint.channels:
        raise FaceganError(f"--channels {args.channels}, but the fingerprint writes {fingerprint.channels}-channel images; drop --channels")
    final = check_output_folder(args.out)
    final.parent.mkdir(parents=True, exist_ok=True)
    # The unmarked images are staged beside OUT (same disk) and removed after the encoded copy is written;
    # those of an earlier run killed before it could remove them go first.
    remove_stale_siblings(final, "unmarked")
    staging = staging_sibling(final, "unmarked")
    try:
        os.mkdir(staging, 0o700)
    except OSError as error:
        raise FaceganError(f"cannot write beside {final}: {error.strerror or error}") from None
    return fingerprint, staging / "dataset", fingerprint.channels


def run_info(args: argparse.Namespace) -> int:
    from facegan.data.dataset import FaceDataset

    print(FaceDataset.load(args.dataset).describe())
    return 0


def run_split(args: argparse.Namespace) -> int:

    from facegan.data.dataset import FaceDataset, absolute_path, check_output_folder, check_split_outputs

    dataset = FaceDataset.load(args.dataset)
    train_set, holdout_set = dataset.split(args.holdout, by_identity=args.by == "identity", seed=args.seed)
    base = absolute_path(args.dataset)  # absolute, so `data split .` still has a name to build on
    train_out = absolute_path(args.train_out) if args.train_out else base.with_name(base.name + "-train")
    holdout_out = absolute_path(args.holdout_out) if args.holdout_out else base.with_name(base.name + "-holdout")
    # Both outputs are checked before either is written, so a refusal leaves nothing half done.
    check_split_outputs(base, train_out, holdout_out)
    check_output_folder(train_out)
    check_output_folder(holdout_out)
    train_path = train_set.save(train_out)
    holdout_path = holdout_set.save(holdout_out)
    print(f"train   {len(train_set)} images -> {train_path}")
    print(f"holdout {len(holdout_set)} images -> {holdout_path}")
    return 0


def run_pairs(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from facegan.data.dataset import FaceDataset, absolute_path
    from facegan.data.pairs import make_pairs, read_pairs_txt, write_pairs_txt
    from facegan.errors import FaceganError

    dataset = FaceDataset.load(args.dataset)
    out = absolute_path(args.out)
    folder, home = Path(os.path.realpath(out.parent)), Path(os.path.realpath(dataset.path))
    if folder == home or home in folder.parents:  # a dataset folder holds only its own files
        raise FaceganError(f"--out {args.out} lies inside the dataset {args.dataset}; write pairs.txt beside it, not in it")
    # A hidden note beside the file holds the sha256 of what this command wrote: it replaces only that file, unchanged,
    # never some other file the user keeps there (LFW's own pairs.txt is a pairs file too).
    note = out.with_name(f".{out.name}.facegan")
    if os.path.lexists(out):
        try:
            read_pairs_txt(out)
        except FaceganError:
            raise FaceganError(f"--out {args.out} exists and is not a pairs.txt; choose another path (it would be replaced)") from None
        if _sha256_of(out) != _read_note(note):
            raise FaceganError(f"--out {args.out} is a pairs file `facegan data pairs` did not write (or it changed since); "
                               "choose another path, or delete it first to replace it")
    pairs = make_pairs(dataset, folds=args.folds, pairs_per_fold=args.pairs_per_fold, seed=args.seed)
    write_pairs_txt(out, pairs)
    from facegan.files import write_bytes_atomic

    write_bytes_atomic(note, (_sha256_of(out) + "\n").encode())
    names = {ref.name for pair in pairs for ref in (pair.left, pair.right)}
    layout = "identities disjoint across folds" if pairs.identities_disjoint else (
        "too few identities to keep folds disjoint: identities repeat across folds")
    print(f"wrote {args.out}: {pairs.num_folds} folds x ({pairs.pairs_per_fold} same + {pairs.pairs_per_fold} different) "
          f"= {len(pairs)} pairs over {len(names)} identities ({layout})")
    return 0


def _sha256_of(path) -> str:
    import hashlib

    from facegan.files import read_regular_file

    return hashlib.sha256(read_regular_file(path, 1 << 30)).hexdigest()


def _read_note(path) -> str | None:
    from facegan.files import ReadRefused, read_regular_file

    try:
        return read_regular_file(path, 1024).decode("ascii", "replace").strip()
    except ReadRefused:
        return None


def run_partition(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facegan.data.partition import PARTITIONS_NAME, partition_dataset

    manifest = partition_dataset(args.dataset, args.out, args.clients, by=args.by, alpha=args.alpha,
                                 attribute=args.attribute, seed=args.seed)
    for entry in manifest["clients"]:
        people = f", {entry['identities']} identities" if entry["identities"] else ""
        print(f"{entry['name']}  {entry['size']} images{people}")
    print(f"overlap {manifest['overlap']} images; manifest -> {Path(args.out) / PARTITIONS_NAME}")
    return 0
