"""The web UI end to end: a real `facegan serve` process, Debian's headless Chromium, clicks and values.

One server and one browser for the module (fixtures in conftest.py); each test asserts on pixels, sizes,
provenance or the words the UI shows, so it fails when the UI shows the wrong thing.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from tests.web.conftest import click_tab, fill_number, image_of, pick, run_cli, toast_text

pytestmark = pytest.mark.xdist_group("processes")


def _png_pixels(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def test_generate_one_seed_shows_the_face_facegan_sample_writes_with_its_provenance(page, web_roots, tmp_path):
    from facegan.models.export import load_generator
    from facegan.provenance.inspect import read_provenance

    runs, _ = web_roots
    pick(page, "generate-run", "tiny")
    page.locator("#generate-mode").get_by_text("single").click()
    fill_number(page, "generate-seed", 5)
    page.click("#generate-button")
    page.wait_for_function("() => document.querySelector('#generate-reading').innerText.includes('seed 5,')")
    pixels, payload = image_of(page, "#generate-image")
    assert pixels.shape[:2] == (16, 16)  # the face itself, at the run's resolution

    result = run_cli("sample", str(runs / "tiny"), "--seeds", "5", "--out-dir", str(tmp_path / "cli"))
    assert result.returncode == 0, result.stderr
    reference = _png_pixels(tmp_path / "cli" / "seed00005.png")
    np.testing.assert_array_equal(pixels.reshape(reference.shape), reference)

    shown = tmp_path / "shown.png"
    shown.write_bytes(payload)
    record = read_provenance(shown)["xmp"]
    assert record is not None, "the face the UI serves carries no XMP provenance"
    assert record["digital_source_type"].endswith("trainedAlgorithmicMedia")
    assert record["seed"] == "5" and record["action"] == "serve"
    assert record["model"] == load_generator(runs / "tiny").export_hash

    # The download list holds the same file (grid == the one face here).
    link = page.locator("#generate-files a").first
    with page.expect_download() as download_info:
        link.click()
    downloaded = tmp_path / "downloaded.png"
    download_info.value.save_as(downloaded)
    assert read_provenance(downloaded)["xmp"]["seed"] == "5"
    np.testing.assert_array_equal(_png_pixels(downloaded), reference)


def test_generate_a_range_shows_a_grid_of_the_asked_shape_and_one_download_per_seed(page, web_roots):
    pick(page, "generate-run", "tiny")
    page.locator("#generate-mode").get_by_text("range").click()
    fill_number(page, "generate-seed", 10)
    fill_number(page, "generate-count", 6)
    fill_number(page, "generate-columns", 3)
    page.click("#generate-button")
    page.wait_for_function("() => document.querySelector('#generate-reading').innerText.includes('seeds 10-15')")
    pixels, _ = image_of(page, "#generate-image")
    # 2 rows x 3 columns of 16 px faces with 2 px padding around each.
    assert pixels.shape[:2] == (2 * 18 + 2, 3 * 18 + 2)
    names = page.locator("#generate-files").inner_text().replace("\n", "")
    assert "grid-10-15.png" in names and all(f"seed{seed:05d}.png" in names for seed in range(10, 16))


def test_interpolate_shows_the_strip_facegan_interpolate_writes(page, web_roots, tmp_path):
    runs, _ = web_roots
    click_tab(page, "Interpolate")
    pick(page, "interpolate-run", "tiny")
    fill_number(page, "interpolate-a", 3)
    fill_number(page, "interpolate-b", 7)
    fill_number(page, "interpolate-steps", 5)
    page.click("#interpolate-button")
    page.wait_for_function("() => document.querySelector('#interpolate-reading').innerText.includes('in 5 steps')")
    pixels, _ = image_of(page, "#interpolate-image")
    assert pixels.shape[:2] == (18 + 2, 5 * 18 + 2)
    result = run_cli("interpolate", str(runs / "tiny"), "--seeds", "3,7", "--steps", "5", "--out", str(tmp_path / "strip.png"))
    assert result.returncode == 0, result.stderr
    reference = _png_pixels(tmp_path / "strip.png")
    np.testing.assert_array_equal(pixels.reshape(reference.shape), reference)

    # The animation walks there and back (5 + 3 frames), and carries the provenance of the strip.
    from PIL import Image

    from facegan.provenance.inspect import read_provenance

    _, payload = image_of(page, "#interpolate-animation")
    animation = tmp_path / "animation.webp"
    animation.write_bytes(payload)
    with Image.open(animation) as image:
        assert image.format == "WEBP" and image.n_frames == 8
    record = read_provenance(animation)["xmp"]
    assert record["seeds"] == "3,7" and record["digital_source_type"].endswith("trainedAlgorithmicMedia")


def test_a_bad_value_is_one_line_in_the_ui_not_a_traceback(page):
    page.locator("#generate-mode").get_by_text("single").click()
    fill_number(page, "generate-seed", 3_000_000_000)  # past the largest seed facegan's UI takes
    page.click("#generate-button")
    text = toast_text(page)
    assert "seed must be a whole number from 0 to 2147483647" in text
    assert "Traceback" not in page.content()


def test_requests_cannot_name_paths_outside_the_roots(server, web_roots):
    from gradio_client import Client

    client = Client(server, verbose=False)
    for name in ("../../etc", "/etc", "tiny/../../..", str(web_roots[0] / "tiny")):
        with pytest.raises(Exception) as refused:
            client.predict("" + name, "single", 0, 1, 1.0, 0, api_name="/generate")
        assert "refused" in str(refused.value), str(refused.value)
    # An upload field given a server path instead of an upload: gradio refuses it before our code opens anything
    # (had it been opened, the reply would be facegan's "not an image").
    for target in ("/etc/passwd", "../../../../etc/passwd"):
        body = json.dumps({"data": ["tiny", "faces16", {"path": target, "meta": {"_type": "gradio.FileData"}}, 20]}).encode()
        request = urllib.request.Request(server + "gradio_api/call/membership", data=body, headers={"Content-Type": "application/json"})
        event = json.loads(urllib.request.urlopen(request, timeout=10).read())["event_id"]
        reply = urllib.request.urlopen(f"{server}gradio_api/call/membership/{event}", timeout=30).read().decode()
        assert "event: error" in reply and "not an image" not in reply and "root:" not in reply, reply
    # gradio's own file route serves only its cache, never a path a request names.
    for target in ("/etc/passwd", str(web_roots[0] / "tiny" / "config.json"), "../../../../etc/passwd"):
        url = server + "gradio_api/file=" + urllib.parse.quote(target)
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=10)
        assert denied.value.code in (403, 404)


def test_runs_tab_lists_the_run_and_opens_its_report_card(page):
    click_tab(page, "Runs")
    table = page.locator("#runs-table").inner_text()
    assert "tiny" in table and "default" in table
    page.click("#runs-report-button")
    page.wait_for_selector("#runs-report iframe", timeout=60_000)
    frame = page.frame_locator("#runs-report iframe")
    assert "Run" in frame.locator("body").inner_text(timeout=30_000)


def test_train_starts_shows_progress_and_losses_and_stops_cleanly(page, web_roots):
    from tests.web.conftest import TINY_OVERRIDES

    runs, _ = web_roots
    click_tab(page, "Train")
    page.locator("#train-name input, #train-name textarea").first.fill("web-stop")
    fill_number(page, "train-kimg", 5)
    page.locator("#train-overrides textarea").fill("\n".join(TINY_OVERRIDES))
    page.click("#train-start")
    # Live progress: the bar moves past the first log line, and the loss plot appears.
    page.wait_for_function("() => { const p = document.querySelector('#train-progress'); return p && parseFloat(p.dataset.kimg) >= 0.032; }",
                           timeout=60_000)
    page.wait_for_selector("#train-plot img", timeout=30_000)
    # Only one job at a time.
    page.click("#train-start")
    assert "already running" in toast_text(page)
    page.click("#train-stop")
    page.wait_for_function("() => document.querySelector('#train-progress').dataset.state === 'stopped'", timeout=60_000)
    stopped_at = float(page.locator("#train-progress").get_attribute("data-kimg"))
    assert 0.032 <= stopped_at < 5.0
    assert "stopped cleanly" in page.locator("#train-progress").inner_text()
    run = runs / "web-stop"
    assert (run / "checkpoints" / "state.pt").is_file() and (run / "export" / "model.safetensors").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["kimg"] < 5.0


def test_nothing_was_fetched_from_anywhere_but_the_server(browser_context, server):
    hosts = {urllib.parse.urlsplit(url).netloc for url in browser_context.requested_urls if url.startswith(("http:", "https:"))}
    assert hosts == {urllib.parse.urlsplit(server).netloc}, hosts


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    """A real photo with one face (scikit-image's astronaut, Eileen Collins; public domain), as a PNG upload."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("uploads") / "portrait.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_membership_check_shows_the_verdict_check_person_gives(page, web_roots, portrait):
    from facegan.data.dataset import FaceDataset
    from facegan.data.pipeline import prepare_image
    from facegan.models.export import load_generator
    from facegan.privacy.person import check_person

    runs, data = web_roots
    click_tab(page, "Is my face in the training set?")
    pick(page, "membership-run", "tiny")
    page.wait_for_function("() => document.querySelector('#membership-data input').value === 'faces16'")  # the run's own training set, from its config
    fill_number(page, "membership-samples", 20)
    page.locator("#membership-photo input[type=file]").set_input_files(str(portrait))
    page.wait_for_selector("#membership-photo a, #membership-photo .file-name, #membership-photo table", timeout=30_000)
    page.click("#membership-button")
    page.wait_for_function("() => document.querySelector('#membership-reading').innerText.includes('match threshold')", timeout=90_000)
    reading = page.locator("#membership-reading").inner_text().strip()

    face = prepare_image(portrait, 16, align="dlib", channels=1)
    expected = check_person(face, FaceDataset.load(data / "faces16"), load_generator(runs / "tiny"), num_samples=20)
    # faces16 are built-in crops (no `--align` mode): the photo is aligned with dlib, and the reading says so.
    assert reading.startswith(expected.reading) and "your photo was aligned with dlib" in reading
    shown, _ = image_of(page, "#membership-face")
    np.testing.assert_array_equal(shown.reshape(face.shape), face)
    table = page.locator("#membership-table").inner_text()
    assert f"{expected.face_space[0][1]:.4f}" in table and "0.6" in table
    assert page.locator("#membership-pixel img").count() == 4 and page.locator("#membership-facespace img").count() == 4


def test_an_upload_that_is_not_an_image_is_refused_in_one_line(page, tmp_path):
    click_tab(page, "Is my face in the training set?")
    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"this is a text file, not a photo\n" * 40)
    page.locator("#membership-photo input[type=file]").set_input_files(str(fake))
    page.wait_for_selector("#membership-photo a, #membership-photo .file-name, #membership-photo table", timeout=30_000)
    page.click("#membership-button")
    assert "holiday.png refused: not an image" in toast_text(page)
    assert "Traceback" not in page.content()


def test_an_upload_over_the_size_cap_is_refused_before_it_is_stored(page, tmp_path):
    click_tab(page, "Is my face in the training set?")
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0" + b"\0" * (50 * 2**20))  # 50 MB, over the 10 MB cap
    page.locator("#membership-photo input[type=file]").set_input_files(str(huge))
    text = toast_text(page)
    assert 'exceed the maximum allowed size of 10.0 Mb: "huge.jpg"' in text, text  # gradio's own refusal, before the file is stored
    assert "Traceback" not in page.content()


def test_verify_scores_a_pair_as_the_recogniser_does(page, portrait, tmp_path):
    from PIL import Image

    from facegan.data.pipeline import prepare_image
    from facegan.faces.recognisers import get_recogniser

    mirrored = tmp_path / "mirrored.png"
    Image.open(portrait).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    click_tab(page, "Verify")
    page.locator("#verify-a input[type=file]").set_input_files(str(portrait))
    page.locator("#verify-b input[type=file]").set_input_files(str(mirrored))
    page.wait_for_timeout(500)
    page.click("#verify-button")
    page.wait_for_function("() => document.querySelector('#verify-reading').innerText.includes('dlib-resnet:')", timeout=60_000)
    reading = page.locator("#verify-reading").inner_text()
    chips = np.stack([prepare_image(path, 150, align="dlib", channels=3) for path in (portrait, mirrored)])
    dlib = get_recogniser("dlib-resnet")
    descriptors = dlib.embed(chips)
    score = -float(dlib.distance(descriptors[:1], descriptors[1:])[0])
    assert "dlib-resnet: same person" in reading  # one person, mirrored: dlib's distance is far below its 0.6
    table = page.locator("#verify-table").inner_text()
    assert f"{score:.4f}" in table and "-0.6000" in table


def test_repair_hides_the_eyes_and_fills_them_as_repair_images_does(page, portrait):
    from facegan.data.pipeline import prepare_image
    from facegan.repair import make_masks, repair_images

    click_tab(page, "Repair")
    page.locator("#repair-photo input[type=file]").set_input_files(str(portrait))
    pick(page, "repair-model", "telea")
    page.click("#repair-button")
    page.wait_for_function("() => document.querySelector('#repair-reading').innerText.includes('repaired with telea')", timeout=60_000)
    face = prepare_image(portrait, 64, align="dlib", channels=3)
    masks = make_masks(1, 64, "eyes", 0.2, 0)
    expected = repair_images("telea", face[None], masks)[0]
    original, _ = image_of(page, "#repair-original")
    masked, _ = image_of(page, "#repair-masked")
    repaired, _ = image_of(page, "#repair-repaired")
    np.testing.assert_array_equal(original, face)
    assert (masked[masks[0]] == 0).all() and np.array_equal(masked[~masks[0]], face[~masks[0]])
    np.testing.assert_array_equal(repaired, expected)

    # Paint a horizontal stroke across the middle of the face: the holes are where the stroke is, nowhere else.
    page.get_by_role("button", name="paint the mask (pick 'painted' above)").click()
    page.click("#repair-paint-button")
    page.wait_for_selector("#repair-editor canvas")
    page.wait_for_timeout(1500)
    box = page.locator("#repair-editor canvas").first.bounding_box()
    middle_x, middle_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(middle_x - 60, middle_y)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(middle_x - 60 + 10 * step, middle_y, steps=2)
    page.mouse.up()
    page.locator("#repair-mask").get_by_text("painted").click()
    page.click("#repair-button")
    page.wait_for_function("() => document.querySelector('#repair-reading').innerText.includes('(painted)')", timeout=60_000)
    masked, _ = image_of(page, "#repair-masked")
    repaired, _ = image_of(page, "#repair-repaired")
    holes = (masked == 0).all(axis=2) & ~(face == 0).all(axis=2)
    rows = np.flatnonzero(holes.any(axis=1))
    assert holes.sum() >= 20 and rows.min() >= 20 and rows.max() <= 44, rows  # a band through the middle of the 64 px face
    assert np.array_equal(repaired[~holes], face[~holes])  # known pixels kept exactly


def test_edit_shows_the_seed_at_strength_zero_and_the_edited_face(page, web_roots):
    from facegan.models.export import load_generator

    runs, _ = web_roots
    click_tab(page, "Edit")
    pick(page, "edit-run", "tiny")
    pick(page, "edit-run", "rendered")
    page.wait_for_function("() => document.querySelector('#edit-data input').value === 'rendered16'", timeout=10_000)
    fill_number(page, "edit-seed", 4)
    fill_number(page, "edit-samples", 100)
    page.click("#edit-button")
    page.wait_for_function("() => document.querySelector('#edit-reading').innerText.includes('strength 0')", timeout=90_000)
    strip, _ = image_of(page, "#edit-image")
    assert strip.shape[:2] == (18 + 2, 2 * 18 + 2)
    original = load_generator(runs / "rendered").sample([4])[0]
    np.testing.assert_array_equal(strip[2:18, 2:18], original)  # strength 0 = the seed's own face
    assert not np.array_equal(strip[2:18, 20:36], original)  # the edited one moved
