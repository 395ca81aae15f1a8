"""`facegan serve`: the web UI on a local port, safe by default.

Binds 127.0.0.1 unless told otherwise; any other address needs --auth (anyone who can reach it could
otherwise use the machine). Long work waits in gradio's queue with a concurrency limit; uploads over
the cap are refused by the server before they are stored; gradio's telemetry is off and nothing is
fetched from the network (the default theme's fonts ship with gradio).
"""
from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import signal
import threading
from dataclasses import dataclass

from facegan.errors import FaceganError

# Requests that render or train at once (the rest wait in the queue), and how many may wait.
CONCURRENCY_LIMIT = 1
MAX_QUEUE = 16


@dataclass(frozen=True)
class ServeSettings:
    runs: str = "runs"
    data: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None  # "USER:PASS"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    if auth is None:
        return None
    user, colon, password = auth.partition(":")
    if not colon or not user or not password:
        raise FaceganError("the login (--auth, --auth-file or $FACEGAN_SERVE_AUTH) must be USER:PASS, both non-empty, "
                           "e.g. alice:a-long-passphrase")
    return user, password


def check_settings(settings: ServeSettings) -> tuple[str, str] | None:
    """Refuse, before anything starts, a reachable address without a password and an impossible port."""
    credentials = parse_auth(settings.auth)
    if not is_loopback(settings.host) and credentials is None:
        raise FaceganError(f"--host {settings.host} makes the UI reachable from other machines; give a login too, "
                           "--auth-file FILE (first line USER:PASS) or $FACEGAN_SERVE_AUTH (or keep the default --host 127.0.0.1)")
    if not isinstance(settings.port, int) or not 1 <= settings.port <= 65535:
        raise FaceganError(f"--port must be from 1 to 65535, got {settings.port}")
    return credentials


def quiet_gradio() -> None:
    """No telemetry, no version check, no share tunnel: set before gradio is imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_SHARE", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def create_app(settings: ServeSettings):
    """The gradio Blocks for these settings (queued, not yet launched) and its session."""
    quiet_gradio()
    from facegan.web.actions import Session
    from facegan.web.app import build_app
    from facegan.web.paths import Roots

    session = Session(Roots.create(settings.runs, settings.data))
    atexit.register(shutil.rmtree, session.work_dir, True)  # the downloads written for this server's requests
    app = build_app(session)
    app.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=MAX_QUEUE)
    return app, session


def launch_kwargs(settings: ServeSettings, credentials: tuple[str, str] | None) -> dict:
    from facegan.web.app import CSS
    from facegan.web.uploads import MAX_UPLOAD_BYTES

    return dict(server_name=settings.host, server_port=settings.port, auth=credentials, share=False, inbrowser=False,
                show_error=False, max_file_size=MAX_UPLOAD_BYTES, css=CSS, footer_links=[], ssr_mode=False, mcp_server=False,
                enable_monitoring=False, quiet=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(settings: ServeSettings, block: bool = True):
    """Start the UI; with block=True it serves until Ctrl-C."""
    credentials = check_settings(settings)
    from PIL import Image

    from facegan.web.uploads import MAX_UPLOAD_PIXELS

    # Gradio decodes the Repair tab's paint-editor layers itself, outside facegan.data.decode: with Pillow's
    # process-wide limit at the upload cap, a decompression bomb there fails (above 2x the cap) instead of
    # filling memory. facegan's own decodes set their limit per call and restore this one.
    Image.MAX_IMAGE_PIXELS = MAX_UPLOAD_PIXELS
    app, _session = create_app(settings)
    if block and threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, systemd, a container stop) closes the server as Ctrl-C does, so the exit handlers run and
        # the work folder of downloads is removed instead of left in the temp folder.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        app.launch(prevent_thread_lock=not block, **launch_kwargs(settings, credentials))
    except OSError as error:
        raise FaceganError(f"cannot listen on {settings.host}:{settings.port} ({error.strerror or error}); pick another --port") from None
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM while gradio was still starting (its own wait handles them once it serves): stop the same way.
        app.close()
    return app
