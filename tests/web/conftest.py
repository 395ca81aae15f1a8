"""A tiny trained run, a real `facegan serve` on a free loopback port, and Debian's headless Chromium driven by Playwright.

Browser tests need `/usr/bin/chromium` (`apt-get install chromium`; Playwright never downloads a browser
here) and the `playwright` package; without them they are skipped with a note saying so (`make test`
shows it under -ra); `.ci/run` installs Chromium first, so CI runs them.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FACEGAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium phones Google at start; this machine's network is closed.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TINY_OVERRIDES = ["model.g_channels=16", "model.d_channels=16", "model.min_channels=8", "batch_size=8",
                  "runtime.num_threads=1", "runtime.tensorboard=false", "schedule.log_kimg=0.016",
                  "schedule.snapshot_kimg=0.032", "schedule.checkpoint_kimg=0.032", "schedule.num_snapshot_images=4"]
SERVER_START_SECONDS = 60


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: the playwright package is missing (pip install -r requirements.txt)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def web_roots(faces16, tmp_path_factory):
    """runs/ holding one tiny trained run (`tiny`), and data/ holding the 16 px faces (`faces16`)."""
    import facegan
    from facegan.data.dataset import FaceDataset
    from facegan.training.config import resolve_config

    base = tmp_path_factory.mktemp("web")
    runs, data = base / "runs", base / "data"
    runs.mkdir()
    data.mkdir()
    FaceDataset.load(faces16).save(data / "faces16")
    config = resolve_config("default", {"data": str(data / "faces16"), "out": str(runs / "tiny"), "kimg": 0.032}, TINY_OVERRIDES)
    facegan.train(config)
    # A labelled set (drawn faces with attributes) and a tiny GAN on it, for the Edit tab.
    from facegan.data import prepare

    prepare("builtin:rendered-faces", data / "rendered16", size=16, identities=20, per_identity=10)
    config = resolve_config("default", {"data": str(data / "rendered16"), "out": str(runs / "rendered"), "kimg": 0.032}, TINY_OVERRIDES)
    facegan.train(config)
    return runs, data


@pytest.fixture(scope="module")
def server(web_roots):
    """`facegan serve` as a real process on a free loopback port; stopped (and checked gone) at the end."""
    runs, data = web_roots
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = open(runs.parent / "serve.log", "w+")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(runs.parent / "gradio")}
    process = subprocess.Popen([sys.executable, "-m", "facegan", "serve", "--runs", str(runs), "--data", str(data), "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            process.kill()
            pytest.fail(f"facegan serve did not start: {log.read()[-3000:]}")
        time.sleep(0.3)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser_context():
    """Debian's Chromium, headless, with a fresh profile; every request it makes is recorded."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="facegan-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        context.requested_urls = []
        context.on("request", lambda request: context.requested_urls.append(request.url))
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context, server):
    """A fresh tab on the UI, loaded."""
    tab = browser_context.new_page()
    tab.set_default_timeout(30_000)
    tab.goto(server)
    tab.wait_for_selector("#generate-button")
    try:
        yield tab
    finally:
        tab.close()


def image_of(page, selector: str):
    """The pixels (uint8 array) and raw bytes of the image the UI shows in `selector`."""
    import io

    import numpy as np
    from PIL import Image

    page.wait_for_selector(f"{selector} img", state="attached")
    source = page.eval_on_selector(f"{selector} img", "image => image.src")
    payload = page.request.get(source).body()
    return np.asarray(Image.open(io.BytesIO(payload))), payload


def click_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def fill_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")


def toast_text(page, timeout: float = 30_000) -> str:
    """The text of the error/warning toast gradio shows."""
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=timeout)
    return toast.inner_text()


def run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facegan", *argv], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)


def pick(page, elem_id: str, value: str) -> None:
    """Choose `value` in a drop-down (typed, then Enter: the UI takes typed names through the same door)."""
    box = page.locator(f"#{elem_id} input").first
    box.fill(value)
    box.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#{elem_id} input').value === {value!r}")
