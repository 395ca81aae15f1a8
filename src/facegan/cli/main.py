"""`facegan` entry point: dispatches to one module per subcommand and turns user errors into one line."""
from __future__ import annotations

import argparse
import os
import sys

from facegan.version import __version__
from facegan.cli.common import ExamplesFormatter
from facegan.errors import FaceganError

EXAMPLES = """\
examples:
  facegan data prepare builtin:lfw-subset data/lfw32 --size 32
  facegan data prepare ~/photos data/faces64 --size 64 --align dlib
  facegan train --data data/lfw32 --out runs/lfw32 --kimg 50
  facegan train --data data/lfw32 --out runs/dcgan --preset seed-dcgan --kimg 50
  facegan train --out runs/lfw32 --resume --kimg 100
  facegan sample runs/lfw32 --seeds 0-63 --grid grid.png
  facegan interpolate runs/lfw32 --seeds 3,7 --steps 8 --out strip.png
  facegan eval runs/lfw32 --data data/lfw32                        # FD/KID/PRDC/face rate, offline face space
  facegan report runs/lfw32                                        # self-contained HTML report card
  facegan data split data/lfw32 --holdout 0.2                      # data/lfw32-train, data/lfw32-holdout
  facegan train --data data/lfw32-train --out runs/dp --dp-epsilon 10
  facegan audit runs/dp --train data/lfw32-train --holdout data/lfw32-holdout
  facegan data partition data/lfw32 --clients 4 --by iid --out data/clients
  facegan federated train --partitions data/clients --rounds 5 --local-kimg 1 --out runs/fed --secure-aggregation   # Flower
  facegan recog eval lbph --data data/faces --pairs pairs.txt --out results/lbph   # LFW verification protocol
  facegan project runs/lfw32 data/lfw32-holdout --out out/proj                     # GAN inversion: latents + reconstructions
  facegan repair train --data data/lfw32 --out runs/repair32 --steps 5000         # inpainting + restoration network
  facegan edit runs/rf32 --seeds 0-7 --attribute Smiling --strength -3..3 --out smiling.png
  facegan attack dlib --data data/lfw --pairs pairs.txt --attack pgd --eps 2/255,4/255,8/255 --out results/dlib-pgd   # adversarial robustness
  facegan fingerprint train --data data/lfw32 --bits 48 --out fp/lfw32           # learned key in pixels; then `facegan detect IMAGES --fingerprint fp/lfw32`
  facegan provenance grid.png --trust root.pem                                    # XMP record + C2PA state of images
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one `error:` line (exit 2) rather than the usage block plus a line."""

    def error(self, message: str):
        raise FaceganError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    from facegan.cli import attack, audit, data, edit, eval, federated, fingerprint, project, provenance, recog, repair, report, sample, serve, synth, train

    parser = _Parser(
        prog="facegan",
        description="Privacy-aware synthetic faces: prepare data, train GANs, sample, measure.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    parser.add_argument("--version", action="version", version=f"facegan {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (data, train, federated, sample, eval, report, audit, recog, synth, project, repair, edit, attack, provenance, fingerprint, serve):
        module.register(commands)
    return parser


def _occupy_closed_standard_streams() -> None:
    """Run with stdout/stderr closed (`facegan ... >&-`), Python sets them to None (flush() would raise
    AttributeError) and the next file we open would get fd 1 or 2, so stray writes could land in it:
    point each closed one at /dev/null."""
    for number, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:
            descriptor = os.open(os.devnull, os.O_WRONLY)
            if descriptor != number:
                os.dup2(descriptor, number)
                os.close(descriptor)
            setattr(sys, name, open(number, "w", closefd=False))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print `error: ...` on one line and exit with status 2.

    Exit codes: 0 success, 2 a user error, 130 interrupted by Ctrl-C (training stops cleanly first),
    141 the reader of our output went away (`facegan ... | head -1`), as for any Unix tool killed by SIGPIPE.
    """
    _occupy_closed_standard_streams()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --nproc-per-node` relaunches the same command
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit where it would print a traceback
        return code
    except FaceganError as error:
        message = " ".join(str(error).split("\n")).strip() or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Point stdout at devnull so the final flush at exit cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
