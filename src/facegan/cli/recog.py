"""`facegan recog`: face recognisers — verify one with the LFW protocol, embed faces, train one.

`recog eval` and `recog embed` live here; `recog train` is registered by `facegan.cli.recog_train`.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import check_writable_target, parse_int
from facegan.errors import FaceganError

EVAL_EXAMPLES = """\
examples:
  facegan data pairs data/rendered32 --out data/rendered32-pairs.txt
  facegan recog eval lbph --data data/rendered32 --pairs data/rendered32-pairs.txt --out results/lbph
  facegan recog eval dlib --data data/lfw --pairs ~/lfw/pairs.txt --out results/dlib   # LFW's own pairs.txt, as-is
  facegan recog eval runs/recog --data data/lfw --pairs pairs.txt       # a trained recogniser: results go into its run

RECOGNISER is a registered name (dlib, dlib-resnet, lbph, pixel) or a `facegan recog train` run/export.
The protocol: 10 folds, the threshold that maximises accuracy on nine is tested on the tenth; mean and std
of the ten accuracies; AUC, EER and TAR at FAR 1e-1/1e-2/1e-3 over all pairs. OUT receives verification.json,
pairs.csv (fold,left,right,same,score; higher score = more alike), roc.png and verification_examples.png.
"""

EMBED_EXAMPLES = """\
examples:
  facegan recog embed dlib data/lfw --out lfw_dlib.npy              # one row per dataset image, in dataset order
  facegan recog embed lbph ~/faces --out faces_lbph.npy            # an image folder: sorted paths, printed
  facegan recog embed runs/recog face.png --out face.npy

The images must already be aligned face chips (`facegan data prepare --align dlib` makes them).
"""


def register(commands) -> None:
    recog = commands.add_parser("recog", help="face recognisers: verify (LFW protocol), embed, train")
    verbs = recog.add_subparsers(dest="recog_command", metavar="VERB", required=True)

    evaluate = verbs.add_parser("eval", help="the LFW verification protocol on a dataset's pairs", epilog=EVAL_EXAMPLES,
                                formatter_class=ExamplesFormatter)
    evaluate.add_argument("recogniser", metavar="RECOGNISER", help="registered name (dlib, lbph, pixel) or recogniser run/export")
    evaluate.add_argument("--data", required=True, metavar="DATASET", help="prepared dataset with identity labels")
    evaluate.add_argument("--pairs", required=True, metavar="PAIRS_TXT", help="LFW-format pairs.txt (LFW's own, or `facegan data pairs`)")
    evaluate.add_argument("--out", default=None, metavar="DIR",
                          help="results folder (default: a recogniser run's folder; for a registered name nothing is written)")
    evaluate.add_argument("--batch-size", default="64", help="images per recogniser batch (results do not depend on it)")
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=run_eval)

    embed = verbs.add_parser("embed", help="face descriptors of a dataset or image files, as a .npy array", epilog=EMBED_EXAMPLES,
                             formatter_class=ExamplesFormatter)
    embed.add_argument("recogniser", metavar="RECOGNISER", help="registered name (dlib, lbph, pixel) or recogniser run/export")
    embed.add_argument("images", metavar="IMAGES_OR_DATASET", help="prepared dataset, image folder, or one image file")
    embed.add_argument("--out", required=True, help="the .npy file to write: float32 (N, dim)")
    embed.add_argument("--batch-size", default="64", help="images per recogniser batch")
    embed.add_argument("--device", default="cpu", help="cpu or cuda")
    embed.set_defaults(handler=run_embed)

    from facegan.cli import recog_train

    recog_train.register(verbs)


def _default_results_dir(spec: str) -> Path | None:
    """A recogniser run (or an export inside one) keeps its results in the run folder, like `facegan eval`."""
    from facegan.faces.recognisers import available_recognisers
    from facegan.run import Run

    if spec in available_recognisers():
        return None
    path = Path(spec)
    if path.is_file():
        path = path.parent
    if Run(path).is_run():
        return path
    # A stand-alone export (or anything else) gets no default: results never go into shipped weights or a dataset.
    run = Run.containing(path)
    return run.path if run is not None else None


def run_eval(args: argparse.Namespace) -> int:
    from facegan.data.dataset import FaceDataset
    from facegan.recognition.resolve import resolve_recogniser
    from facegan.recognition.verification import check_verification_out, verify

    batch_size = parse_int("--batch-size", args.batch_size, 1, 100_000)
    dataset = FaceDataset.load(args.data)
    out = args.out if args.out is not None else _default_results_dir(args.recogniser)
    if out is not None:
        check_verification_out(out, dataset.path)  # a bad --out fails before the recogniser loads
    if not Path(args.pairs).exists():
        raise FaceganError(f"pairs file not found: {args.pairs} (write one with `facegan data pairs {args.data} --out {args.pairs}`)")
    recogniser = resolve_recogniser(args.recogniser, device=args.device)
    record = verify(recogniser, dataset, args.pairs, out_dir=out, batch_size=batch_size, progress=not args.no_progress)
    print(format_record(record))
    if out is None:
        print("\n(nothing written; give --out DIR to keep verification.json, pairs.csv and roc.png)")
    else:
        print(f"\nwritten: {Path(out) / 'verification.json'} (+ {', '.join(record['files'].values())})")
    return 0


def format_record(record: dict) -> str:
    """The verification numbers as a small plain-text table."""
    tar = record["tar_at_far"]
    rows = [
        ("recogniser", f"{record['recogniser']} v{record['recogniser_version']}"),
        ("pairs", f"{record['num_pairs']} ({record['num_same']} same, {record['num_different']} different, {len(record['folds'])} folds)"),
        ("accuracy", f"{record['accuracy_mean']:.2%} ± {record['accuracy_std']:.2%}"),
        ("ROC AUC", f"{record['auc']:.4f}"),
        ("EER", f"{record['eer']:.2%}"),
        *[(f"TAR @ FAR {key}", f"{value:.2%}") for key, value in tar.items()],
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# ---- embed ---------------------------------------------------------------------------------------
def _check_embedding_target(out: str) -> Path:
    """A .npy path that is writable; an existing file is replaced only when it is itself an embedding array."""
    if not out.endswith(".npy"):
        raise FaceganError(f"--out {out} does not end in .npy; embeddings are written as one NumPy array")
    path = check_writable_target(out, "--out")
    if path.exists():
        try:
            existing = np.load(path, mmap_mode="r", allow_pickle=False)
            ours = isinstance(existing, np.ndarray) and existing.ndim == 2 and existing.dtype == np.float32
        except Exception:  # noqa: BLE001 - whatever it is, it is not an embedding array
            ours = False
        if not ours:
            raise FaceganError(f"--out {out} exists and is not an embedding array (float32, 2-D); choose another path (it is never overwritten)")
    return path


def _read_images(source: Path) -> tuple[list[np.ndarray], list[str]]:
    """Image files (one, or a folder's, sorted) as uint8 RGB arrays; an unreadable file is one error line."""
    from facegan.data.decode import SkippedImage, decode_image
    from facegan.data.sources import find_image_files

    files = [source] if source.is_file() else find_image_files(source)
    if not files:
        raise FaceganError(f"{source} holds no images (.jpg, .png, .webp, .bmp) and is not a prepared dataset")
    images = []
    for path in files:
        try:
            images.append(decode_image(path))
        except SkippedImage as skipped:
            raise FaceganError(f"cannot read {path} ({skipped}); remove it or fix it, embeddings keep one row per file") from None
    return images, [str(path) for path in files]


def run_embed(args: argparse.Namespace) -> int:
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.files import write_bytes_atomic
    from facegan.recognition.resolve import resolve_recogniser

    batch_size = parse_int("--batch-size", args.batch_size, 1, 100_000)
    out = _check_embedding_target(args.out)
    source = Path(args.images)
    if not source.exists():
        raise FaceganError(f"no such dataset, image folder or image: {source}")
    if source.is_dir() and (source / MANIFEST_NAME).is_file() and Path(os.path.realpath(source)) in Path(os.path.realpath(out)).parents:
        # A file inside a prepared dataset makes it a folder that also holds user files, which `data prepare` then refuses to replace.
        raise FaceganError(f"--out {args.out} lies inside the dataset {source}; write the embeddings beside it, not in it")
    recogniser = resolve_recogniser(args.recogniser, device=args.device)
    if source.is_dir() and (source / MANIFEST_NAME).is_file():
        images = FaceDataset.load(source).images
        descriptors = np.concatenate([np.asarray(recogniser.embed(np.asarray(images[start : start + 1024]), batch_size=batch_size))
                                      for start in range(0, len(images), 1024)])
        order = "dataset order"
    else:
        pictures, names = _read_images(source)
        descriptors_by_row: list[np.ndarray | None] = [None] * len(pictures)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for row, picture in enumerate(pictures):
            by_shape.setdefault(picture.shape, []).append(row)  # one batch per image size
        for rows in by_shape.values():
            for row, descriptor in zip(rows, recogniser.embed(np.stack([pictures[row] for row in rows]), batch_size=batch_size)):
                descriptors_by_row[row] = descriptor
        descriptors = np.stack(descriptors_by_row)
        order = f"sorted file order ({names[0]}{' ...' if len(names) > 1 else ''})"
    descriptors = np.asarray(descriptors, dtype=np.float32)
    bad = int((~np.isfinite(descriptors).all(axis=1)).sum())
    if bad:
        raise FaceganError(f"recogniser {recogniser.name} gave non-finite (NaN/inf) descriptors for {bad} of {len(descriptors)} images; nothing written")
    import io

    buffer = io.BytesIO()
    np.save(buffer, descriptors, allow_pickle=False)
    write_bytes_atomic(out, buffer.getvalue())
    print(f"written: {out} ({descriptors.shape[0]} x {descriptors.shape[1]} float32, {recogniser.name}, {order})")
    return 0


__all__ = ["format_record", "register", "run_embed", "run_eval"]
