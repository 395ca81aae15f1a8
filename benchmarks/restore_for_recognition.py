"""Verification accuracy under damage: degraded vs repaired (the repair net) vs OpenCV-restored, on the same pairs.

A test of restoration *for recognition*, with people the models never saw. On `builtin:rendered-faces`
(procedural, identity-labelled, not photographs; rendered once, split by person):

    train   people 0 .. T-1 (--train-identities x --per-identity): the recogniser and the repair net learn here only
    test    people T .. T+E-1 (--test-identities): LFW view-2 pairs (10 folds, --pairs-per-fold same + as many
            different), never seen by either model
    dev     people T+E .. T+E+D-1 (--dev-identities): what the settings below were chosen on; `--evaluate-on dev`
            measures there instead of on the test people

Models (each trained once into --work and reused when its saved config matches):
    recogniser   `facegan recog train` (compact IResNet, CosFace) on the train people
    repair net   `facegan repair train` on the train people's images only, with the damage mix of this benchmark
                 (an eye band and a lower-face mask placed for rendered faces, noise / blur / JPEG over ranges
                 around the tested strengths) and its identity loss in the face space of that recogniser

Damage (both images of every pair), stated in the output: Gaussian noise sigma --noise (0..255), Gaussian blur
sigma --blur px, JPEG quality --jpeg, an eye band (sunglasses) and a lower-face mask with --occlusion-ratio of the
pixels hidden. Restorers: the repair net; OpenCV non-local means (h 10, OpenCV's default, and h 20) and unsharp
masking (sigma 0.75 px, repair.baselines' default at 32 px, and sigma = the blur's), each run on every degradation;
Telea and Navier-Stokes inpainting for the occluders. The table shows the best OpenCV method of each row (chosen
on the evaluated pairs: in OpenCV's favour). Accuracy is the 10-fold LFW protocol with the recogniser's distance;
`recovered` = (restored - degraded) / (clean - degraded).

    PYTHONPATH=src .venv/bin/python benchmarks/restore_for_recognition.py [--work runs/bench-restore] \
        [--repair-steps 5000] [--threads 2] [--json out/restore.json]

Target (issue 9): the repaired images recover at least half of the accuracy lost to each damage. Prints one
table (accuracy %, the share recovered in brackets), `recovered = X per degradation` and `ratio = X` (the
smallest share the repair net recovered over the damages).

Measured 2026-12-03 with the defaults and --threads 1 from an empty --work (1225 s on 2 cores shared with other
jobs; table in the README):
clean 86.6 % on 6000 test pairs; recovered = 0.91 0.93 0.72 0.86 0.66 (noise, blur, JPEG, eye band,
lower-face mask), ratio = 0.66: target met on every damage, and the net above the best OpenCV method on each.
The repair-net settings were chosen on the dev people (0.72 0.95 0.58 0.77 0.72 there); dlib verifies these
faces at 62 % clean (dev pairs), so it is not a useful recogniser here.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RENDERED = "builtin:rendered-faces"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="runs/bench-restore", help="datasets, pairs and model runs (reused when they match)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-identities", type=int, default=300)
    parser.add_argument("--test-identities", type=int, default=100)
    parser.add_argument("--dev-identities", type=int, default=60)
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--pairs-per-fold", type=int, default=None,
                        help="same and as many different pairs per fold, 10 folds (default: 300 on the test people, 200 on the 60 dev people)")
    parser.add_argument("--evaluate-on", choices=("test", "dev"), default="test")
    parser.add_argument("--recog-steps", type=int, default=600)
    parser.add_argument("--recog-width", type=int, default=16)
    parser.add_argument("--repair-steps", type=int, default=5000)
    parser.add_argument("--repair-width", type=int, default=16)
    parser.add_argument("--degradation-weights", default="1,1,3", help="repair net: how often it trains on noise, blur, JPEG")
    parser.add_argument("--identity-weight", type=float, default=1.0, help="repair net: weight of the identity loss in the recogniser's space")
    parser.add_argument("--noise", type=float, default=50.0, help="Gaussian noise sigma, 0..255")
    parser.add_argument("--blur", type=float, default=1.5, help="Gaussian blur sigma in px")
    parser.add_argument("--jpeg", type=int, default=10, help="JPEG quality")
    parser.add_argument("--occlusion-ratio", default="0.2,0.3", help="share of pixels the eye band / lower-face mask hides (a band)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    parser.add_argument("--json")
    return parser.parse_args(argv)


# ---- data ------------------------------------------------------------------------------------------
def render_split(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """FaceDatasets of disjoint rendered people: train, test, dev (saved under work/, reloaded when they fit)."""
    from facegan.data.dataset import MANIFEST_NAME, FaceDataset
    from facegan.data.rendered import render_faces

    counts = {"train": args.train_identities, "test": args.test_identities, "dev": args.dev_identities}
    paths = {part: work / f"data-{part}" for part in counts}
    wanted = {part: {"first": sum(list(counts.values())[:index]), "count": count, "per_identity": args.per_identity,
                     "size": args.size, "seed": args.seed} for index, (part, count) in enumerate(counts.items())}
    if all((path / MANIFEST_NAME).is_file() and FaceDataset.load(path).manifest.get("benchmark_part") == wanted[part]
           for part, path in paths.items()):
        return {part: FaceDataset.load(path) for part, path in paths.items()}
    # One render: identity k looks the same whatever the total, and the parts are different people by construction.
    images, identity, attributes, attribute_names = render_faces(sum(counts.values()), args.per_identity, args.size, args.seed)
    order = np.argsort(identity, kind="stable")
    images, identity, attributes = images[order], identity[order], attributes[order]
    base = {"source": RENDERED, "source_kind": "builtin", "alignment": "rendered", "attribute_names": list(attribute_names)}
    datasets = {}
    for part, spec in wanted.items():
        rows = np.flatnonzero((identity >= spec["first"]) & (identity < spec["first"] + spec["count"]))
        people, codes = np.unique(identity[rows], return_inverse=True)
        manifest = {**base, "identity_names": [f"r{person:05d}" for person in people], "benchmark_part": spec}
        FaceDataset(np.ascontiguousarray(images[rows]), manifest, identity=codes.astype(np.int64), attributes=attributes[rows]).save(paths[part])
        datasets[part] = FaceDataset.load(paths[part])
    return datasets


def ensure_pairs(dataset, path: Path, args: argparse.Namespace) -> Path:
    """LFW view-2 pairs over the evaluated people (10 folds, no person in two folds when possible)."""
    from facegan.data.pairs import make_pairs, write_pairs_txt

    per_fold = args.pairs_per_fold or (300 if args.evaluate_on == "test" else 200)
    pairs = make_pairs(dataset, folds=10, pairs_per_fold=per_fold, seed=args.seed)
    write_pairs_txt(path, pairs)  # rewritten each time: cheap, and always the pairs of these arguments
    return path


# ---- models ----------------------------------------------------------------------------------------
def _learned(config: dict[str, Any]) -> dict[str, Any]:
    """What a run learned from, but for its length and data path (a longer run resumes; the data is rendered here)."""
    return {key: value for key, value in config.items() if key not in ("runtime", "schedule", "out", "steps", "data")}


def ensure_trained(config, train_function, what: str) -> Path:
    """Train `config` into its run folder, or reuse the finished run there when it was trained with the same settings."""
    from facegan.config import to_dict
    from facegan.errors import FaceganError
    from facegan.run import Run

    run = Run(config.out)
    summary = run.read_summary() if run.has_config() else None
    if run.has_config():
        saved = _learned(run.read_config())
        requested = _learned(to_dict(config))
        if saved != requested:
            raise FaceganError(f"{run.path} holds a {what} trained with other settings; delete it or pass another --work")
        if summary is not None and summary.get("num_steps", 0) >= config.steps and not summary.get("interrupted"):
            print(f"reusing {what} {run.path} ({summary['num_steps']} steps)", file=sys.stderr)
            return run.path
    started = time.perf_counter()
    result = train_function(config, resume=run.has_config())
    if result.interrupted:
        raise FaceganError(f"{what} training was interrupted; run the benchmark again to resume {run.path}")
    print(f"trained {what} {run.path}: {result.num_steps} steps in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return run.path


def recogniser_config(data: Path, out: Path, args: argparse.Namespace):
    from facegan.config import from_dict
    from facegan.recognition.config import RecogConfig

    return from_dict(RecogConfig, {"data": [str(data)], "out": str(out), "steps": args.recog_steps, "batch_size": 64,
                                   "head": {"kind": "cosface"}, "backbone": {"width": args.recog_width},
                                   "runtime": {"num_threads": args.threads, "tensorboard": False}})


def repair_config(data: Path, out: Path, recogniser: Path, args: argparse.Namespace):
    """The repair net for this benchmark: its damage mix, and the identity loss in the recogniser's face space."""
    from facegan.config import from_dict
    from facegan.repair.config import RepairConfig
    from facegan.repair.degrade import default_severity

    blur_factor = args.blur / default_severity("blur", args.size)
    low, high = (float(value) for value in args.occlusion_ratio.split(","))
    damage = {
        "anchors": "rendered",  # eye band and lower-face mask where rendered faces have eyes and mouth
        "mask_kinds": ["eyes", "mouth"],
        "min_hole_ratio": min(0.2, low), "max_hole_ratio": max(0.45, high),  # around the tested band
        # Three quarters degradations, JPEG three times as often as noise or blur: on the dev people a net trained on an
        # even mix restored noise and blur within 2000 steps but not JPEG, which a JPEG-only net learned in 1000.
        "degradation_probability": 0.75,
        "degradations": ["noise", "blur", "jpeg"], "degradation_weights": [float(value) for value in args.degradation_weights.split(",")],
        # Ranges around the tested strengths, so the net sees them without being told the exact value.
        "noise_sigma": [0.4 * args.noise, min(255.0, 1.4 * args.noise)],
        "blur_factor": [0.5 * blur_factor, 1.5 * blur_factor],
        "jpeg_quality": [max(1, args.jpeg // 2), min(95, 2 * args.jpeg)],
    }
    return from_dict(RepairConfig, {
        "data": str(data), "out": str(out), "steps": args.repair_steps, "batch_size": 16, "seed": args.seed,
        "model": {"width": args.repair_width},
        # No critic: recognition needs the identity, not photographic texture, and the critic doubles the step time.
        "loss": {"adversarial": 0.0, "identity": args.identity_weight, "identity_every": 1, "identity_recogniser": str(recogniser.resolve())},
        "damage": damage,
        "runtime": {"num_threads": args.threads, "tensorboard": False},
    })


# ---- evaluation ------------------------------------------------------------------------------------
def restorers(repairer, args: argparse.Namespace) -> tuple[dict, dict]:
    """(restorers, inpainters): the repair net and the OpenCV baselines, by name."""
    from facegan.repair.baselines import INPAINTERS, denoise_nlm, unsharp

    restore = {
        "repaired": lambda damaged: repairer.repair(damaged),
        "nlm h10": lambda damaged: denoise_nlm(damaged),
        "nlm h20": lambda damaged: denoise_nlm(damaged, 20.0),
        "unsharp": lambda damaged: unsharp(damaged),
        f"unsharp s{args.blur:g}": lambda damaged: unsharp(damaged, args.blur),
    }
    inpaint = {"repaired": lambda damaged, masks: repairer.repair(damaged, np.array(masks)),  # a writable copy for torch
               "telea": INPAINTERS["telea"], "ns": INPAINTERS["ns"]}
    return restore, inpaint


def print_report(result: dict[str, Any], setup: str) -> list[float | None]:
    clean = result["clean"]["accuracy_mean"]
    print(f"\n{setup}")
    print(f"clean accuracy {100 * clean:.1f} % ({result['num_pairs']} pairs over {result['num_images']} images, "
          f"{result['resolution']} px, 10 folds)")
    header = f"{'damage':<30s}{'degraded':>10s}{'repaired':>18s}{'best OpenCV':>26s}"
    print(header)
    shares = []
    for condition in result["conditions"]:
        degraded = condition["degraded"]["accuracy_mean"]
        repaired = condition["methods"]["repaired"]["accuracy_mean"]
        share = condition["recovered"]["repaired"]
        baselines = [name for name in condition["methods"] if name != "repaired"]
        best = max(baselines, key=lambda name: condition["methods"][name]["accuracy_mean"])
        best_share = condition["recovered"][best]

        def cell(accuracy: float, recovered: float | None) -> str:
            return f"{100 * accuracy:.1f}" + ("" if recovered is None else f" ({recovered:+.0%})")

        print(f"{condition['label']:<30s}{100 * degraded:>10.1f}{cell(repaired, share):>18s}{best + ' ' + cell(condition['methods'][best]['accuracy_mean'], best_share):>26s}")
        shares.append(share)
    return shares


def main(argv: list[str] | None = None) -> int:
    import torch

    from facegan.errors import FaceganError
    from facegan.recognition.resolve import resolve_recogniser
    from facegan.recognition.training import train_recogniser
    from facegan.repair.evaluate import evaluate_restoration
    from facegan.repair.export import load_repairer
    from facegan.repair.masks import RENDERED_ANCHORS
    from facegan.repair.training import train_repair
    from facegan.run import Run

    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = render_split(work, args)
    evaluated = data[args.evaluate_on]
    pairs = ensure_pairs(evaluated, work / f"pairs-{args.evaluate_on}.txt", args)
    recogniser_run = ensure_trained(recogniser_config(data["train"].path, work / "recogniser", args), train_recogniser, "recogniser")
    recogniser = resolve_recogniser(str(recogniser_run))
    repair_run = ensure_trained(repair_config(data["train"].path, work / "repair", recogniser_run, args), train_repair, "repair net")
    used = (Run(repair_run).read_run_info() or {}).get("identity_recogniser", {}).get("version")
    if used != recogniser.version:  # the recogniser was trained further after the repair net learned from it
        raise FaceganError(f"{repair_run} learned its identity loss from another version of {recogniser_run}; delete {repair_run}")
    restore, inpaint = restorers(load_repairer(repair_run), args)
    low, high = (float(value) for value in args.occlusion_ratio.split(","))
    result = evaluate_restoration(
        restore, evaluated, str(pairs), recogniser=recogniser, seed=args.seed,
        severities={"noise": args.noise, "blur": args.blur, "jpeg": args.jpeg}, inpainters=inpaint,
        occlusions=("eyes", "mouth"), occlusion_ratio=(low, high), anchors=RENDERED_ANCHORS,
        progress=lambda message: print(f"  {message}", file=sys.stderr, flush=True))
    conditions = result["conditions"]
    labels = {"noise": f"Gaussian noise sigma {args.noise:g}", "blur": f"Gaussian blur sigma {args.blur:g} px",
              "jpeg": f"JPEG quality {args.jpeg}", "eyes occlusion": f"eye band {100 * low:.0f}-{100 * high:.0f} %",
              "mouth occlusion": f"lower-face mask {100 * low:.0f}-{100 * high:.0f} %"}
    for condition in conditions:
        condition["label"] = labels[condition["damage"]]
    parts = {part: f"{len(dataset.identity_names)} people x {args.per_identity}" for part, dataset in data.items()}
    setup = (f"{RENDERED} {args.size} px; models trained on the train people ({parts['train']}), evaluated on the "
             f"{args.evaluate_on} people ({parts[args.evaluate_on]}), identity pairs; recogniser {args.recog_steps} steps "
             f"(width {args.recog_width}, CosFace); repair net {args.repair_steps} steps (width {args.repair_width}, "
             f"identity loss {args.identity_weight:g} in the recogniser's space); {time.perf_counter() - started:.0f} s")
    shares = print_report(result, setup)
    named = [condition["damage"].replace(" occlusion", "") for condition in conditions]
    print("recovered = " + " ".join("n/a" if share is None else f"{share:.2f}" for share in shares)
          + " per degradation (" + ", ".join(named) + ")")
    measured = [share for share in shares if share is not None]
    met = bool(measured) and min(measured) >= 0.5 and len(measured) == len(shares)
    print(f"target (repaired recovers >= half of each loss): {'met' if met else 'NOT met'}")
    print(f"ratio = {min(measured):.2f}" if measured else "ratio = n/a")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**result, "setup": setup, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    from facegan.errors import FaceganError

    try:
        sys.exit(main())
    except FaceganError as error:  # a cause the user can fix: one line, not a traceback
        sys.exit(f"benchmark stopped: {error}")
