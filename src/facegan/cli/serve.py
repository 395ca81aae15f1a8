"""`facegan serve`: the web UI (facegan.web) on a local port."""
from __future__ import annotations

import argparse
import os

from facegan.cli.common import ExamplesFormatter

EXAMPLES = """\
examples:
  facegan serve                                   # http://127.0.0.1:7860, the runs under runs/
  facegan serve --runs runs/demo --data data --port 8080
  facegan serve --host 0.0.0.0 --auth-file ~/.facegan-auth     # reachable from other machines: needs a login
                                                  # (the file's first line is USER:PASS; or set $FACEGAN_SERVE_AUTH)
"""
AUTH_ENV = "FACEGAN_SERVE_AUTH"
MAX_AUTH_FILE_BYTES = 4096
DEFAULT_RUNS = "runs"


def register(commands) -> None:
    parser = commands.add_parser("serve", help="web UI: generate, interpolate, membership check, verify, repair, edit, runs and training in the browser", epilog=EXAMPLES,
                                 formatter_class=ExamplesFormatter)
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="the folder of runs and exports the UI may open and train into")
    parser.add_argument("--data", default=None, help="the folder of prepared datasets the UI may read (default: --runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (any but a loopback address needs --auth)")
    parser.add_argument("--port", type=int, default=7860, help="port")
    login = parser.add_mutually_exclusive_group()
    login.add_argument("--auth", default=None, metavar="USER:PASS",
                       help="require this user name and password (visible to other users in `ps`: prefer --auth-file)")
    login.add_argument("--auth-file", default=None, metavar="FILE", help=f"read USER:PASS from the first line of FILE (default: ${AUTH_ENV})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegan.errors import FaceganError
    from facegan.web.paths import Roots
    from facegan.web.server import ServeSettings, check_settings, serve

    auth = resolve_auth(args.auth, args.auth_file, os.environ)
    settings = ServeSettings(runs=args.runs, data=args.data, host=args.host, port=args.port, auth=auth)
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


def resolve_auth(auth: str | None, auth_file: str | None, environ) -> str | None:
    """USER:PASS from --auth, the first line of --auth-file, or $FACEGAN_SERVE_AUTH (in that order), or None."""
    import sys

    from facegan.errors import FaceganError
    from facegan.files import read_text_option

    if auth is not None:
        print("note: a password given with --auth can be read by other users of this machine (ps); "
              f"use --auth-file FILE or ${AUTH_ENV} instead", file=sys.stderr)
        return auth
    if auth_file is not None:
        lines = read_text_option(auth_file, MAX_AUTH_FILE_BYTES, "--auth-file", "its first line must be USER:PASS").splitlines()
        if not lines or not lines[0].strip():
            raise FaceganError(f"--auth-file {auth_file} is empty; its first line must be USER:PASS")
        return lines[0]
    return environ.get(AUTH_ENV) or None
