"""The gradio layout of `facegan serve`: one tab per part of the flow, each wired to `facegan.web.actions`.

Nothing here decides anything about faces: a handler passes the browser's values to an action and
shows what comes back. A FaceganError becomes one line in the UI (gr.Error, HTML-escaped); any other
exception is logged on the server and shown as one line too — never a traceback.
"""
from __future__ import annotations

import functools
import html
import logging

import gradio as gr

from facegan.errors import FaceganError
from facegan.web import actions
from facegan.web.actions import Session, Trainer
from facegan.web.uploads import MAX_UPLOAD_LABEL, UPLOAD_TYPES

LOGGER = logging.getLogger("facegan")
# Tiny faces (16-64 px) shown large with crisp pixels, not blurred by the browser's smoothing.
CSS = """
.facegan-pixels img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#train-progress progress { width: 100%; height: 1.2em; }
"""
TRAIN_POLL_SECONDS = 1.0


def shown(handler):
    """Wrap a handler so that every error reaches the user as one clear line (and no traceback)."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except FaceganError as error:
            message = " ".join(str(error).split()) or type(error).__name__
            raise gr.Error(html.escape(message), print_exception=False) from None
        except Exception:  # noqa: BLE001 - log it for the operator, one line for the user
            LOGGER.exception("web request failed")
            raise gr.Error("internal error while handling this request; the server's log has the details", print_exception=False) from None

    return wrapper


def _choices(values: list[str]):
    return gr.update(choices=values, value=values[0] if values else None)


def build_app(session: Session) -> gr.Blocks:
    """The whole UI for one server (its roots, work folder and training job live in `session`)."""
    trainer = Trainer(session)
    generators = actions.list_generators(session.roots)
    first = generators[0] if generators else None
    # delete_cache: gradio's copies of served files older than an hour are removed every 30 minutes.
    with gr.Blocks(title="facegan", analytics_enabled=False, delete_cache=(1800, 3600)) as app:
        gr.Markdown("# facegan\nSynthetic faces by seed, the walk between them, training, and what a model remembers. "
                    f"Runs under `{session.roots.runs}`.")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                _generate_tab(session, generators, first)
            with gr.Tab("Interpolate", id="interpolate"):
                _interpolate_tab(session, generators, first)
            with gr.Tab("Is my face in the training set?", id="membership"):
                _membership_tab(session, generators, first)
            with gr.Tab("Verify", id="verify"):
                _verify_tab(session)
            with gr.Tab("Repair", id="repair"):
                _repair_tab(session)
            with gr.Tab("Edit", id="edit"):
                _edit_tab(session, generators, first)
            with gr.Tab("Runs", id="runs"):
                _runs_tab(session, generators, first)
            with gr.Tab("Train", id="train"):
                _train_tab(session, trainer)
    return app


def _run_picker(session: Session, generators: list[str], first: str | None, elem_id: str):
    """A drop-down of the generators under --runs, with a button that lists them again (after a training)."""
    with gr.Row():
        picker = gr.Dropdown(generators, value=first, label="run or export (under --runs)", elem_id=elem_id, scale=4,
                             allow_custom_value=True)  # a typed name goes through Roots.resolve like any other
        refresh = gr.Button("↻ refresh list", scale=1, size="sm")
    refresh.click(shown(lambda: _choices(actions.list_generators(session.roots))), outputs=picker)
    return picker


def _generate_tab(session: Session, generators: list[str], first: str | None) -> None:
    picker = _run_picker(session, generators, first, "generate-run")
    with gr.Row():
        mode = gr.Radio(list(actions.SEED_MODES), value="range", label="seeds", elem_id="generate-mode")
        seed = gr.Number(0, precision=0, minimum=0, label="first seed", elem_id="generate-seed")
        count = gr.Number(16, precision=0, minimum=1, maximum=actions.MAX_UI_IMAGES, label=f"number of faces (≤ {actions.MAX_UI_IMAGES})",
                          elem_id="generate-count")
        columns = gr.Number(0, precision=0, minimum=0, label="grid columns (0 = square)", elem_id="generate-columns")
    truncation = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="truncation ψ (lower = closer to the average face)", elem_id="generate-truncation")
    button = gr.Button("Generate", variant="primary", elem_id="generate-button")
    reading = gr.Markdown(elem_id="generate-reading")
    grid = gr.Image(label="faces", type="filepath", interactive=False, elem_id="generate-image", elem_classes="facegan-pixels", height=360)
    files = gr.File(label="download: the grid and one PNG per seed (with provenance)", file_count="multiple", interactive=False,
                    elem_id="generate-files", height=180)

    def run(run_name, mode_value, seed_value, count_value, truncation_value, columns_value):
        result = actions.generate(session, run_name, mode_value, seed_value, count_value, truncation_value, columns_value)
        downloads = [str(result.grid)] + [str(face) for face in result.faces if face != result.grid]
        return str(result.grid), downloads, result.reading

    button.click(shown(run), inputs=[picker, mode, seed, count, truncation, columns], outputs=[grid, files, reading],
                 api_name="generate", concurrency_id="models")


def _interpolate_tab(session: Session, generators: list[str], first: str | None) -> None:
    picker = _run_picker(session, generators, first, "interpolate-run")
    with gr.Row():
        seed_a = gr.Number(3, precision=0, minimum=0, label="from seed", elem_id="interpolate-a")
        seed_b = gr.Number(7, precision=0, minimum=0, label="to seed", elem_id="interpolate-b")
        steps = gr.Number(8, precision=0, minimum=2, maximum=actions.MAX_INTERPOLATION_STEPS, label="steps (ends included)",
                          elem_id="interpolate-steps")
    truncation = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="truncation ψ", elem_id="interpolate-truncation")
    button = gr.Button("Interpolate", variant="primary", elem_id="interpolate-button")
    reading = gr.Markdown(elem_id="interpolate-reading")
    strip = gr.Image(label="strip", type="filepath", interactive=False, elem_id="interpolate-image", elem_classes="facegan-pixels", height=200)
    animation = gr.Image(label="animation (there and back)", type="filepath", interactive=False, elem_id="interpolate-animation",
                         elem_classes="facegan-pixels", height=200)
    files = gr.File(label="download: the strip (PNG) and the animation (animated WebP), with provenance", file_count="multiple",
                    interactive=False, elem_id="interpolate-files", height=120)

    def run(run_name, a, b, steps_value, truncation_value):
        result = actions.interpolate(session, run_name, a, b, steps_value, truncation_value)
        return str(result.strip), str(result.animation), [str(result.strip), str(result.animation)], result.reading

    button.click(shown(run), inputs=[picker, seed_a, seed_b, steps, truncation], outputs=[strip, animation, files, reading],
                 api_name="interpolate", concurrency_id="models")


def _follow_training_set(session: Session, picker, dataset) -> None:
    """When another model is picked, pick its own training set too (when it lies under --data)."""
    def follow(name):
        found = actions.run_dataset(session, name)
        return gr.update(value=found) if found else gr.update()

    picker.change(shown(follow), inputs=picker, outputs=dataset)


def _upload_box(label: str, elem_id: str):
    """An upload field for one photo: any file is checked by facegan (content, size, bombs), not by its name."""
    return gr.File(label=f"{label} (PNG, JPEG, WebP, BMP or GIF; at most {MAX_UPLOAD_LABEL})", file_types=UPLOAD_TYPES, type="filepath",
                   elem_id=elem_id, height=120)


def _gallery(label: str, elem_id: str):
    return gr.Gallery(label=label, columns=4, height=170, object_fit="contain", elem_id=elem_id, elem_classes="facegan-pixels",
                      allow_preview=False)


def _membership_tab(session: Session, generators: list[str], first: str | None) -> None:
    from facegan.privacy.person import DEFAULT_NUM_SAMPLES, MAX_NUM_SAMPLES

    gr.Markdown("Upload a photo of yourself: facegan finds and aligns the face as `data prepare --align dlib` does, then shows the "
                "closest training faces (pixels and dlib's face space) and the closest generated faces — the identity-leakage audit "
                "for one person. The photo and its aligned face stay in the server's temporary folder until the server stops.")
    datasets = actions.list_datasets(session.roots)
    with gr.Row():
        picker = gr.Dropdown(generators, value=first, label="model (run or export)", elem_id="membership-run", scale=3, allow_custom_value=True)
        default = actions.run_dataset(session, first) if first else None
        dataset = gr.Dropdown(datasets, value=default or (datasets[0] if datasets else None), label="its training set (under --data)",
                              elem_id="membership-data", scale=3, allow_custom_value=True)
        samples = gr.Number(DEFAULT_NUM_SAMPLES, precision=0, minimum=1, maximum=MAX_NUM_SAMPLES, label="generated faces to search",
                            elem_id="membership-samples")
    photo = _upload_box("your photo", "membership-photo")
    button = gr.Button("Check", variant="primary", elem_id="membership-button")
    reading = gr.Markdown(elem_id="membership-reading")
    with gr.Row():
        face = gr.Image(label="your face, as the training set stores faces", type="filepath", interactive=False, elem_id="membership-face",
                        elem_classes="facegan-pixels", height=170, scale=1)
        table = gr.Dataframe(headers=["what", "which", "distance", "match threshold", "verdict"], interactive=False,
                             elem_id="membership-table", scale=3)
    pixel = _gallery("closest training faces, pixel space", "membership-pixel")
    face_space = _gallery("closest training faces, dlib face space", "membership-facespace")
    generated = _gallery("closest generated faces (face space)", "membership-generated")

    def run(run_name, dataset_name, photo_path, count):
        result = actions.membership(session, run_name, dataset_name, photo_path, count)
        as_gallery = lambda rows: [(str(path), caption) for path, caption in rows]  # noqa: E731
        return (result.reading, str(result.face), result.table, as_gallery(result.pixel), as_gallery(result.face_space),
                as_gallery(result.generated))

    _follow_training_set(session, picker, dataset)
    button.click(shown(run), inputs=[picker, dataset, photo, samples], outputs=[reading, face, table, pixel, face_space, generated],
                 api_name="membership", concurrency_id="models")


def _verify_tab(session: Session) -> None:
    gr.Markdown("Two photos: the same person or not? Each face is found and aligned (dlib, 150 px), then every chosen recogniser "
                "scores the pair (minus its descriptor distance, as `facegan recog eval`) against a threshold.")
    recognisers = actions.list_recognisers(session.roots)
    evaluations = [actions.OWN_THRESHOLD] + actions.list_evaluations(session.roots)
    with gr.Row():
        photo_a = _upload_box("first photo", "verify-a")
        photo_b = _upload_box("second photo", "verify-b")
    with gr.Row():
        chosen = gr.CheckboxGroup(recognisers, value=[name for name in recognisers if name in ("dlib-resnet", "lbph")],
                                  label="recognisers", elem_id="verify-recognisers", scale=3)
        evaluation = gr.Dropdown(evaluations, value=evaluations[0], label="threshold from (a `recog eval` result under --runs)",
                                 elem_id="verify-evaluation", scale=2, allow_custom_value=True)
    button = gr.Button("Verify", variant="primary", elem_id="verify-button")
    reading = gr.Markdown(elem_id="verify-reading")
    with gr.Row():
        face_a = gr.Image(label="first face (aligned)", type="filepath", interactive=False, elem_id="verify-face-a", height=170)
        face_b = gr.Image(label="second face (aligned)", type="filepath", interactive=False, elem_id="verify-face-b", height=170)
    table = gr.Dataframe(headers=["recogniser", "score", "threshold", "threshold from", "verdict"], interactive=False, elem_id="verify-table")

    def run(first, second, names, evaluation_name):
        result = actions.verify_pair(session, first, second, names, evaluation_name)
        return result.reading, str(result.faces[0]), str(result.faces[1]), result.table

    button.click(shown(run), inputs=[photo_a, photo_b, chosen, evaluation], outputs=[reading, face_a, face_b, table],
                 api_name="verify", concurrency_id="models")


def _repair_tab(session: Session) -> None:
    gr.Markdown("Upload a face, hide part of it (eyes, mouth, a box, strokes, or paint the mask yourself) and repair it with a "
                "repair network, by projection into a GAN, or with OpenCV. Known pixels stay exactly as they were.")
    models = actions.list_repair_models(session.roots)
    with gr.Row():
        photo = _upload_box("face photo", "repair-photo")
        with gr.Column():
            model = gr.Dropdown(models, value=models[0] if models else None, label="repair with", elem_id="repair-model", allow_custom_value=True)
            mask = gr.Radio(list(actions.MASK_CHOICES), value="eyes", label="mask", elem_id="repair-mask")
            ratio = gr.Slider(0.05, 0.6, value=0.2, step=0.05, label="hidden share (generated masks)", elem_id="repair-ratio")
            with gr.Row():
                seed = gr.Number(0, precision=0, minimum=0, label="mask seed", elem_id="repair-seed")
                steps = gr.Number(100, precision=0, minimum=1, maximum=actions.MAX_PROJECTION_STEPS, label="projection steps",
                                  elem_id="repair-steps")
    with gr.Accordion("paint the mask (pick 'painted' above)", open=False):
        to_paint = gr.Button("Show the aligned face to paint on", elem_id="repair-paint-button")
        editor = gr.ImageEditor(type="numpy", label="paint over what to repair", elem_id="repair-editor", height=320,
                                brush=gr.Brush(colors=["#ff00ff"], default_size=12), elem_classes="facegan-pixels")
    button = gr.Button("Repair", variant="primary", elem_id="repair-button")
    reading = gr.Markdown(elem_id="repair-reading")
    with gr.Row():
        original = gr.Image(label="original", type="filepath", interactive=False, elem_id="repair-original", elem_classes="facegan-pixels", height=200)
        masked = gr.Image(label="masked", type="filepath", interactive=False, elem_id="repair-masked", elem_classes="facegan-pixels", height=200)
        repaired = gr.Image(label="repaired", type="filepath", interactive=False, elem_id="repair-repaired", elem_classes="facegan-pixels", height=200)

    def run(photo_path, choice, mask_kind, ratio_value, seed_value, steps_value, editor_value):
        result = actions.repair_face(session, photo_path, choice, mask_kind, ratio_value, seed_value, steps_value, editor_value)
        return result.reading, str(result.original), str(result.masked), str(result.repaired)

    to_paint.click(shown(lambda photo_path, choice: str(actions.face_to_paint(session, photo_path, choice))), inputs=[photo, model],
                   outputs=editor)
    button.click(shown(run), inputs=[photo, model, mask, ratio, seed, steps, editor], outputs=[reading, original, masked, repaired],
                 api_name="repair", concurrency_id="models")


def _edit_tab(session: Session, generators: list[str], first: str | None) -> None:
    gr.Markdown("Move a face along an attribute direction (InterFaceGAN: a classifier trained on the dataset's labels, directions "
                "found from generated faces; both cached in the run's editing/ folder, so the first edit takes longest). "
                "The face is a seed's, or your photo projected into the GAN.")
    datasets = actions.list_datasets(session.roots)
    default = (actions.run_dataset(session, first) if first else None) or (datasets[0] if datasets else None)
    names = actions.dataset_attribute_names(session, default)
    with gr.Row():
        picker = gr.Dropdown(generators, value=first, label="model (run or export)", elem_id="edit-run", allow_custom_value=True)
        dataset = gr.Dropdown(datasets, value=default, label="labelled dataset (under --data)", elem_id="edit-data", allow_custom_value=True)
        attribute = gr.Dropdown(names, value=names[0] if names else None, label="attribute", elem_id="edit-attribute", allow_custom_value=True)
    with gr.Row():
        source = gr.Radio(["seed", "uploaded face"], value="seed", label="face", elem_id="edit-source")
        seed = gr.Number(0, precision=0, minimum=0, label="seed", elem_id="edit-seed")
        samples = gr.Number(1000, precision=0, minimum=100, maximum=actions.MAX_EDIT_SAMPLES, label="faces sampled to find the direction",
                            elem_id="edit-samples")
        steps = gr.Number(100, precision=0, minimum=1, maximum=actions.MAX_PROJECTION_STEPS, label="projection steps (uploaded face)",
                          elem_id="edit-steps")
    photo = _upload_box("your face (for 'uploaded face')", "edit-photo")
    strength = gr.Slider(-actions.MAX_EDIT_STRENGTH, actions.MAX_EDIT_STRENGTH, value=3.0, step=0.5, label="strength", elem_id="edit-strength")
    button = gr.Button("Edit", variant="primary", elem_id="edit-button")
    reading = gr.Markdown(elem_id="edit-reading")
    strip = gr.Image(label="strength 0 | edited", type="filepath", interactive=False, elem_id="edit-image", elem_classes="facegan-pixels", height=220)
    report = gr.JSON(label="measurements (as `facegan edit` writes them)", elem_id="edit-report")

    def attributes_of(dataset_name):
        found = actions.dataset_attribute_names(session, dataset_name)
        return gr.update(choices=found, value=found[0] if found else None)

    def run(run_name, dataset_name, attribute_name, strength_value, source_value, seed_value, photo_path, samples_value, steps_value):
        result = actions.edit_face(session, run_name, dataset_name, attribute_name, strength_value, source_value, seed_value, photo_path,
                                   samples_value, steps_value)
        return result.reading, str(result.strip), result.report.get("measurements", result.report)

    _follow_training_set(session, picker, dataset)
    dataset.change(shown(attributes_of), inputs=dataset, outputs=attribute)
    button.click(shown(run), inputs=[picker, dataset, attribute, strength, source, seed, photo, samples, steps],
                 outputs=[reading, strip, report], api_name="edit", concurrency_id="models")


def _runs_tab(session: Session, generators: list[str], first: str | None) -> None:
    table = gr.Dataframe(value=actions.run_rows(session.roots) or None, headers=actions.RUN_COLUMNS, interactive=False,
                         label="generators under --runs: metrics (facegan eval), epsilon (DP), audit verdict (facegan audit)",
                         elem_id="runs-table", wrap=True)
    with gr.Row():
        refresh = gr.Button("↻ refresh", size="sm", elem_id="runs-refresh")
        picker = gr.Dropdown(generators, value=first, label="run", elem_id="runs-run", scale=4, allow_custom_value=True)
        open_card = gr.Button("Open report card", elem_id="runs-report-button")
    card_file = gr.File(label="report card (self-contained HTML)", interactive=False, elem_id="runs-report-file")
    card = gr.HTML(elem_id="runs-report")

    def refresh_all():
        names = actions.list_generators(session.roots)
        return actions.run_rows(session.roots) or None, _choices(names)

    def show_card(run_name):
        path = actions.report_card(session, run_name)
        # sandbox="": the card runs no script and gets an origin of its own (it embeds names read from run folders).
        frame = (f'<iframe title="report card" sandbox="" srcdoc="{html.escape(path.read_text())}" '
                 'style="width:100%;height:900px;border:1px solid #ccc"></iframe>')
        return str(path), frame

    refresh.click(shown(refresh_all), outputs=[table, picker])
    open_card.click(shown(show_card), inputs=picker, outputs=[card_file, card], concurrency_id="models")


def _progress_html(trainer: Trainer) -> str:
    job = trainer.job
    if job is None:
        return '<div id="train-progress">no training started yet</div>'
    done, total = job.kimg_done, job.kimg_total
    stats = job.last_stats
    losses = f" · D {stats['loss_d']:.3f} · G {stats['loss_g']:.3f}" if isinstance(stats.get("loss_d"), float) and isinstance(stats.get("loss_g"), float) else ""
    return (f'<div id="train-progress" data-state="{job.state}" data-kimg="{done:.4f}">'
            f'<progress value="{done:.4f}" max="{total:.4f}"></progress>'
            f'<div><b>{html.escape(job.run_name)}</b>: {job.state} — {done:.3f} / {total:.3f} kimg{losses}</div>'
            f'<div>{html.escape(job.message)}</div></div>')


def _train_tab(session: Session, trainer: Trainer) -> None:
    from facegan.training.config import PRESETS

    datasets = actions.list_datasets(session.roots)
    gr.Markdown(f"Start a small training (≤ {actions.MAX_TRAIN_KIMG:g} kimg) on a prepared dataset under `--data`; one job at a time. "
                "**Stop** ends it cleanly after the current step: a checkpoint and an export are saved.")
    with gr.Row():
        dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, label="dataset (under --data)", elem_id="train-data", scale=3,
                              allow_custom_value=True)
        refresh = gr.Button("↻ refresh list", size="sm", scale=1)
        name = gr.Textbox("web-run", label="new run name (under --runs)", elem_id="train-name")
    with gr.Row():
        preset = gr.Dropdown(list(PRESETS), value="default", label="preset", elem_id="train-preset")
        kimg = gr.Number(2.0, minimum=0.001, maximum=actions.MAX_TRAIN_KIMG, label="kimg (thousands of images shown)", elem_id="train-kimg")
    overrides = gr.Textbox("", lines=3, label="config overrides, one KEY=VALUE per line (as `facegan train --set`)", elem_id="train-overrides")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    progress = gr.HTML(_progress_html(trainer), elem_id="train-progress-box")
    plot = gr.Image(label="losses", type="filepath", interactive=False, elem_id="train-plot", height=300)
    timer = gr.Timer(TRAIN_POLL_SECONDS, active=False)

    def begin(dataset_name, run_name, preset_name, kimg_value, overrides_text):
        job = trainer.start(dataset_name, run_name, preset_name, kimg_value, overrides_text)
        return f"started {job.run_name}", _progress_html(trainer), gr.Timer(active=True)

    def poll():
        job = trainer.job
        plot_path = trainer.loss_plot()
        still = job is not None and job.active
        return _progress_html(trainer), (str(plot_path) if plot_path else None), gr.Timer(active=still)

    refresh.click(shown(lambda: _choices(actions.list_datasets(session.roots))), outputs=dataset)
    start.click(shown(begin), inputs=[dataset, name, preset, kimg, overrides], outputs=[status, progress, timer])
    stop.click(shown(trainer.request_stop), outputs=status)
    timer.tick(shown(poll), outputs=[progress, plot, timer])
