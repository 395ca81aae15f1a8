"""`facegan report`: the run's report card as one self-contained HTML file."""
from __future__ import annotations

import argparse

from facegan.cli.common import ExamplesFormatter
from facegan.cli.options import check_writable_target

EXAMPLES = """\
examples:
  facegan report runs/lfw32                      # writes runs/lfw32/report.html
  facegan report runs/lfw32 --out report.html
  facegan report runs/lfw32/export               # an export inside a run: the report of that run
"""


def register(commands) -> None:
    parser = commands.add_parser("report", help="write the run's report card (HTML, images embedded)", epilog=EXAMPLES, formatter_class=ExamplesFormatter)
    parser.add_argument("run", metavar="RUN", help="run folder (or an export inside one)")
    parser.add_argument("--out", default=None, help="HTML file to write (default: RUN/report.html)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegan.report.card import build_report, check_report_target, resolve_report_run

    # Which run, and where the page goes, are settled before any section samples the generator.
    target = resolve_report_run(args.run)
    out = check_report_target(args.out) if args.out else target.report_path
    check_writable_target(out, "--out" if args.out else "report")
    print(f"report: {build_report(target.path, out)}")
    return 0
