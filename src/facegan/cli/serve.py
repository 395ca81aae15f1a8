"""`facegan serve`: the web UI (facegan.web) on a local port."""
from __future__ import annotations

import argparse
import os

from facegan.cli.common import ExamplesFormatter

EXAMPLES = """\
examples:
  facegan serve                                   # http://127.0.0.1:7860, the runs under runs/
  facegan serve --runs runs/demo --data data --port 8080
  facegan serve --host 0.0.0.0 --auth alice:a-long-passphrase   # reachable from other machines: needs --auth
"""
DEFAULT_RUNS = "runs"


def register(commands) -> None:
    parser = commands.add_parser("serve", help="web UI: generate, interpolate, membership check, verify, repair, edit, runs and training in the browser", epilog=EXAMPLES,
                                 formatter_class=ExamplesFormatter)
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="the folder of runs and exports the UI may open and train into")
    parser.add_argument("--data", default=None, help="the folder of prepared datasets the UI may read (default: --runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (any but a loopback address needs --auth)")
    parser.add_argument("--port", type=int, default=7860, help="port")
    parser.add_argument("--auth", default=None, metavar="USER:PASS", help="require this user name and password")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegan.errors import FaceganError
    from facegan.web.paths import Roots
    from facegan.web.server import ServeSettings, check_settings, serve

    settings = ServeSettings(runs=args.runs, data=args.data, host=args.host, port=args.port, auth=args.auth)
    check_settings(settings)  # before gradio and torch are imported
    if args.runs == DEFAULT_RUNS and not os.path.exists(DEFAULT_RUNS):
        try:
            os.makedirs(DEFAULT_RUNS)  # a fresh clone: the UI can train into it and list what it trains
        except OSError as error:  # e.g. a dangling link named runs
            raise FaceganError(f"cannot create {DEFAULT_RUNS}/ ({error.strerror}); give --runs DIR") from None
    Roots.create(settings.runs, settings.data)
    print(f"facegan serve: http://{args.host}:{args.port}/ (runs under {args.runs}; Ctrl-C stops)", flush=True)
    serve(settings)
    return 0
