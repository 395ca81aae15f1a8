"""`facegan report`: the run's report card as one self-contained HTML file."""
from __future__ import annotations

import argparse

from facegan.cli.common import ExamplesFormatter

EXAMPLES = """\
examples:
  facegan report runs/lfw32                      # writes runs/lfw32/report.html
  facegan report runs/lfw32 --out report.html
"""


def register(commands) -> None:
    parser = commands.add_parser("report", help="write the run's report card (HTML, images embedded)", epilog=EXAMPLES, formatter_class=ExamplesFormatter)
    parser.add_argument("run", metavar="RUN", help="run folder")
    parser.add_argument("--out", default=None, help="HTML file to write (default: RUN/report.html)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegan.report.card import build_report

    print(f"report: {build_report(args.run, args.out)}")
    return 0
