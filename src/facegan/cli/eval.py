"""`facegan eval`: quality metrics of a run or export against real data, written to metrics.json."""
from __future__ import annotations

import argparse
from pathlib import Path

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import check_writable_target, parse_float, parse_int

EXAMPLES = """\
examples:
  facegan eval runs/lfw32 --data data/lfw32                          # FD, KID, PRDC in face space + face rate
  facegan eval runs/lfw32/export --data data/lfw32 --num 500 --metrics fd,kid
  facegan eval runs/lfw32 --data data/holdout32 --out holdout_metrics.json
  facegan eval runs/lfw32 --data data/lfw32 --features inception --inception-weights ~/pt_inception-2015-12-05-6726825d.pth
  FACEGAN_INCEPTION_WEIGHTS=~/weights facegan eval runs/lfw32 --data data/lfw32 --features inception

Generated images use seeds SEED..SEED+NUM-1; real images are all of DATASET, or a random NUM of it
(drawn with SEED) when it is larger. Real-data features are cached by content in
$FACEGAN_CACHE_DIR/features (default ~/.cache/facegan/features).
"""


def register(commands) -> None:
    parser = commands.add_parser("eval", help="measure quality: FD, KID, precision/recall/density/coverage, face rate",
                                 epilog=EXAMPLES, formatter_class=ExamplesFormatter)
    parser.add_argument("model", metavar="RUN_OR_EXPORT", help="run folder, export folder or model.safetensors")
    parser.add_argument("--data", default=None, help="prepared real dataset to compare with; None means the one the model was trained on")
    parser.add_argument("--num", default="2000", help="generated images, and at most this many real images")
    parser.add_argument("--features", default="face", help="feature space: face (dlib face descriptors, offline) or inception (standard FID; needs weights)")
    parser.add_argument("--metrics", default="fd,kid,prdc,face-rate", help="comma-separated: fd, kid, prdc, face-rate")
    parser.add_argument("--seed", default="0", help="first generator seed, and the seed of the real subset and KID subsets")
    parser.add_argument("--batch-size", default="64", help="images per generator/extractor batch (results do not depend on it)")
    parser.add_argument("--truncation", default="1.0", help="psi in [0, 1] for the generated images")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="pt_inception-2015-12-05-6726825d.pth for --features inception (or set FACEGAN_INCEPTION_WEIGHTS)")
    parser.add_argument("--out", default=None, help="metrics JSON to write; None means RUN/metrics.json (for an export inside a run, that run)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (feature extraction)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run_eval)


def check_metrics_target(out: str | Path, given: bool = True) -> Path:
    """Refuse, before any work, a metrics path that cannot be written or holds a file facegan did not write."""
    from facegan.errors import FaceganError
    from facegan.metrics.evaluation import EvalResult

    out = check_writable_target(out, "--out" if given else "metrics file")
    if out.exists():
        try:
            EvalResult.load(out)
        except FaceganError:
            raise FaceganError(f"{out} exists and is not a facegan metrics file; choose another --out (it is never overwritten)") from None
    return out


def run_eval(args: argparse.Namespace) -> int:
    from facegan.metrics.evaluation import default_metrics_path, evaluate

    num = parse_int("--num", args.num, 2)
    seed = parse_int("--seed", args.seed, 0, 2**63 - 1)
    batch_size = parse_int("--batch-size", args.batch_size, 1, 100_000)
    truncation = parse_float("--truncation", args.truncation, 0.0, 1.0)
    # Resolve and check where the result goes first, so a bad path fails before minutes of work.
    out = check_metrics_target(args.out or default_metrics_path(args.model), given=bool(args.out))
    result = evaluate(
        args.model,
        args.data,
        num=num,
        features=args.features,
        metrics=args.metrics,
        seed=seed,
        batch_size=batch_size,
        truncation=truncation,
        inception_weights=args.inception_weights,
        progress=not args.no_progress,
        device=args.device,
    )
    print(result.format_table())
    print(f"\nwritten: {result.save(out)}")
    return 0
