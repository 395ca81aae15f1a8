"""`facegan federated train`: train one GAN across client datasets on Flower, as real processes."""
from __future__ import annotations

import argparse

from facegan.cli.common import ExamplesFormatter

EXAMPLES = """\
examples:
  facegan data partition data/faces --clients 4 --by identity --out data/clients
  facegan federated train --partitions data/clients --rounds 10 --local-kimg 1 --out runs/fed
  facegan federated train --partitions data/clients --rounds 10 --local-kimg 1 --out runs/fed-secure --secure-aggregation
  facegan federated train --partitions data/clients --rounds 10 --local-kimg 1 --out runs/fed-dp --dp-epsilon 10   # DP-SGD in each client
  facegan federated train --partitions data/clients --rounds 20 --local-kimg 1 --out runs/fed-user --dp-epsilon 10 --dp-level client
  facegan federated train --partitions data/clients --rounds 10 --local-kimg 1 --out runs/fed --min-clients 3 --round-timeout 120
  facegan federated train --out runs/fed --resume            # continue at the round after the last completed one
  facegan sample runs/fed --seeds 0-15 --out fed.png          # a federated run is a run like any other
"""


def register(commands) -> None:
    parser = commands.add_parser("federated", help="federated GAN training on Flower (SuperLink + SuperNodes, SecAgg+, DP)",
                                 formatter_class=ExamplesFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="federated_command", metavar="COMMAND", required=True)
    train = sub.add_parser("train", help="train one generator across client datasets without moving their images",
                           formatter_class=ExamplesFormatter, epilog=EXAMPLES)
    train.add_argument("--partitions", help="client datasets from `facegan data partition` (the folder with partitions.json)")
    train.add_argument("--out", required=True, help="run folder (runs/NAME)")
    train.add_argument("--rounds", type=int, default=10, help="federated rounds (default: 10)")
    train.add_argument("--local-kimg", type=float, default=1.0, help="thousands of images each client trains per round (default: 1)")
    train.add_argument("--engine", choices=["deployment", "simulation"], default="deployment",
                       help="deployment: a SuperLink and one SuperNode per client as processes on 127.0.0.1 (default); "
                            "simulation: Flower's simulation engine (Ray) in this process")
    train.add_argument("--secure-aggregation", action="store_true",
                       help="Flower's SecAgg+: the server sees only the sum of the clients' updates")
    train.add_argument("--dp-epsilon", type=float, default=0.0, help="differential privacy budget (0 = off)")
    train.add_argument("--dp-level", choices=["sample", "client"], default="sample",
                       help="sample: DP-SGD on each client's discriminator, per-client (epsilon, delta) for one face; "
                            "client: Flower's client-side fixed clipping + server noise, (epsilon, delta) for a whole client")
    train.add_argument("--dp-delta", type=float, default=0.0, help="delta (default: 1/(10 N) per client for sample, 1/(10 clients) for client)")
    train.add_argument("--dp-clip", type=float, default=1.0, help="client-level DP: L2 bound of each client's update (default: 1)")
    train.add_argument("--min-clients", type=int, default=None, help="a round completes when this many clients reply (default: all)")
    train.add_argument("--round-timeout", type=float, default=600.0, help="seconds a round waits for replies (default: 600)")
    train.add_argument("--fd-every", type=int, default=0, metavar="ROUNDS", help="FD of the global generator every ROUNDS rounds and at the end (0 = never)")
    train.add_argument("--fd-num", type=int, default=200, help="images for each FD (default: 200)")
    train.add_argument("--eval-data", default=None, help="dataset the FD compares with (default: the partitions' source dataset)")
    train.add_argument("--preset", default=None, help="the clients' recipe (default: default; dp with --dp-level sample)")
    train.add_argument("--batch-size", type=int, default=None, help="images per local step")
    train.add_argument("--seed", type=int, default=None, help="seed of the initial global weights (clients derive theirs)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe field, as in `facegan train --set`")
    train.add_argument("--resume", action="store_true", help="continue the run in --out at the round after the last completed one")
    train.add_argument("--start-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from facegan.errors import FaceganError
    from facegan.federated.engine import build_settings, federated_train

    if args.resume:
        settings = None
    else:
        if not args.partitions:
            raise FaceganError("--partitions is required (the folder written by `facegan data partition`)")
        settings = build_settings(args.partitions, args.out, args.rounds, args.local_kimg, preset=args.preset,
                                  overrides=args.overrides, engine=args.engine, secure_aggregation=args.secure_aggregation,
                                  dp_epsilon=args.dp_epsilon, dp_level=args.dp_level, dp_delta=args.dp_delta, dp_clip=args.dp_clip,
                                  min_clients=args.min_clients, round_timeout=args.round_timeout, fd_every=args.fd_every,
                                  fd_num=args.fd_num, eval_data=args.eval_data, batch_size=args.batch_size, seed=args.seed)
    bar = _RoundBar(enabled=not args.no_progress)
    try:
        summary = federated_train(settings, resume_dir=args.out if args.resume else None, progress=bar.update,
                                  start_timeout=args.start_timeout)
    finally:
        bar.close()
    last = summary.get("last_stats", {})
    extra = "".join(f", {name} {last[name]:.4g}" for name in ("fd", "epsilon", "epsilon_max") if name in last)
    print(f"{summary['rounds']} rounds, {summary['kimg']:.2f} kimg in {summary['seconds']:.0f} s{extra}; export -> {summary['export']}")
    return 0


class _RoundBar:
    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="round", desc="federated", dynamic_ncols=True)
        elif done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
