"""`facegan fingerprint train|apply|embed` and `facegan detect`: learned image fingerprints (Yu et al., ICCV 2021)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import parse_float, parse_int
from facegan.errors import FaceganError

TRAIN_EXAMPLES = """\
examples:
  facegan data prepare builtin:lfw-subset data/lfw32 --size 32
  facegan fingerprint train --data data/lfw32 --bits 32 --out fp/lfw32            # under 2 min on 2 CPU cores
  facegan fingerprint train --data data/lfw32 --bits 32 --out fp/k32 --key 0badc0de --steps 3000
  facegan fingerprint train --data data/lfw32 --out fp/quiet --set target_psnr=36       # fainter residual (less robust)
  facegan fingerprint train --data data/lfw32 --out fp/v1 --set pattern_grid=0          # format 1's image-dependent residual
  facegan fingerprint apply data/lfw32 --fingerprint fp/lfw32 --out data/lfw32-fp   # the dataset, every image encoded
  facegan train --data data/lfw32-fp --out runs/fp32 --kimg 50                        # a GAN that inherits the key
  facegan sample runs/fp32 --seeds 0-99 --out-dir out/fp32 && facegan detect out/fp32 --fingerprint fp/lfw32

The residual is one smooth pattern per key (an 8x8 grid upsampled; --set pattern_grid=N), the same
in every image, which a GAN trained on the marked images reproduces in part. The codec is trained
with a fresh random key per image (so the decoder truly reads bits) under differentiable JPEG (quality 50-95), resizing, cropping, blur, noise and grey conversion; the saved
fingerprint holds ONE key (from --seed, or --key). FP/fingerprint.json records the id (sha256 of the
weights and key), the key, the training dataset's hash and the bit accuracy measured on held-out images.
"""
APPLY_EXAMPLES = """\
examples:
  facegan fingerprint apply data/lfw32 --fingerprint fp/lfw32 --out data/lfw32-fp

Labels and every manifest field are kept; the manifest gains {"fingerprint": {"id", "bits", "path"}}.
"""
DETECT_EXAMPLES = """\
examples:
  facegan detect out/samples --fingerprint fp/lfw32                     # a folder of PNGs (over 20: a summary)
  facegan detect face.png other.jpg --fingerprint fp/lfw32              # one line per image
  facegan detect data/lfw32-fp --fingerprint fp/lfw32 --fpr 0.001 --out results/detect --json

Per image: the bits that match the key, the p-value P[Binomial(k, 1/2) >= matches] (exact) and the
verdict, fingerprinted when the matches reach the smallest count whose p-value is at most --fpr.
Images larger than the fingerprint's resolution are resized down; smaller ones are refused.
"""
EMBED_EXAMPLES = """\
examples:
  facegan fingerprint embed runs/plain --fingerprint fp/lfw32 --out models/plain-fp    # any run or generator export
  facegan fingerprint embed runs/dp --fingerprint fp/lfw32 --out models/dp-fp --steps 2000 --consistency 50
  facegan sample models/plain-fp --seeds 0-99 --out-dir out/fp && facegan detect out/fp --fingerprint fp/lfw32

A copy of the generator is fine-tuned so that the fingerprint's decoder reads its key in every face it
makes (after a random JPEG, resize, crop, blur or noise), while a consistency term (--consistency, the
weight of the mean squared difference from the original's face for the same latent) keeps each face
where it was: Stable Signature's recipe (Fernandez et al. 2023). No image is read, so a DP generator's
guarantee carries over. The original is left as it is; --out gets a new export whose config.json records
the fingerprint, the settings and what was measured on 256 new latents (bits read, PSNR to the original).
`facegan train --fingerprint FP` does the same to its own export when training ends.
"""
MAX_PER_IMAGE_LINES = 20
DETECT_NAME = "detect.json"
DETECT_FORMAT = "facegan-detect"


def register(commands) -> None:
    from facegan.fingerprint import MAX_BITS

    fingerprint = commands.add_parser("fingerprint", help="train a learned image fingerprint (key encoder + decoder), apply it to a dataset")
    actions = fingerprint.add_subparsers(dest="fingerprint_command", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train a fingerprint codec on a prepared dataset", epilog=TRAIN_EXAMPLES,
                               formatter_class=ExamplesFormatter)
    train.add_argument("--data", required=True, metavar="DATASET", help="prepared dataset folder (its resolution and channels are the codec's)")
    train.add_argument("--out", required=True, metavar="FP", help="fingerprint folder to write (new or empty; never replaced)")
    train.add_argument("--bits", default=None, metavar="K", help=f"key length, 1 to {MAX_BITS} (default: 32)")
    train.add_argument("--steps", default=None, metavar="N", help="optimiser steps (default: the codec config's, ~2 min on 2 cores at 32 px)")
    train.add_argument("--seed", default="0", metavar="S", help="seed of the training and of the key (when --key is not given)")
    train.add_argument("--key", default=None, metavar="HEX", help="the fixed key as ceil(K/4) hex digits (default: random from --seed)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="codec setting (FingerprintConfig field, e.g. target_psnr=34, encoder_width=16); flags win (repeatable)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=run_train)

    apply = actions.add_parser("apply", help="write a copy of a dataset with every image fingerprinted", epilog=APPLY_EXAMPLES,
                               formatter_class=ExamplesFormatter)
    apply.add_argument("data", metavar="DATASET", help="prepared dataset folder")
    apply.add_argument("--fingerprint", required=True, metavar="FP", help="fingerprint folder")
    apply.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    apply.set_defaults(handler=run_apply)

    embed = actions.add_parser("embed", help="fine-tune a copy of a trained generator so that its faces carry the key",
                               epilog=EMBED_EXAMPLES, formatter_class=ExamplesFormatter)
    embed.add_argument("model", metavar="MODEL", help="run folder, export folder or model.safetensors of a trained generator")
    embed.add_argument("--fingerprint", required=True, metavar="FP", help="fingerprint folder (`facegan fingerprint train`)")
    embed.add_argument("--out", required=True, metavar="DIR", help="export folder to write (new or empty; never the original)")
    embed.add_argument("--steps", default="1500", metavar="N", help="fine-tuning steps (default: 1500, about 2 min on 2 CPU cores at 32 px)")
    embed.add_argument("--consistency", default="100", metavar="W",
                       help="weight of the squared difference from the original's faces (default: 100; higher: closer faces, fewer bits)")
    embed.add_argument("--lr", default="2e-4", help="(peak) learning rate of the fine-tune's Adam (default: 2e-4)")
    embed.add_argument("--schedule", default="cosine", choices=("cosine", "constant"),
                       help="the learning rate over the steps: cosine (down to 0; default) or constant")
    embed.add_argument("--batch-size", default="64", metavar="B", help="latents per step (default: 64)")
    embed.add_argument("--seed", default="0", metavar="S", help="seed of the latents and distortions drawn")
    embed.add_argument("--no-distort", action="store_true", help="no random distortion before the decoder (less robust)")
    embed.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    embed.add_argument("--no-bf16", action="store_true", help="float32 throughout (default: bf16 autocast where the hardware has it, as training)")
    embed.add_argument("--no-progress", action="store_true", help="no progress bar")
    embed.set_defaults(handler=run_embed)

    detect = commands.add_parser("detect", help="test images for a fingerprint's key (exact binomial test)", epilog=DETECT_EXAMPLES,
                                 formatter_class=ExamplesFormatter)
    detect.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders of images, or prepared dataset folders")
    detect.add_argument("--fingerprint", required=True, metavar="FP", help="fingerprint folder")
    detect.add_argument("--fpr", default="0.01", help="false-positive rate of the test, in (0, 1)")
    detect.add_argument("--out", default=None, metavar="DIR", help=f"folder to write {DETECT_NAME} into")
    detect.add_argument("--json", action="store_true", help="print the full result as JSON instead of lines")
    detect.set_defaults(handler=run_detect)


def run_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from facegan.config import apply_overrides
    from facegan.data.dataset import FaceDataset
    from facegan.fingerprint.codec import MAX_BITS, MIN_BITS, FingerprintConfig
    from facegan.fingerprint.fingerprint import check_fingerprint_output, parse_key
    from facegan.fingerprint.training import train_fingerprint

    config = apply_overrides(FingerprintConfig(), list(args.set))
    for name in ("resolution", "channels"):
        if any(text.split("=", 1)[0].strip() == name for text in args.set):
            raise FaceganError(f"--set {name}=... cannot be chosen: the codec takes it from the dataset (prepare it at another --size)")
    if args.bits is not None:
        config = replace(config, bits=parse_int("--bits", args.bits, MIN_BITS, MAX_BITS))
    config.validate()
    bits = config.bits
    if args.steps is not None:
        config = replace(config, steps=parse_int("--steps", args.steps, 1, 10_000_000))
    seed = parse_int("--seed", args.seed, 0, 2**63 - 1)
    key = parse_key(args.key, bits) if args.key is not None else None
    check_fingerprint_output(args.out)  # refused in a second, not after the training
    dataset = FaceDataset.load(args.data)
    bars = []

    def show_progress(done: int, total: int) -> None:
        if args.no_progress:
            return
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=total, unit="step", desc="fingerprint", dynamic_ncols=True, file=sys.stderr))
        bars[0].update(done - bars[0].n)

    def show_stats(stats: dict) -> None:
        if bars:
            bars[0].set_postfix_str(f"loss {stats['loss']:.3f} bits {stats['bit_accuracy']:.3f}")

    try:
        fingerprint = train_fingerprint(dataset, args.out, config, key=key, seed=seed, progress=show_progress, on_log=show_stats)
    finally:
        for bar in bars:
            bar.close()
    measured = fingerprint.metadata["measured"]
    print(f"written: {fingerprint.path} (id {fingerprint.id[:16]}, {fingerprint.bits} bits, key {fingerprint.metadata['key']}, "
          f"{fingerprint.metadata['steps']} steps in {fingerprint.metadata['seconds']:.0f} s)")
    print(f"bit accuracy on {measured['num_images']} {measured['on']} images: clean {measured['clean_bit_accuracy']:.3f}, "
          f"JPEG 75 {measured['jpeg75_bit_accuracy']:.3f}, never encoded {measured['never_encoded_bit_accuracy']:.3f}; "
          f"PSNR {measured['psnr']:.1f} dB")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from facegan.data.dataset import check_output_folder
    from facegan.fingerprint.fingerprint import fingerprint_dataset, load_fingerprint

    check_output_folder(args.out)
    fingerprint = load_fingerprint(args.fingerprint)
    dataset = fingerprint_dataset(args.data, fingerprint, args.out)
    print(f"written: {dataset.path} ({len(dataset)} images fingerprinted with {fingerprint.id[:16]}, hash {dataset.content_hash[:12]})")
    return 0


def _check_embed_out(out: str) -> Path:
    """The absolute export folder to write: a new path or an empty folder (an existing export is never replaced)."""
    from facegan.files import check_writable_folder, output_folder_entries

    folder, entries = output_folder_entries(out, "the fingerprinted export")
    if entries:
        raise FaceganError(f"--out {out} is not empty; give a new or empty folder (nothing there is replaced)")
    check_writable_folder(folder, "the fingerprinted export")
    return folder


def run_embed(args: argparse.Namespace) -> int:
    import os

    import torch

    from facegan.fingerprint.fingerprint import load_fingerprint
    from facegan.models.export import export_hash, load_generator, resolve_export_path
    from facegan.training.fingerprint_tune import TuneSettings, check_tunable, tune_generator
    from facegan.training.loop import bf16_supported

    settings = TuneSettings(steps=parse_int("--steps", args.steps, 1, 10_000_000),
                            consistency=parse_float("--consistency", args.consistency, 0.0, 1e9),
                            lr=parse_float("--lr", args.lr, 0.0, 1.0),
                            batch_size=parse_int("--batch-size", args.batch_size, 1, 4096),
                            distort=not args.no_distort, seed=parse_int("--seed", args.seed, 0, 2**63 - 1), schedule=args.schedule)
    if settings.lr <= 0:
        raise FaceganError(f"--lr must be above 0, got {args.lr}")
    source_folder = resolve_export_path(args.model)
    out = _check_embed_out(args.out)
    if out == Path(os.path.abspath(source_folder)):
        raise FaceganError("--out is the original's export folder; give a new folder (the original is never replaced)")
    fingerprint = load_fingerprint(args.fingerprint)
    generator = load_generator(source_folder, device=args.device)
    check_tunable(generator.resolution, generator.channels, fingerprint)
    bars = []

    def show_progress(step: int, steps: int, stats: dict) -> None:
        if args.no_progress:
            return
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=steps, unit="step", desc="embed", dynamic_ncols=True, file=sys.stderr))
        bars[0].update(step - bars[0].n)
        if stats and step % 50 == 0:
            bars[0].set_postfix_str(f"bits {stats['bit_accuracy']:.3f} PSNR {stats['psnr']:.1f} dB")

    if generator.device.type == "cpu" and torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)
    try:
        tuned, record = tune_generator(generator.module, fingerprint, generator.z_dim, settings, progress=show_progress,
                                       bf16=not args.no_bf16 and bf16_supported(generator.device))
    finally:
        for bar in bars:
            bar.close()
    previous = generator.metadata.get("fingerprint")
    metadata = {key: value for key, value in generator.metadata.items() if key not in ("format", "format_version", "facegan_version")}
    metadata["fingerprint"] = {"id": fingerprint.id, "bits": fingerprint.bits, "path": str(fingerprint.path)}
    metadata["fingerprint_embed"] = {"source": str(source_folder), "source_export": export_hash(source_folder),
                                     "source_fingerprint": previous.get("id") if isinstance(previous, dict) else None, **record}
    _write_embedded(out, tuned, generator.config, metadata)
    measured = record["measured"]
    print(f"written: {out} (fingerprint {fingerprint.id[:16]}, {settings.steps} steps in {record['seconds']:.0f} s)")
    print(f"on {measured['num_images']} new latents: the decoder reads {measured['bit_accuracy']:.3f} of {fingerprint.bits} bits "
          f"(the original {measured['untuned_bit_accuracy']:.3f}), {measured['detection_rate']:.1%} detected at FPR 1 %; "
          f"PSNR {measured['psnr_vs_untuned']:.1f} dB to the original's faces")
    return 0


def _write_embedded(out: Path, module, model_config, metadata: dict) -> None:
    """Write the export beside `out` and rename it into place: `out` holds a whole export or nothing (a kill -9 leaves
    no half-written folder to refuse later), and a folder filled meanwhile by another command is not touched."""
    import os
    import shutil

    from facegan.models.export import save_export

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        save_export(staging, module, model_config, metadata)
        if out.is_dir():
            try:
                out.rmdir()  # the empty folder given as --out; fails if something was written there meanwhile
            except OSError:
                raise FaceganError(f"--out {out} was filled by something else while the fine-tune ran; nothing was written there") from None
        try:
            os.rename(staging, out)
        except OSError as error:
            raise FaceganError(f"cannot write the export {out} ({error.strerror or error}); nothing was written there") from None
    except OSError as error:
        raise FaceganError(f"cannot write the export {out} ({error.strerror or error}); free some space or choose another --out") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_detect_out(out: str) -> Path:
    """DIR (created if missing) and DIR/detect.json: refuse a file as DIR, or a detect.json facegan did not write."""
    from facegan.files import check_writable_folder, read_regular_file

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise FaceganError(f"--out {out} is a file; give a folder to write {DETECT_NAME} into")
    check_writable_folder(folder, DETECT_NAME)
    target = folder / DETECT_NAME
    if target.exists() or target.is_symlink():
        try:
            existing = json.loads(read_regular_file(target, 1 << 28))
        except (FaceganError, ValueError, RecursionError):
            existing = None
        if not isinstance(existing, dict) or existing.get("format") != DETECT_FORMAT:
            raise FaceganError(f"{target} exists and was not written by `facegan detect`; choose another --out (it is never overwritten)")
    return target


def run_detect(args: argparse.Namespace) -> int:
    from facegan.data.inputs import read_image_inputs
    from facegan.files import write_bytes_atomic
    from facegan.fingerprint.detection import check_fpr, detect
    from facegan.fingerprint.fingerprint import load_fingerprint

    fpr = check_fpr(parse_float("--fpr", args.fpr, 0.0, 1.0))
    target = _check_detect_out(args.out) if args.out is not None else None
    fingerprint = load_fingerprint(args.fingerprint)
    check_fpr(fpr, fingerprint.bits)
    images, names = read_image_inputs(args.images, channels=fingerprint.channels)
    result = detect(images, fingerprint, fpr=fpr, names=names)
    report = {"format": DETECT_FORMAT, "format_version": 1, "fingerprint": str(fingerprint.path), **result.to_dict()}
    if target is not None:
        write_bytes_atomic(target, (json.dumps(report, indent=2) + "\n").encode())
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if len(result) <= MAX_PER_IMAGE_LINES:
        for row in result.rows():
            verdict = "FINGERPRINTED" if row["detected"] else "not detected"
            print(f"{row['name']}  bits {row['matches']}/{result.bits} ({row['bit_accuracy']:.3f})  p {row['p_value']:.3g}  {verdict}")
    summary = result.summary()
    print(f"{summary['num_detected']} of {summary['num_images']} images fingerprinted ({summary['detection_rate']:.1%}), "
          f"mean bit accuracy {summary['mean_bit_accuracy']:.3f}; rule: at least {result.threshold} of {result.bits} bits match "
          f"(false-positive rate {result.exact_fpr:.3g} <= {fpr:g})")
    if target is not None:
        print(f"written: {target}")
    return 0
