"""Face-descriptor throughput: facegan's PyTorch port of dlib's recogniser vs dlib itself.

Both get the same 150x150 uint8 chips (the 100 built-in LFW faces, upsampled once with PIL and
repeated to --num), in the same run; the table also reports how close our descriptors are to dlib's.
Each method is timed --repeats times after a warm-up pass; the table shows the best and the median
(shared machines are noisy: trust the best, and check the CPU-busy share printed first).

Examples:
    .venv/bin/python benchmarks/feature_throughput.py                 # 200 faces, fp32 eager
    .venv/bin/python benchmarks/feature_throughput.py --num 1000 --bf16 --repeats 5
    .venv/bin/python benchmarks/feature_throughput.py --skip-dlib --threads 1 --compile
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

NUM_BUILTIN_FACES = 100  # skimage.data.lfw_subset(): the first 100 rows are faces


@dataclass
class Row:
    """One line of the results table."""

    method: str
    num_faces: int
    seconds: list[float]  # one per timed repeat
    warmup_seconds: float = 0.0
    cosine_min: float | None = None
    cosine_mean: float | None = None

    @property
    def best_faces_per_second(self) -> float:
        return self.num_faces / min(self.seconds)

    @property
    def median_faces_per_second(self) -> float:
        return self.num_faces / statistics.median(self.seconds)


def make_chips(num_faces: int) -> np.ndarray:
    """(num_faces, 150, 150, 3) uint8 chips from the built-in LFW faces, cycled."""
    import skimage.data

    faces = (skimage.data.lfw_subset()[:NUM_BUILTIN_FACES] * 255).round().astype(np.uint8)  # (100, 25, 25)
    chips = np.stack([np.asarray(Image.fromarray(face).resize((150, 150), Image.BILINEAR)) for face in faces])
    chips = np.repeat(chips[..., None], 3, axis=3)  # gray -> RGB, (100, 150, 150, 3)
    return np.ascontiguousarray(chips[np.arange(num_faces) % len(chips)])


def busy_cpu_fraction(interval: float = 1.0) -> float | None:
    """Share of all CPUs busy over `interval` seconds (Linux /proc/stat), before we start any work."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(value) for value in handle.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle_before, total_before = sample()
        time.sleep(interval)
        idle_after, total_after = sample()
    except OSError:
        return None
    return 1.0 - (idle_after - idle_before) / max(1, total_after - total_before)


def cosine(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return (first * second).sum(1) / (np.linalg.norm(first, axis=1) * np.linalg.norm(second, axis=1))


def time_facegan(chips: np.ndarray, label: str, batch_size: int, repeats: int, compile_model: bool = False,
                 **options) -> tuple[Row, np.ndarray]:
    from facegan.faces.dlib_resnet import DlibResNetRecogniser

    start = time.perf_counter()
    extractor = DlibResNetRecogniser(**options)
    if compile_model:
        # Benchmark-only: torch.compile gave no gain on CPU, so the library does not offer it. Static
        # shapes; the warm-up pass below compiles both batch shapes (full and last) before timing.
        extractor.model.forward_dlib_input = torch.compile(extractor.model.forward_dlib_input, dynamic=False)
    descriptors = extractor.embed(chips, batch_size=batch_size)  # warm-up: allocator, oneDNN, compile
    warmup = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        extractor.embed(chips, batch_size=batch_size)
        seconds.append(time.perf_counter() - start)
    return Row(label, len(chips), seconds, warmup), descriptors


def time_dlib(chips: np.ndarray, repeats: int) -> tuple[Row, np.ndarray]:
    import dlib

    from facegan.faces.align import dlib_model_path

    start = time.perf_counter()
    recognizer = dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    recognizer.compute_face_descriptor(chips[0])  # warm-up
    warmup = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        # dlib's batch overload for aligned chips (num_jitters=0: no jitter).
        descriptors = recognizer.compute_face_descriptor(list(chips))
        seconds.append(time.perf_counter() - start)
    reference = np.array([np.array(vector) for vector in descriptors], dtype=np.float32)
    return Row("dlib compute_face_descriptor (batch)", len(chips), seconds, warmup), reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=200, help="number of faces to time (default 200)")
    parser.add_argument("--batch-size", type=int, default=64, help="facegan batch size (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--bf16", action="store_true", help="also time facegan under bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="also time facegan under torch.compile (slow warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per facegan method (default 3)")
    parser.add_argument("--dlib-repeats", type=int, default=1, help="timed passes for dlib (default 1; it is slow)")
    parser.add_argument("--skip-dlib", action="store_true", help="do not time dlib")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    chips = make_chips(args.num)
    busy = busy_cpu_fraction()
    busy_text = f"{busy:.0%} of CPU busy before start" if busy is not None else "CPU load unknown"
    print(f"{args.num} chips 150x150, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {busy_text}")
    if busy is not None and busy > 0.2:
        print("warning: other processes are using the CPU; timings will be low and noisy")

    rows: list[Row] = []
    outputs: list[np.ndarray] = []
    variants: list[tuple[str, dict]] = [("facegan fp32 (default)", {})]
    if args.bf16:
        variants.append(("facegan bf16", {"bfloat16": True}))
    if args.compile:
        variants.append(("facegan fp32 torch.compile", {"compile_model": True}))
    for label, options in variants:
        row, descriptors = time_facegan(chips, label, args.batch_size, args.repeats, **options)
        rows.append(row)
        outputs.append(descriptors)
        print(f"  timed {label}: best {row.best_faces_per_second:.1f} faces/s", flush=True)

    dlib_row = None
    if not args.skip_dlib:
        dlib_row, reference = time_dlib(chips, args.dlib_repeats)
        print(f"  timed {dlib_row.method}: best {dlib_row.best_faces_per_second:.1f} faces/s", flush=True)
        for row, descriptors in zip(rows, outputs):
            similarity = cosine(descriptors, reference)
            row.cosine_min, row.cosine_mean = float(similarity.min()), float(similarity.mean())
        rows.append(dlib_row)

    print()
    header = f"{'method':<38} {'best f/s':>9} {'median f/s':>10} {'warm-up s':>9} {'vs dlib':>8} {'cos min':>10} {'cos mean':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row.best_faces_per_second / dlib_row.best_faces_per_second:.1f}x" if dlib_row else "-"
        cos_min = f"{row.cosine_min:.7f}" if row.cosine_min is not None else "-"
        cos_mean = f"{row.cosine_mean:.7f}" if row.cosine_mean is not None else "-"
        print(f"{row.method:<38} {row.best_faces_per_second:>9.1f} {row.median_faces_per_second:>10.1f} "
              f"{row.warmup_seconds:>9.2f} {ratio:>8} {cos_min:>10} {cos_mean:>10}")

if __name__ == "__main__":
    main()
