"""Screenshots of every tab of `facegan serve` for the README (docs/images/web-*.png), in the same headless Chromium as the tests.

    .venv/bin/python -m tests.web.screenshots --runs runs/demo --data data --out docs/images \\
        --model default --edit-model rendered32 --photo portrait.png

Starts `facegan serve` on a free loopback port, fills each tab in, clicks its button, waits for the result
and saves a full-page PNG. Not a test (pytest does not collect it); the tests drive the same clicks.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, TINY_OVERRIDES, click_tab, fill_number, free_port, pick


def _wait_text(page, elem_id: str, text: str, timeout: float = 300_000) -> None:
    page.wait_for_function(f"() => document.querySelector('#{elem_id}').innerText.includes({text!r})", timeout=timeout)


def _shot(page, out: Path, name: str) -> None:
    page.wait_for_timeout(600)
    page.screenshot(path=str(out / f"web-{name}.png"), full_page=True)
    print(f"{out / f'web-{name}.png'}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--model", required=True, help="a GAN run under --runs")
    parser.add_argument("--edit-model", required=True, help="a GAN run trained on a labelled set (rendered faces)")
    parser.add_argument("--photo", required=True, help="a photo with one face")
    parser.add_argument("--dataset", default=None, help="a dataset under --data to train on (default: the model's)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([sys.executable, "-m", "facegan", "serve", "--runs", args.runs, "--data", args.data, "--port", str(port)])
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(tempfile.mkdtemp(), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                                    headless=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(300_000)
            page.goto(url)
            pick(page, "generate-run", args.model)
            fill_number(page, "generate-count", 32)
            fill_number(page, "generate-columns", 8)
            page.click("#generate-button")
            _wait_text(page, "generate-reading", "seeds 0-31")
            _shot(page, out, "generate")

            click_tab(page, "Interpolate")
            pick(page, "interpolate-run", args.model)
            fill_number(page, "interpolate-steps", 10)
            page.click("#interpolate-button")
            _wait_text(page, "interpolate-reading", "in 10 steps")
            _shot(page, out, "interpolate")

            click_tab(page, "Is my face in the training set?")
            pick(page, "membership-run", args.model)
            page.locator("#membership-photo input[type=file]").set_input_files(args.photo)
            page.wait_for_timeout(800)
            page.click("#membership-button")
            _wait_text(page, "membership-reading", "match threshold")
            _shot(page, out, "membership")

            click_tab(page, "Verify")
            page.locator("#verify-a input[type=file]").set_input_files(args.photo)
            from PIL import Image

            mirrored = Path(tempfile.mkdtemp()) / "mirrored.png"
            Image.open(args.photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
            page.locator("#verify-b input[type=file]").set_input_files(str(mirrored))
            page.wait_for_timeout(800)
            page.click("#verify-button")
            _wait_text(page, "verify-reading", "dlib-resnet:")
            _shot(page, out, "verify")

            click_tab(page, "Repair")
            page.locator("#repair-photo input[type=file]").set_input_files(args.photo)
            pick(page, "repair-model", "telea")
            page.wait_for_timeout(800)
            page.click("#repair-button")
            _wait_text(page, "repair-reading", "repaired with")
            _shot(page, out, "repair")

            click_tab(page, "Edit")
            pick(page, "edit-run", args.edit_model)
            page.wait_for_timeout(800)
            page.click("#edit-button")
            _wait_text(page, "edit-reading", "strength 0")
            _shot(page, out, "edit")

            click_tab(page, "Runs")
            page.click("#runs-refresh")
            pick(page, "runs-run", args.model)
            page.click("#runs-report-button")
            page.wait_for_selector("#runs-report iframe")
            _shot(page, out, "runs")

            click_tab(page, "Train")
            if args.dataset:
                pick(page, "train-data", args.dataset)
            page.locator("#train-name input, #train-name textarea").first.fill(f"web-screenshot-{port}")
            fill_number(page, "train-kimg", 2)
            page.locator("#train-overrides textarea").fill("\n".join(TINY_OVERRIDES))
            page.click("#train-start")
            page.wait_for_function("() => { const p = document.querySelector('#train-progress'); return p && parseFloat(p.dataset.kimg) >= 0.3; }")
            page.wait_for_selector("#train-plot img")
            _shot(page, out, "train")
            page.click("#train-stop")
            page.wait_for_function("() => document.querySelector('#train-progress').dataset.state === 'stopped'")
            context.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
